"""A LiteRT model fed by input name, for timing, for whole splits and for the device stream.

A model the TFLite converter made from a Keras SavedModel keeps the Keras ``Input`` names in its
``serving_default`` signature (its tensors are called ``serving_default_<name>:0``, in an order of
the converter's choosing); the exported ONNX graph keeps the same names. So inputs are given as
``exporters.inputs`` takes them — one array for a single-input model, or input name → array — and
matched to the interpreter's tensors by those names. Outputs are the signature's outputs in order,
each flattened per sample and joined (one output for every model edgemed makes).

The interpreter is ``ai_edge_litert``'s when installed, else ``tf.lite.Interpreter``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from exporters.inputs import ModelInputs, feeds, sample_count, select
from pipeline.benchmark.errors import BenchmarkError

PREDICTION_BATCH = 256  # rows per interpreter call when a whole split is run


def litert_interpreter_class() -> tuple[type, str]:
    """(Interpreter class, description): ai_edge_litert when installed, else tf.lite."""
    try:
        from importlib import metadata

        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, f"ai_edge_litert {metadata.version('ai-edge-litert')}"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, f"tf.lite.Interpreter (tensorflow {tf.__version__})"


def _tensor_name(detail: dict) -> str:
    """``serving_default_rr:0`` → ``rr``: the Keras input name in a signature-less model's tensor name."""
    name = str(detail["name"]).removeprefix("serving_default_")
    return name.rsplit(":", 1)[0]


class LiteRtModel:
    """One interpreter of one ``.tflite`` file, its inputs by name and its batch shape of the moment."""

    def __init__(self, path: Path, threads: int, interpreter_class: type | None = None) -> None:
        interpreter_class = interpreter_class or litert_interpreter_class()[0]
        self.path = Path(path)
        self.interpreter = interpreter_class(model_path=str(path), num_threads=threads)
        signatures = self.interpreter.get_signature_list()
        if signatures:
            runner = self.interpreter.get_signature_runner(next(iter(signatures)))
            inputs, outputs = runner.get_input_details(), runner.get_output_details()
            self.inputs = {name: dict(detail) for name, detail in inputs.items()}
            self.outputs = [int(detail["index"]) for detail in outputs.values()]
        else:
            self.inputs = {_tensor_name(detail): dict(detail) for detail in self.interpreter.get_input_details()}
            self.outputs = [int(detail["index"]) for detail in self.interpreter.get_output_details()]
        self._rows: int | None = None

    @property
    def fixed_batch(self) -> int | None:
        """The batch size every input fixes, None when the batch axis is dynamic."""
        detail = next(iter(self.inputs.values()))
        batch = int(detail.get("shape_signature", detail["shape"])[0])
        return None if batch == -1 else batch

    def feed(self, inputs: ModelInputs) -> dict[int, np.ndarray]:
        """``inputs`` as contiguous float32 arrays by tensor index, each shaped as its tensor (a ``(n, samples)``
        window feeds a ``(n, samples, 1)`` input)."""
        named = feeds(inputs, list(self.inputs), BenchmarkError)
        rows = sample_count(named)
        fed = {}
        for name, values in named.items():
            detail = self.inputs[name]
            shape = (rows, *[int(size) for size in detail.get("shape_signature", detail["shape"])[1:]])
            array = np.asarray(values, dtype=np.float32)
            if array.size != int(np.prod(shape)):
                raise BenchmarkError(
                    f"input {name!r} of shape {array.shape} does not fit {self.path.name}'s {shape}",
                    expected="the inputs the Keras model (and its ONNX export) takes",
                    fix="benchmark the LiteRT model made from this scenario's own Keras model",
                )
            fed[int(detail["index"])] = np.ascontiguousarray(array.reshape(shape))
        return fed

    def resize(self, rows: int) -> None:
        """Every input to ``rows`` samples (re-allocating only when the batch changes)."""
        if rows == self._rows:
            return
        for detail in self.inputs.values():
            shape = [rows, *[int(size) for size in detail.get("shape_signature", detail["shape"])[1:]]]
            self.interpreter.resize_tensor_input(int(detail["index"]), shape, strict=False)
        self.interpreter.allocate_tensors()
        self._rows = rows

    def _outputs(self, rows: int) -> np.ndarray:
        values = [np.asarray(self.interpreter.get_tensor(index)).reshape(rows, -1) for index in self.outputs]
        return values[0].copy() if len(values) == 1 else np.concatenate(values, axis=1)

    def predict(self, inputs: ModelInputs) -> np.ndarray:
        """The outputs ``(n, columns)`` for one batch of any size (the interpreter is resized to it)."""
        fed = self.feed(inputs)
        rows = sample_count(inputs)
        if rows == 0:
            return np.zeros((0, 1), dtype=np.float32)
        self.resize(rows)
        for index, values in fed.items():
            self.interpreter.set_tensor(index, values)
        self.interpreter.invoke()
        return self._outputs(rows)

    def predict_in_batches(self, inputs: ModelInputs, batch_size: int = PREDICTION_BATCH) -> np.ndarray:
        """The outputs for every row of ``inputs``, ``batch_size`` rows per call."""
        rows = sample_count(inputs)
        parts = [self.predict(select(inputs, slice(start, start + batch_size)))
                 for start in range(0, rows, batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)


def litert_runner(interpreter_class: type, path: Path, batch: ModelInputs, threads: int) -> Callable[[], np.ndarray]:
    """A fresh interpreter bound to ``batch``: each call sets its inputs and invokes (what a device does per
    inference). One interpreter per bound batch, since an interpreter holds one shape at a time."""
    model = LiteRtModel(path, threads, interpreter_class)
    fed = model.feed(batch)
    model.resize(sample_count(batch))

    def run() -> np.ndarray:
        for index, values in fed.items():
            model.interpreter.set_tensor(index, values)
        model.interpreter.invoke()
        return model.interpreter.get_tensor(model.outputs[0])

    return run
