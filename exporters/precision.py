"""Models trained in mixed precision, exported computing in float32.

A Keras model trained under the ``mixed_float16`` (or ``mixed_bfloat16``) dtype policy keeps its weights in
float32 and computes in float16. Exported as it is, its graph carries float16 casts around every layer: parity
with Keras is then a comparison of two float16 computations rounded in different places (differences of ~5e-4
on a probability, beyond the 1e-4 parity tolerance), and the fp16 conversion of that graph does not load in ONNX
Runtime. ``float32_compute`` rebuilds such a model layer for layer with the float32 policy and the same (float32)
weights: the computation the float16 one approximates. edgemed exports, checks and validates that model, and makes
its fp16 and int8 variants from it; the manifest's export warnings say so.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

REDUCED_COMPUTE_DTYPES = ("float16", "bfloat16")


def _layers(model) -> list:
    """Every layer of ``model``, nested models' layers included."""
    found = []
    for layer in getattr(model, "layers", ()):
        found += [layer, *_layers(layer)]
    return found


def _reduced(layer) -> bool:
    policy = getattr(layer, "dtype_policy", None)
    return policy is not None and policy.compute_dtype in REDUCED_COMPUTE_DTYPES


def describe_precision(model) -> str:
    """What the model computes in, in words (``edgemed inspect``)."""
    reduced = [layer for layer in _layers(model) if _reduced(layer)]
    if not reduced:
        return "float32"
    policies = ", ".join(sorted({layer.dtype_policy.name for layer in reduced}))
    return (f"{policies} on {len(reduced)} layers (trained in mixed precision): exported computing in float32 "
            "with the same float32 weights")


def float32_compute(model) -> tuple[object, str | None]:
    """(model computing in float32, a note for the manifest) — ``model`` itself and None when no layer computes in
    reduced precision, or when the model cannot be rebuilt layer by layer (a subclassed model: it is exported as
    trained, and the note says so)."""
    reduced = [layer for layer in _layers(model) if _reduced(layer)]
    if not reduced:
        return model, None
    policies = sorted({layer.dtype_policy.name for layer in reduced})
    import keras

    def as_float32(layer):
        config = layer.get_config()
        if _reduced(layer):
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    try:
        rebuilt = keras.models.clone_model(model, clone_function=as_float32, recursive=True)
        rebuilt.set_weights(model.get_weights())
    except (ValueError, TypeError, NotImplementedError) as error:
        note = (f"the model computes in reduced precision ({', '.join(policies)}: {len(reduced)} layers) and could "
                f"not be rebuilt in float32 ({error}); it is exported as trained, float16 casts included")
        logger.warning("export: %s", note)
        return model, note
    note = (f"the model was trained in mixed precision ({', '.join(policies)}: {len(reduced)} layers compute in "
            "reduced precision, their weights are float32); it is exported computing in float32 with the same "
            "weights, and parity, the gate and every variant are measured on that model")
    logger.info("export: %s", note)
    return rebuilt, note
