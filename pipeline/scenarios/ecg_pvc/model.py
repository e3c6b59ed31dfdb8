"""The two-input PVC model: a small Conv1D branch on the beat window, a dense branch on RR features.

Inputs (names are the ONNX input names a bundle will carry):

* ``window``   (batch, 252, 1) float32 — only when ``use_window``: the signal around the detected
  R-peak, any unit: it is z-scored over time inside the graph (LayerNormalization without learned
  scale), as in the synthetic ECG scenario;
* ``residual`` (batch, 252, 1) float32 — only when ``use_template``: the z-scored window minus the
  running template (``runtime.ecg.template``), already in units of the beat's spread;
* ``rr``       (batch, 6) float32 — ``runtime.ecg.rr_features.RR_FEATURE_NAMES``.

Output ``v_probability`` (batch, 1): sigmoid probability that the beat is a PVC (AAMI class V).

The morphology branch ends in a small bottleneck; ``morphology_dropout`` drops that whole branch for
a random share of training beats (dropout with one mask value per beat), so the model must also
decide from the RR context alone and cannot lean only on shapes it memorised from a few patients.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import UsageError


class ModelConfigError(UsageError):
    """A PVC model configuration that cannot be built."""


@dataclass(frozen=True)
class PvcModelConfig:
    use_window: bool = True  # the beat window itself (absolute morphology) as a waveform channel
    use_template: bool = False  # the running-template residual (morphology relative to the patient) as a channel
    filters: tuple[int, ...] = (8, 16, 16)  # Conv1D widths: small enough to train a fold in ~1 min on 2 cores
    kernel_sizes: tuple[int, ...] = (7, 5, 5)  # Conv1D kernel lengths, one per filter entry
    first_stride: int = 2  # the first convolution halves the rate (360 → 180 Hz): QRS detail survives
    morphology_units: int = 16  # bottleneck after the convolutions
    morphology_dropout: float = 0.0  # share of training beats whose whole morphology branch is dropped
    rr_units: int = 16  # dense units on the RR features
    dense_units: int = 32  # dense units after joining the branches
    dropout: float = 0.2  # before the output


def build_pvc_model(config: PvcModelConfig, window_samples: int, rr_features: int):
    """An uncompiled Keras 3 model for ``config`` (inputs as in the module docstring)."""
    import keras

    if not (config.use_window or config.use_template):
        raise ModelConfigError("a PVC model without a waveform channel", expected="use_window or use_template",
                               fix="enable at least one of them")
    inputs, channels = [], []
    if config.use_window:
        window = keras.Input(shape=(window_samples, 1), name="window")
        inputs.append(window)
        channels.append(keras.layers.LayerNormalization(axis=1, center=False, scale=False, name="zscore")(window))
    if config.use_template:
        residual = keras.Input(shape=(window_samples, 1), name="residual")
        inputs.append(residual)
        channels.append(residual)
    rr = keras.Input(shape=(rr_features,), name="rr")
    hidden = keras.layers.Concatenate(axis=-1, name="channels")(channels) if len(channels) > 1 else channels[0]
    for index, (filters, kernel) in enumerate(zip(config.filters, config.kernel_sizes)):
        stride = config.first_stride if index == 0 else 1
        hidden = keras.layers.Conv1D(filters, kernel, strides=stride, padding="same", activation="relu",
                                     name=f"conv_{index}")(hidden)
        if index > 0:
            hidden = keras.layers.MaxPooling1D(2, name=f"pool_{index}")(hidden)
    hidden = keras.layers.Flatten(name="flatten")(hidden)  # keeps where each wave sits in the window
    hidden = keras.layers.Dense(config.morphology_units, activation="relu", name="morphology")(hidden)
    if config.morphology_dropout:
        hidden = keras.layers.Dropout(config.morphology_dropout, noise_shape=(None, 1), name="branch_dropout")(hidden)
    rhythm = keras.layers.Dense(config.rr_units, activation="relu", name="rr_dense")(rr)
    joined = keras.layers.Concatenate(name="join")([hidden, rhythm])
    joined = keras.layers.Dense(config.dense_units, activation="relu", name="dense")(joined)
    joined = keras.layers.Dropout(config.dropout, name="dropout")(joined)
    output = keras.layers.Dense(1, activation="sigmoid", name="v_probability")(joined)
    return keras.Model([*inputs, rr], output, name="ecg_pvc")
