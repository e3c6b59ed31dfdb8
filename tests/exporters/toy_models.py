"""Tiny Keras models and toy datasets for the exporters tests.

Two learnable toy problems (so int8 agreement with fp32 means something):

* tabular: 3 Gaussian blobs in 16 features with wildly different feature scales and
  offsets (so the adapted ``Normalization`` layer matters);
* signals: 64-sample windows of a sine at 2, 5 or 9 cycles per window with random
  phase, amplitude, DC offset and noise (so the per-window z-scoring
  ``LayerNormalization(axis=1)`` matters).

The other families (GRU, LSTM, self-attention, separable conv, autoencoder) only need
to export faithfully, so they stay untrained.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

SEED = 7
CLASSES = 3
TABULAR_FEATURES = 16
SIGNAL_LENGTH = 64
SEQUENCE_SHAPE = (24, 3)  # (time steps, channels) of the recurrent models
TOKEN_SHAPE = (12, 8)  # (tokens, embedding) of the self-attention model


@dataclass(frozen=True)
class Splits:
    """Train / calibration / test features and labels of one toy problem."""

    train_x: np.ndarray
    train_y: np.ndarray
    calibration_x: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def _split(features: np.ndarray, labels: np.ndarray, train: int, calibration: int) -> Splits:
    return Splits(
        train_x=features[:train],
        train_y=labels[:train],
        calibration_x=features[train : train + calibration],
        test_x=features[train + calibration :],
        test_y=labels[train + calibration :],
    )


def make_tabular(samples: int = 1100, seed: int = SEED) -> Splits:
    generator = np.random.default_rng(seed)
    centers = generator.normal(0.0, 1.6, size=(CLASSES, TABULAR_FEATURES))
    labels = generator.integers(0, CLASSES, size=samples)
    standardized = centers[labels] + generator.normal(0.0, 1.0, size=(samples, TABULAR_FEATURES))
    scales = np.logspace(-2, 2, TABULAR_FEATURES)  # 0.01 … 100
    offsets = np.linspace(-50.0, 500.0, TABULAR_FEATURES)
    features = (standardized * scales + offsets).astype(np.float32)
    return _split(features, labels, train=600, calibration=200)


def make_signals(samples: int = 900, seed: int = SEED + 1) -> Splits:
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, CLASSES, size=samples)
    cycles = np.array([2.0, 5.0, 9.0])[labels]
    time = np.arange(SIGNAL_LENGTH) / SIGNAL_LENGTH
    phase = generator.uniform(0, 2 * np.pi, size=(samples, 1))
    amplitude = generator.uniform(0.5, 40.0, size=(samples, 1))
    offset = generator.uniform(-100.0, 100.0, size=(samples, 1))
    waves = amplitude * np.sin(2 * np.pi * cycles[:, None] * time[None, :] + phase)
    noise = generator.normal(0.0, 0.3, size=waves.shape) * amplitude
    features = (waves + noise + offset).astype(np.float32)[..., None]
    return _split(features, labels, train=500, calibration=150)


# ----------------------------------------------------------------------------- model builders


def build_mlp(train: Splits | None = None, seed: int = SEED) -> object:
    import keras

    keras.utils.set_random_seed(seed)
    normalization = keras.layers.Normalization(name="standardize")
    inputs = keras.Input((TABULAR_FEATURES,), name="features")
    hidden = keras.layers.Dense(32, activation="relu", name="hidden")(normalization(inputs))
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="head")(hidden)
    model = keras.Model(inputs, outputs, name="mlp")
    if train is not None:
        normalization.adapt(train.train_x)
        _fit(model, train, epochs=10)
    else:
        normalization.adapt(np.random.default_rng(seed).normal(size=(64, TABULAR_FEATURES)).astype(np.float32))
    return model


def build_conv(train: Splits | None = None, seed: int = SEED) -> object:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIGNAL_LENGTH, 1), name="window")
    zscored = keras.layers.LayerNormalization(axis=1, center=False, scale=False, name="zscore")(inputs)
    hidden = keras.layers.Conv1D(8, 5, activation="relu", name="conv_a")(zscored)
    hidden = keras.layers.MaxPooling1D(2, name="pool")(hidden)
    hidden = keras.layers.Conv1D(16, 3, activation="relu", name="conv_b")(hidden)
    hidden = keras.layers.GlobalAveragePooling1D(name="average")(hidden)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="head")(hidden)
    model = keras.Model(inputs, outputs, name="conv")
    if train is not None:
        _fit(model, train, epochs=10)
    return model


def build_gru(seed: int = SEED) -> object:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(SEQUENCE_SHAPE)
    hidden = keras.layers.GRU(8, name="gru")(inputs)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="head")(hidden)
    return keras.Model(inputs, outputs, name="gru_model")


def build_lstm(seed: int = SEED) -> object:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(SEQUENCE_SHAPE)
    hidden = keras.layers.LSTM(8, name="lstm")(inputs)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="head")(hidden)
    return keras.Model(inputs, outputs, name="lstm_model")


def build_attention(seed: int = SEED) -> object:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(TOKEN_SHAPE)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="self_attention")(inputs, inputs)
    hidden = keras.layers.Add(name="residual")([inputs, attended])
    hidden = keras.layers.LayerNormalization(name="post_norm")(hidden)
    hidden = keras.layers.GlobalAveragePooling1D(name="average")(hidden)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="head")(hidden)
    return keras.Model(inputs, outputs, name="attention_model")


def build_separable(seed: int = SEED) -> object:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIGNAL_LENGTH, 2))
    hidden = keras.layers.SeparableConv1D(8, 5, activation="relu", name="separable")(inputs)
    hidden = keras.layers.GlobalMaxPooling1D(name="max")(hidden)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="head")(hidden)
    return keras.Model(inputs, outputs, name="separable_model")


def build_autoencoder(seed: int = SEED) -> object:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((TABULAR_FEATURES,))
    hidden = keras.layers.Dense(8, activation="relu", name="encode")(inputs)
    code = keras.layers.Dense(4, activation="relu", name="code")(hidden)
    hidden = keras.layers.Dense(8, activation="relu", name="decode")(code)
    outputs = keras.layers.Dense(TABULAR_FEATURES, name="reconstruction")(hidden)
    return keras.Model(inputs, outputs, name="autoencoder")


RR_FEATURES = 4  # RR-interval features beside an ECG-like window (the two-input model)


def make_two_input(samples: int = 700, seed: int = SEED + 2) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Windows like ``make_signals`` and 4 RR features in milliseconds; the class shows in both."""
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, CLASSES, size=samples)
    time = np.arange(SIGNAL_LENGTH) / SIGNAL_LENGTH
    cycles = np.array([2.0, 5.0, 9.0])[labels]
    amplitude = generator.uniform(0.5, 40.0, size=(samples, 1))
    waves = amplitude * np.sin(2 * np.pi * cycles[:, None] * time[None, :] + generator.uniform(0, 6.3, (samples, 1)))
    waves += generator.normal(0.0, 0.3, size=waves.shape) * amplitude + generator.uniform(-100, 100, (samples, 1))
    rr = 800.0 + 60.0 * labels[:, None] + generator.normal(0.0, 25.0, size=(samples, RR_FEATURES))
    return {"window": waves.astype(np.float32)[..., None], "rr": rr.astype(np.float32)}, labels


def build_two_input(inputs: dict[str, np.ndarray] | None = None, labels: np.ndarray | None = None,
                    seed: int = SEED) -> object:
    """Window → z-score → Conv1D → pooling, RR → Normalization → Dense, concatenated → softmax."""
    import keras

    keras.utils.set_random_seed(seed)
    window = keras.Input((SIGNAL_LENGTH, 1), name="window")
    rr = keras.Input((RR_FEATURES,), name="rr")
    hidden = keras.layers.LayerNormalization(axis=1, center=False, scale=False, name="zscore")(window)
    hidden = keras.layers.Conv1D(8, 5, activation="relu", name="conv")(hidden)
    hidden = keras.layers.GlobalAveragePooling1D(name="average")(hidden)
    normalization = keras.layers.Normalization(name="rr_standardize")
    rr_hidden = keras.layers.Dense(4, activation="relu", name="rr_dense")(normalization(rr))
    joined = keras.layers.Concatenate(name="join")([hidden, rr_hidden])
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="head")(joined)
    model = keras.Model({"window": window, "rr": rr}, outputs, name="two_input")
    if inputs is not None and labels is not None:
        normalization.adapt(inputs["rr"])
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
        model.fit(inputs, labels, epochs=8, batch_size=64, verbose=0, shuffle=True)
    else:
        normalization.adapt(np.random.default_rng(seed).normal(800.0, 50.0, size=(64, RR_FEATURES)).astype(np.float32))
    return model


def _fit(model: object, data: Splits, epochs: int) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(data.train_x, data.train_y, epochs=epochs, batch_size=64, verbose=0, shuffle=True)


def random_inputs(shape: tuple[int, ...], samples: int, seed: int = SEED, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(0.0, scale, size=(samples, *shape))).astype(np.float32)


@dataclass(frozen=True)
class Family:
    """One model family: how to build it and what inputs to check it on."""

    name: str
    build: Callable[[], object]
    inputs: Callable[[], np.ndarray]


FAMILY_NAMES = ("mlp", "conv1d_zscore", "gru", "lstm", "attention", "separable_conv1d", "autoencoder")


class ModelZoo:
    """Builds each family's model and ONNX export once, on first use."""

    def __init__(self, folder: Path, tabular: Splits, signals: Splits) -> None:
        self._folder = folder
        self.families = {
            "mlp": Family("mlp", lambda: build_mlp(tabular), lambda: tabular.test_x),
            "conv1d_zscore": Family("conv1d_zscore", lambda: build_conv(signals), lambda: signals.test_x),
            "gru": Family("gru", build_gru, lambda: random_inputs(SEQUENCE_SHAPE, 150)),
            "lstm": Family("lstm", build_lstm, lambda: random_inputs(SEQUENCE_SHAPE, 150)),
            "attention": Family("attention", build_attention, lambda: random_inputs(TOKEN_SHAPE, 150)),
            "separable_conv1d": Family(
                "separable_conv1d", build_separable, lambda: random_inputs((SIGNAL_LENGTH, 2), 150)
            ),
            "autoencoder": Family(
                "autoencoder", build_autoencoder, lambda: random_inputs((TABULAR_FEATURES,), 150, scale=2.0)
            ),
        }
        self._models: dict[str, object] = {}
        self._exports: dict[str, Path] = {}

    def model(self, name: str) -> object:
        if name not in self._models:
            self._models[name] = self.families[name].build()
        return self._models[name]

    def inputs(self, name: str) -> np.ndarray:
        return self.families[name].inputs()

    def onnx_path(self, name: str) -> Path:
        if name not in self._exports:
            from exporters.keras_to_onnx import ExportConfig, export_keras_to_onnx

            path = self._folder / f"{name}.onnx"
            output_name = "reconstruction" if name == "autoencoder" else "probabilities"
            export_keras_to_onnx(self.model(name), path, ExportConfig(output_name=output_name))
            self._exports[name] = path
        return self._exports[name]
