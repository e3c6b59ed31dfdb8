"""Two small autoencoders over one pressure window; the device gets their reconstruction error as the score.

Input ``input`` (batch, window_samples, 1) float32 in the series' own units (no per-window normalisation:
the device feeds the signal as it is, resampled to the model rate). Both models scale it inside the
graph with one global mean and variance adapted on the training windows (``Normalization``), encode,
decode and scale back (``Normalization(invert=True)``), so the output — the reconstruction — has the
input's shape and units. The export appends ``exporters.heads``'s reconstruction-error head: the
graph's one output is the mean squared error per window (``anomaly_score``, (batch, 1)).

* ``autoencoder`` — Conv1D encoder (two strided convolutions), a dense bottleneck, a dense decoder.
* ``attention`` — patches of ``patch_samples`` embedded by a strided Conv1D, a learned position
  embedding, ``attention_blocks`` pre-norm blocks of MultiHeadAttention over the patches (self-attention
  across the window's time steps) with a small feed-forward, then the same bottleneck and dense decoder.

The bottleneck (``bottleneck_units`` for a whole window) is what makes a reconstruction error an anomaly
score: neither model can copy its input through.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from pipeline.errors import UsageError


class Architecture(StrEnum):
    AUTOENCODER = "autoencoder"  # convolutional encoder, dense bottleneck and decoder
    ATTENTION = "attention"  # self-attention over patches of the window, same bottleneck and decoder


class VitalsModelConfigError(UsageError):
    """A model configuration that cannot be built."""


@dataclass(frozen=True)
class VitalsModelConfig:
    architecture: Architecture = Architecture.AUTOENCODER  # the comparison's winner (benchmarks/results)
    filters: tuple[int, ...] = (16, 32)  # autoencoder: Conv1D widths, each with stride 2
    kernel_size: int = 7  # autoencoder: Conv1D kernel length in samples
    patch_samples: int = 8  # attention: samples per token (128-sample window → 16 tokens)
    embedding_units: int = 16  # attention: token width
    attention_heads: int = 2  # attention: heads per block (key width = embedding_units / heads)
    attention_blocks: int = 1  # attention: pre-norm transformer blocks
    bottleneck_units: int = 16  # both: the code of a whole window
    decoder_units: int = 64  # both: the dense layer between the code and the reconstruction

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "architecture", Architecture(self.architecture))
        except ValueError:
            raise VitalsModelConfigError(
                f"unknown architecture {self.architecture!r}",
                expected=f"one of {', '.join(Architecture)}", fix="choose one of them") from None
        if self.embedding_units % self.attention_heads:
            raise VitalsModelConfigError(
                f"{self.embedding_units} embedding units over {self.attention_heads} heads",
                expected="embedding_units divisible by attention_heads", fix="change either")


def build_vitals_model(config: VitalsModelConfig, train_windows: np.ndarray):
    """An uncompiled Keras 3 autoencoder for windows shaped like ``train_windows`` (n, samples, 1)."""
    import keras

    windows = np.asarray(train_windows, dtype=np.float32)
    samples = windows.shape[1]
    if config.architecture is Architecture.ATTENTION and samples % config.patch_samples:
        raise VitalsModelConfigError(f"a {samples}-sample window in {config.patch_samples}-sample patches",
                                     expected="a window length divisible by patch_samples", fix="change either")
    scale = keras.layers.Normalization(axis=None, name="scale")
    scale.adapt(windows)
    unscale = keras.layers.Normalization(axis=None, invert=True, name="unscale")
    unscale.adapt(windows)
    inputs = keras.Input(shape=windows.shape[1:], name="input")
    hidden = scale(inputs)
    if config.architecture is Architecture.AUTOENCODER:
        hidden = _convolutions(keras, hidden, config)
    else:
        hidden = _attention(keras, hidden, config, samples)
    hidden = keras.layers.Flatten(name="flatten")(hidden)
    hidden = keras.layers.Dense(config.bottleneck_units, activation="relu", name="bottleneck")(hidden)
    hidden = keras.layers.Dense(config.decoder_units, activation="relu", name="decoder")(hidden)
    hidden = keras.layers.Dense(samples, name="reconstruction_scaled")(hidden)
    hidden = keras.layers.Reshape(windows.shape[1:], name="reshape")(hidden)
    outputs = unscale(hidden)
    return keras.Model(inputs, outputs, name=f"vitals_{config.architecture.value}")


def _convolutions(keras, hidden, config: VitalsModelConfig):
    for index, filters in enumerate(config.filters):
        hidden = keras.layers.Conv1D(filters, config.kernel_size, strides=2, padding="same", activation="relu",
                                     name=f"conv_{index}")(hidden)
    return hidden


def _attention(keras, hidden, config: VitalsModelConfig, samples: int):
    tokens = samples // config.patch_samples
    width = config.embedding_units
    hidden = keras.layers.Conv1D(width, config.patch_samples, strides=config.patch_samples, name="patches")(hidden)
    # Token indices 0..tokens-1 made from the input itself (a cumulative count): keras ops on symbolic tensors
    # serialise with the model, where a constant or a custom layer would not load without this module.
    counts = keras.ops.cumsum(keras.ops.ones_like(hidden[:, :, 0]), axis=1) - 1.0
    positions = keras.layers.Embedding(tokens, width, name="positions")(keras.ops.cast(counts, "int32"))
    hidden = keras.layers.Add(name="with_positions")([hidden, positions])
    for index in range(config.attention_blocks):
        normed = keras.layers.LayerNormalization(name=f"attention_norm_{index}")(hidden)
        attended = keras.layers.MultiHeadAttention(config.attention_heads, width // config.attention_heads,
                                                   name=f"attention_{index}")(normed, normed)
        hidden = keras.layers.Add(name=f"attention_residual_{index}")([hidden, attended])
        normed = keras.layers.LayerNormalization(name=f"feed_forward_norm_{index}")(hidden)
        forward = keras.layers.Dense(2 * width, activation="relu", name=f"feed_forward_{index}")(normed)
        forward = keras.layers.Dense(width, name=f"feed_forward_out_{index}")(forward)
        hidden = keras.layers.Add(name=f"feed_forward_residual_{index}")([hidden, forward])
    return keras.layers.LayerNormalization(name="tokens_norm")(hidden)
