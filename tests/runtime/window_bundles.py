"""Hand-built ``signal_window`` bundles with known weights, one per task kind, for the windowed stream's tests.

Each model flattens its window (``[batch, samples]`` or ``[batch, samples, channels]``) and multiplies it by
fixed weights (``WEIGHTS``), then applies the task kind's activation, exactly as ``expected_outputs`` does in
numpy: tests compare the stream's decisions with numbers made without ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtime.bundle import Bundle, TrustPolicy, load_bundle
from runtime.contract import (
    MODEL_NAME,
    AnomalyRule,
    BinaryRule,
    Derivation,
    InputSpec,
    MulticlassRule,
    MultilabelRule,
    OutputSpec,
    RegressionRule,
    TaskKind,
    WindowConfig,
)
from runtime.features import FeatureKind
from tests.runtime.hand_built import write_manifest

RATE = 64.0  # the models' rate
WINDOW = 32  # samples: 0.5 s
HOP_S = 0.25  # 16 samples: windows overlap by half
OUTPUTS = {
    TaskKind.MULTICLASS: OutputSpec(("probabilities",), TaskKind.MULTICLASS, ("rest", "alert", "artefact"),
                                    MulticlassRule(0.5)),
    TaskKind.BINARY: OutputSpec(("p_event",), TaskKind.BINARY, ("normal", "seizure"), BinaryRule(0.5, "test")),
    TaskKind.ANOMALY: OutputSpec(("score",), TaskKind.ANOMALY, ("normal", "anomalous"),
                                 AnomalyRule(2.0, 0.01, "test")),
    TaskKind.MULTILABEL: OutputSpec(("logits",), TaskKind.MULTILABEL, ("a", "b"), MultilabelRule((0.5, 0.5), "test"),
                                    graph_outputs_logits=True),
    TaskKind.REGRESSION: OutputSpec(("value",), TaskKind.REGRESSION, ("rate",), RegressionRule(("bpm",))),
}
ACTIVATIONS = {TaskKind.MULTICLASS: "Softmax", TaskKind.BINARY: "Sigmoid"}


def window_spec(channels: int = 1, window: int = WINDOW, rate: float = RATE, hop_s: float = HOP_S,
                three_axes: bool = False, **settings) -> InputSpec:
    """A ``signal_window`` input: ``[null, window]`` (one channel) or ``[null, window, channels]``."""
    shape = (None, window, channels) if channels > 1 or three_axes else (None, window)
    return InputSpec("signal", shape, FeatureKind.WAVEFORM, sample_rate_hz=rate,
                     derived=Derivation.signal_window(WindowConfig(hop_s=hop_s, **settings)))


def weights(spec: InputSpec, columns: int) -> np.ndarray:
    """Fixed weights (window values → output columns), the same for every build."""
    size = int(np.prod(spec.sample_shape))
    return np.random.default_rng(size * 10 + columns).normal(0.0, 0.3, (size, columns)).astype(np.float32)


def build_window_bundle(folder: Path, task: TaskKind = TaskKind.MULTICLASS, spec: InputSpec | None = None) -> Path:
    """A runnable window bundle of ``task`` on ``spec`` (default: one channel, 32 samples at 64 Hz, hop 0.25 s)."""
    spec = spec or window_spec()
    output = OUTPUTS[task]
    columns = len(output.labels) if task is not TaskKind.BINARY and task is not TaskKind.ANOMALY else 1
    folder.mkdir(parents=True, exist_ok=True)
    name = output.names[0]
    activation = ACTIVATIONS.get(task)
    nodes = [helper.make_node("Flatten", ["signal"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "weights"], ["linear" if activation else name])]
    if activation == "Softmax":
        nodes.append(helper.make_node("Softmax", ["linear"], [name], axis=1))
    elif activation:
        nodes.append(helper.make_node(activation, ["linear"], [name]))
    graph = helper.make_graph(
        nodes, f"{task.value}_window",
        [helper.make_tensor_value_info("signal", TensorProto.FLOAT, ["batch", *spec.sample_shape])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", columns])],
        [numpy_helper.from_array(weights(spec, columns), "weights")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / MODEL_NAME)
    write_manifest(folder, f"{task.value}-window-test", (spec,), output)
    return folder


def load(folder: Path, threads: int = 1) -> Bundle:
    return load_bundle(folder, provider="cpu", threads=threads, trust=TrustPolicy.development())


def expected_outputs(task: TaskKind, spec: InputSpec, inputs: np.ndarray) -> np.ndarray:
    """The model's outputs for model inputs ``inputs`` (n, *sample shape), in float64."""
    output = OUTPUTS[task]
    columns = len(output.labels) if task is not TaskKind.BINARY and task is not TaskKind.ANOMALY else 1
    linear = np.asarray(inputs, np.float64).reshape(len(inputs), -1) @ weights(spec, columns).astype(np.float64)
    if task is TaskKind.MULTICLASS:
        exponentials = np.exp(linear - linear.max(axis=1, keepdims=True))
        return exponentials / exponentials.sum(axis=1, keepdims=True)
    if task is TaskKind.BINARY:
        return 1 / (1 + np.exp(-linear))
    return linear


def synthetic_signal(seconds: float, rate: float = RATE, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A test signal (sines and noise in ADC-like units): ``(samples,)`` or ``(samples, channels)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    columns = [2000 + 300 * np.sin(2 * np.pi * (1.3 + channel) * t + channel) + 120 * np.sin(2 * np.pi * 7.1 * t)
               + 40 * rng.normal(size=t.size) for channel in range(channels)]
    return columns[0] if channels == 1 else np.stack(columns, axis=1)
