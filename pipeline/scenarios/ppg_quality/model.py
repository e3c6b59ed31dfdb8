"""A depthwise-separable 1-D CNN sized for a wearable, and what it costs (parameters, MACs, bytes).

Input ``ppg`` (batch, window samples, 1) float32: a window z-scored by the device (``runtime.windows``). One plain
Conv1D lifts the single channel to ``stem_filters`` (a depthwise convolution of one channel is a plain one); then
``SeparableConv1D`` blocks (a per-channel kernel, then a 1×1 mix), each halving the time axis; global max and mean
pooling over time (an artefact may sit anywhere in the window); one sigmoid unit: P(motion artefact).

``footprint`` counts multiply-accumulates per window from the built layers' shapes (convolution: output length ×
kernel × input channels [× output channels for plain and pointwise]; dense: inputs × units; biases, activations and
pooling are not MACs) and the weight bytes at fp32 and int8 (one byte a weight plus a fp32 scale per output
channel, as per-channel int8 weights store them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pipeline.errors import UsageError


class PpgModelConfigError(UsageError):
    """A PPG-quality model configuration that cannot be built."""


@dataclass(frozen=True)
class PpgModelConfig:
    stem_filters: int = 8  # the plain Conv1D's outputs
    stem_kernel: int = 7  # 0.14 s at 50 Hz
    separable_filters: tuple[int, ...] = (16, 16, 32)  # SeparableConv1D widths, each block strides by 2
    separable_kernel: int = 5
    dropout: float = 0.2  # before the output unit

    def __post_init__(self) -> None:
        if min(self.stem_filters, self.stem_kernel, self.separable_kernel, *self.separable_filters) < 1:
            raise PpgModelConfigError(f"a PPG model of {asdict(self)}", expected="positive widths and kernels",
                                      fix="use the defaults or positive integers")


def build_ppg_model(config: PpgModelConfig, window_samples: int):
    """An uncompiled Keras 3 model for windows of ``window_samples`` samples (one channel)."""
    import keras

    inputs = keras.Input(shape=(window_samples, 1), name="ppg")
    hidden = keras.layers.Conv1D(config.stem_filters, config.stem_kernel, strides=2, padding="same",
                                 activation="relu", name="stem")(inputs)
    for index, filters in enumerate(config.separable_filters):
        hidden = keras.layers.SeparableConv1D(filters, config.separable_kernel, strides=2, padding="same",
                                              activation="relu", name=f"separable_{index}")(hidden)
    pooled = keras.layers.Concatenate(name="pooled")([keras.layers.GlobalMaxPooling1D(name="max_over_time")(hidden),
                                                      keras.layers.GlobalAveragePooling1D(name="mean_over_time")(hidden)])
    pooled = keras.layers.Dropout(config.dropout, name="dropout")(pooled)
    output = keras.layers.Dense(1, activation="sigmoid", name="artefact_probability")(pooled)
    return keras.Model(inputs, output, name="ppg_quality_separable_cnn")


def footprint(model) -> dict:
    """Parameters, multiply-accumulates per window and weight bytes (fp32; int8 per-channel) of ``model``."""
    import keras

    macs, weights, channels_out = 0, 0, 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.SeparableConv1D):
            length, inputs = layer.output.shape[1], layer.input.shape[-1]
            kernel = layer.kernel_size[0]
            macs += length * kernel * inputs + length * inputs * layer.filters
            weights += kernel * inputs + inputs * layer.filters
            channels_out += inputs + layer.filters
        elif isinstance(layer, keras.layers.Conv1D):
            length, inputs = layer.output.shape[1], layer.input.shape[-1]
            macs += length * layer.kernel_size[0] * inputs * layer.filters
            weights += layer.kernel_size[0] * inputs * layer.filters
            channels_out += layer.filters
        elif isinstance(layer, keras.layers.Dense):
            macs += layer.input.shape[-1] * layer.units
            weights += layer.input.shape[-1] * layer.units
            channels_out += layer.units
    parameters = int(model.count_params())
    biases = parameters - weights
    return {
        "parameters": parameters,
        "macs_per_window": int(macs),
        "weight_bytes_fp32": parameters * 4,
        "weight_bytes_int8": int(weights + 4 * channels_out + 4 * biases),  # int8 weights, fp32 scales, int32 biases
        "counted": "weights and biases only; the ONNX file adds its graph (see the bundle's variant sizes)",
    }
