"""LiteRT peers made by the TFLite converter from the same Keras model as the ONNX variants.

The Keras model is exported as a SavedModel whose signature takes *every* Keras input by name
(dynamic batch axis, float32), and converted three ways:

| variant | converter settings | what it is |
|---|---|---|
| ``fp32`` | none | the float model |
| ``dynamic-range`` | ``Optimize.DEFAULT`` | int8 weights, float activations (LiteRT's post-training default) |
| ``int8`` | ``Optimize.DEFAULT`` + representative dataset + ``TFLITE_BUILTINS_INT8`` | full integer, float32 I/O |

The representative dataset is ``REPRESENTATIVE_SAMPLES`` rows spread over the calibration split
(all inputs of a row together). A variant the converter cannot make is not an error: its reason
is recorded (``LiteRtConversion.failures``) and becomes a "not available" row of the benchmark.
Results, failures included, are cached in ``folder`` (``conversion.json``) and reused while every
variant is accounted for. TensorFlow is imported lazily, inside ``convert_to_litert``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from exporters.inputs import ModelInputs, as_float32, feeds, sample_count, select
from pipeline.benchmark.errors import BenchmarkError
from pipeline.errors import ModelLoadError

logger = logging.getLogger(__name__)

REPRESENTATIVE_SAMPLES = 256  # calibration rows fed to the converter for full-integer int8 (spread over the split)
CONVERSION_FILE = "conversion.json"
SUMMARY_CHARACTERS = 300  # a failure's reason in a row; conversion.json keeps the whole message


class LiteRtVariant(StrEnum):
    FP32 = "fp32"
    DYNAMIC_RANGE = "dynamic-range"  # int8 weights, float activations and I/O
    INT8 = "int8"  # full integer: int8 weights and activations, float32 I/O


@dataclass(frozen=True)
class LiteRtConversion:
    """The LiteRT models made (variant → file) and the ones the converter could not make (variant → why)."""

    models: dict[LiteRtVariant, Path] = field(default_factory=dict)
    failures: dict[LiteRtVariant, str] = field(default_factory=dict)


def _cached(folder: Path) -> LiteRtConversion | None:
    try:
        record = json.loads((folder / CONVERSION_FILE).read_text())
        variants = record["variants"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(variants, dict) or set(variants) != {variant.value for variant in LiteRtVariant}:
        return None
    models, failures = {}, {}
    for variant in LiteRtVariant:
        entry = variants[variant.value]
        if isinstance(entry, dict) and entry.get("error"):
            failures[variant] = str(entry["error"])
        elif (folder / f"{variant.value}.tflite").is_file():
            models[variant] = folder / f"{variant.value}.tflite"
        else:
            return None
    return LiteRtConversion(models, failures)


def _representative(model, calibration: ModelInputs) -> list[dict[str, np.ndarray]]:
    """Calibration rows spread over the split, each as {Keras input name: (1, ...) array}."""
    names = [tensor.name for tensor in model.inputs]
    named = feeds(as_float32(calibration), names, BenchmarkError)
    rows = sample_count(named)
    indices = np.linspace(0, rows - 1, min(REPRESENTATIVE_SAMPLES, rows)).astype(int)
    return [select(named, slice(index, index + 1)) for index in indices]


def summary(error: BaseException) -> str:
    """The converter's message in one line: its first ``error:`` line without the MLIR location (the converter
    writes many lines of call sites), at most ``SUMMARY_CHARACTERS`` long."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    first = next((line for line in lines if "error:" in line), lines[0] if lines else "")
    message = first.split(")): ")[-1] if ")): " in first else first.split("error:", 1)[-1].strip()
    text = f"{type(error).__name__}: {message}"
    return text if len(text) <= SUMMARY_CHARACTERS else text[: SUMMARY_CHARACTERS - 1] + "…"


def _converter_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (ValueError, RuntimeError, TypeError)
    try:
        from tensorflow.lite.python.convert_phase import ConverterError

        errors += (ConverterError,)
    except ImportError:
        pass
    return errors


def _export_saved_model(keras_path: Path, folder: Path):
    """The Keras model and its SavedModel in ``folder``, with a signature taking every input by name."""
    import tensorflow as tf

    from pipeline.training.keras_files import load_keras_model

    model = load_keras_model(keras_path)
    saved_model = folder / "saved_model"
    shutil.rmtree(saved_model, ignore_errors=True)
    signature = [tf.TensorSpec([None, *tensor.shape[1:]], tf.float32, name=tensor.name) for tensor in model.inputs]
    model.export(str(saved_model), format="tf_saved_model",
                 input_signature=[signature if len(signature) > 1 else signature[0]], verbose=False)
    return model, saved_model


def _convert(saved_model: Path, variant: LiteRtVariant, representative: list[dict[str, np.ndarray]]) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if variant is not LiteRtVariant.FP32:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant is LiteRtVariant.INT8:
        converter.representative_dataset = lambda: iter(representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def convert_to_litert(keras_path: Path, calibration: ModelInputs, folder: Path) -> LiteRtConversion:
    """Convert ``keras_path`` to ``folder``/<variant>.tflite, reusing a complete earlier conversion."""
    folder = Path(folder)
    cached = _cached(folder)
    if cached is not None:
        return cached
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    errors = _converter_errors()
    try:
        model, saved_model = _export_saved_model(keras_path, folder)
        representative = _representative(model, calibration)
    except (*errors, ModelLoadError, BenchmarkError) as error:
        reason = f"the Keras model could not be exported for the TFLite converter: {summary(error)}"
        failures = dict.fromkeys(LiteRtVariant, reason)
        _record(folder, keras_path, tf.__version__, {}, failures, dict.fromkeys(LiteRtVariant, str(error)))
        return LiteRtConversion({}, failures)
    models, failures, details = {}, {}, {}
    for variant in LiteRtVariant:
        try:
            content = _convert(saved_model, variant, representative)
        except errors as error:
            failures[variant] = f"the TFLite converter could not make it: {summary(error)}"
            details[variant] = str(error)
            logger.warning("LiteRT %s of %s: %s", variant.value, keras_path, failures[variant])
            continue
        path = folder / f"{variant.value}.tflite"
        temporary = path.with_suffix(".partial")
        temporary.write_bytes(content)
        os.replace(temporary, path)
        models[variant] = path
    shutil.rmtree(saved_model, ignore_errors=True)
    _record(folder, keras_path, tf.__version__, models, failures, details)
    logger.info("LiteRT peers of %s written to %s", keras_path, folder)
    return LiteRtConversion(models, failures)


def _record(folder: Path, source: Path, tensorflow: str, models: dict, failures: dict, details: dict) -> None:
    variants = {variant.value: ({"file": models[variant].name} if variant in models else
                                {"error": failures.get(variant, "not made"), "message": details.get(variant)})
                for variant in LiteRtVariant}
    record = {"source": str(source), "tensorflow": tensorflow, "representative_samples": REPRESENTATIVE_SAMPLES,
              "variants": variants}
    temporary = folder / (CONVERSION_FILE + ".partial")
    temporary.write_text(json.dumps(record, indent=1))
    os.replace(temporary, folder / CONVERSION_FILE)
