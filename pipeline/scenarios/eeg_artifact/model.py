"""A small recurrent artefact classifier, its two cells (GRU, LSTM), and what it costs (parameters, MACs, bytes).

Input ``eeg`` (batch, window samples, 1) float32: a window z-scored by the device (``runtime.windows``). A strided
Conv1D front end (``frontend_filters`` / ``frontend_strides``) turns 500 samples at 250 Hz into a short sequence of
learned band-energy features — 50 steps of 40 ms for the defaults: a recurrent cell stepping over 500 raw samples
would cost ten times the steps, and a step's fixed cost is what dominates a small recurrent model on a CPU. One
recurrent layer (``cell``: GRU or LSTM, ``units`` wide) reads the sequence; its last state goes through dropout to
a softmax over (clean, movement, electromagnetic).

The two cells export differently (tf2onnx 1.17, Keras 3): LSTM becomes ONNX's fused ``LSTM`` op, GRU an ONNX
``Loop`` whose body holds the cell's MatMuls — ``pipeline.scenarios.eeg_artifact.cells`` measures what that
means for parity, latency and int8, and the default cell is the one those measurements favour.

``footprint`` counts multiply-accumulates per window from the built layers' shapes (convolution: output length ×
kernel × input channels × filters; GRU: steps × 3 gates × (inputs + units) × units; LSTM: 4 gates instead of 3;
dense: inputs × units; biases, activations and element-wise gate products are not MACs) and weight bytes at fp32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

from pipeline.errors import UsageError


class EegModelConfigError(UsageError):
    """An EEG artefact model configuration that cannot be built."""


class RecurrentCell(StrEnum):
    GRU = "gru"  # exports as an ONNX Loop (tf2onnx 1.17 does not fuse Keras 3's GRU)
    LSTM = "lstm"  # exports as ONNX's fused LSTM op


GATES = {RecurrentCell.GRU: 3, RecurrentCell.LSTM: 4}


@dataclass(frozen=True)
class EegModelConfig:
    # The cell the comparison favoured (benchmarks/results/eeg_recurrent_cells.md): fused LSTM.
    cell: RecurrentCell = RecurrentCell.LSTM
    frontend_filters: tuple[int, ...] = (8, 16)  # Conv1D widths of the front end
    frontend_kernels: tuple[int, ...] = (9, 5)  # their kernel lengths (36 ms, then 5 steps of 20 ms)
    frontend_strides: tuple[int, ...] = (5, 2)  # 500 samples → 100 → 50 recurrent steps
    units: int = 16  # recurrent state width
    dropout: float = 0.2  # on the last state, before the softmax

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell", RecurrentCell(self.cell))
        lengths = {len(self.frontend_filters), len(self.frontend_kernels), len(self.frontend_strides)}
        values = (*self.frontend_filters, *self.frontend_kernels, *self.frontend_strides, self.units)
        if len(lengths) != 1 or min(values) < 1 or not 0 <= self.dropout < 1:
            raise EegModelConfigError(f"an EEG model of {asdict(self)}",
                                      expected="one kernel and stride per front-end filter, positive sizes, "
                                               "dropout in [0, 1)", fix="use the defaults or fix the sizes")


def build_eeg_model(config: EegModelConfig, window_samples: int, classes: int):
    """An uncompiled Keras 3 model for z-scored windows of ``window_samples`` samples (one channel)."""
    import keras

    inputs = keras.Input(shape=(window_samples, 1), name="eeg")
    hidden = inputs
    for index, (filters, kernel, stride) in enumerate(
            zip(config.frontend_filters, config.frontend_kernels, config.frontend_strides, strict=True)):
        hidden = keras.layers.Conv1D(filters, kernel, strides=stride, padding="same", activation="relu",
                                     name=f"frontend_{index}")(hidden)
    layer = keras.layers.GRU if config.cell is RecurrentCell.GRU else keras.layers.LSTM
    hidden = layer(config.units, name=config.cell.value)(hidden)
    hidden = keras.layers.Dropout(config.dropout, name="dropout")(hidden)
    outputs = keras.layers.Dense(classes, activation="softmax", name="probabilities")(hidden)
    return keras.Model(inputs, outputs, name=f"eeg_artifact_{config.cell.value}")


def footprint(model) -> dict:
    """Parameters, multiply-accumulates per window, recurrent steps and fp32 weight bytes of ``model``."""
    import keras

    macs, steps = 0, 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv1D):
            length, inputs = layer.output.shape[1], layer.input.shape[-1]
            macs += length * layer.kernel_size[0] * inputs * layer.filters
        elif isinstance(layer, keras.layers.GRU | keras.layers.LSTM):
            steps, inputs = layer.input.shape[1], layer.input.shape[-1]
            gates = GATES[RecurrentCell.GRU if isinstance(layer, keras.layers.GRU) else RecurrentCell.LSTM]
            macs += steps * gates * (inputs + layer.units) * layer.units
        elif isinstance(layer, keras.layers.Dense):
            macs += layer.input.shape[-1] * layer.units
    parameters = int(model.count_params())
    return {"parameters": parameters, "macs_per_window": int(macs), "recurrent_steps": int(steps),
            "fp32_weight_bytes": 4 * parameters}
