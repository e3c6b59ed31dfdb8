"""Hand-built bundles, one per task kind, with known weights: tiny ONNX graphs made with ``onnx.helper``, a
manifest written through the contract, files hashed as ``runtime.bundle`` checks them.

Every tabular bundle takes one row of the features ``FEATURES``; ``TWO_INPUT`` takes a 4-sample beat window
and one RR feature. ``expected_outputs`` recomputes each model in numpy, so tests assert decisions against
numbers made independently of ONNX Runtime.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtime.contract import (
    MANIFEST_NAME,
    MODEL_NAME,
    AnomalyRule,
    BinaryRule,
    BundleManifest,
    DataSummary,
    ExportSummary,
    FileEntry,
    InputSpec,
    MulticlassRule,
    MultilabelRule,
    OutputSpec,
    Preprocessing,
    RegressionRule,
    Selection,
    TaskKind,
)
from runtime.features import FeatureKind
from runtime.hashing import sha256_file

FEATURES = ("heart_rate", "qrs_width", "st_level")
TABULAR = InputSpec("x", (None, 3), FeatureKind.TABULAR, feature_names=FEATURES)
TWO_INPUT = (
    InputSpec("beat", (None, 4, 1), FeatureKind.WAVEFORM, sample_rate_hz=8.0, window_before_s=0.25,
              window_after_s=0.25),
    InputSpec("rr", (None, 1), FeatureKind.TABULAR, feature_names=("rr_ratio",)),
)
# Weights: feature → output columns.
MULTICLASS_WEIGHTS = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 1.0]], np.float32)
BINARY_WEIGHTS = np.array([[1.0], [-1.0], [0.5]], np.float32)
MULTILABEL_WEIGHTS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
QT_WEIGHTS = np.array([[2.0], [1.0], [0.0]], np.float32)  # qt = 2·heart_rate + qrs_width
HR_WEIGHTS = np.array([[1.0], [0.0], [1.0]], np.float32)  # hr = sqrt(heart_rate + st_level): NaN when negative
ANOMALY_WEIGHTS = np.array([[0.5], [0.5], [1.0]], np.float32)
TWO_INPUT_WEIGHTS = np.array([[1.0], [-2.0], [0.5], [1.5], [-1.0]], np.float32)  # 4 beat samples + 1 RR

OUTPUTS = {
    TaskKind.MULTICLASS: OutputSpec(("probabilities",), TaskKind.MULTICLASS, ("low", "mid", "high"),
                                    MulticlassRule(0.6), semantics="softmax over three risk levels"),
    TaskKind.BINARY: OutputSpec(("p_event",), TaskKind.BINARY, ("no-event", "event"),
                                BinaryRule(0.5, "sensitivity ≥ 0.9 on validation")),
    TaskKind.MULTILABEL: OutputSpec(("logits",), TaskKind.MULTILABEL, ("af", "lbbb", "rbbb"),
                                    MultilabelRule((0.5, 0.7, 0.3), "F1-optimal per label on validation"),
                                    graph_outputs_logits=True),
    TaskKind.REGRESSION: OutputSpec(("qt", "hr"), TaskKind.REGRESSION, ("qt_interval", "heart_rate_estimate"),
                                    RegressionRule(("ms", "bpm"))),
    TaskKind.ANOMALY: OutputSpec(("score",), TaskKind.ANOMALY, ("normal", "anomalous"),
                                 AnomalyRule(1.0, 0.01, "99th percentile of normal validation scores")),
}
TWO_INPUT_OUTPUT = OutputSpec(("score",), TaskKind.ANOMALY, ("normal", "anomalous"),
                              AnomalyRule(0.5, 0.02, "98th percentile of normal validation scores"))


def _matmul(source: str, weights: np.ndarray, name: str, target: str) -> tuple[onnx.NodeProto, onnx.TensorProto]:
    return helper.make_node("MatMul", [source, name], [target]), numpy_helper.from_array(weights, name)


def _tabular_graph(task: TaskKind) -> onnx.GraphProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    nodes, weights, outputs = [], [], []

    def output(name: str, columns: int) -> None:
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", columns]))

    if task is TaskKind.REGRESSION:
        for source_weights, name, target in ((QT_WEIGHTS, "w_qt", "qt"), (HR_WEIGHTS, "w_hr", "hr_sum")):
            node, tensor = _matmul("x", source_weights, name, target)
            nodes.append(node)
            weights.append(tensor)
        nodes.append(helper.make_node("Sqrt", ["hr_sum"], ["hr"]))
        output("qt", 1)
        output("hr", 1)
    else:
        table = {TaskKind.MULTICLASS: (MULTICLASS_WEIGHTS, "Softmax"), TaskKind.BINARY: (BINARY_WEIGHTS, "Sigmoid"),
                 TaskKind.MULTILABEL: (MULTILABEL_WEIGHTS, None), TaskKind.ANOMALY: (ANOMALY_WEIGHTS, None)}
        matrix, activation = table[task]
        name = OUTPUTS[task].names[0]
        node, tensor = _matmul("x", matrix, "weights", "linear" if activation else name)
        nodes.append(node)
        weights.append(tensor)
        if activation:
            nodes.append(helper.make_node(activation, ["linear"], [name], axis=1) if activation == "Softmax"
                         else helper.make_node(activation, ["linear"], [name]))
        output(name, matrix.shape[1])
    return helper.make_graph(nodes, f"{task.value}_test", [x], outputs, weights)


def _two_input_graph() -> onnx.GraphProto:
    beat = helper.make_tensor_value_info("beat", TensorProto.FLOAT, ["batch", 4, 1])
    rr = helper.make_tensor_value_info("rr", TensorProto.FLOAT, ["batch", 1])
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])
    nodes = [
        helper.make_node("Flatten", ["beat"], ["flat"], axis=1),
        helper.make_node("Concat", ["flat", "rr"], ["joined"], axis=1),
        helper.make_node("MatMul", ["joined", "weights"], ["score"]),
    ]
    return helper.make_graph(nodes, "two_inputs", [beat, rr], [score],
                             [numpy_helper.from_array(TWO_INPUT_WEIGHTS, "weights")])


def write_manifest(folder: Path, scenario: str, inputs: tuple[InputSpec, ...], output: OutputSpec,
                   lineage: dict[str, str] | None = None) -> BundleManifest:
    """``manifest.json`` for the files already in ``folder`` (each hashed), through the contract."""
    files = {path.name: FileEntry(sha256_file(path), path.stat().st_size)
             for path in sorted(folder.iterdir()) if path.name != MANIFEST_NAME}
    if MODEL_NAME not in files:  # a manifest-only bundle for the dashboard: the model is never opened there
        files[MODEL_NAME] = FileEntry("0" * 64, 1)
    manifest = BundleManifest(
        scenario=scenario,
        description=f"hand-built {output.task} bundle",
        inputs=inputs,
        output=output,
        preprocessing=Preprocessing("none", "rows as they are"),
        variant="fp32",
        selection=Selection("only variant", "only variant"),
        variants={"fp32": {"size_bytes": 100}},
        export=ExportSummary(17),
        training={},
        data=DataSummary(True),
        lineage=lineage or {},
        files=files,
        tool_versions={"edgemed": "test"},
        created_at="2026-01-01T00:00:00+00:00",
    )
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest.to_dict(), indent=1))
    return manifest


def build_bundle(folder: Path, task: TaskKind | None = None) -> Path:
    """A runnable bundle of ``task`` on ``TABULAR`` rows, or the two-input anomaly bundle when ``task`` is None."""
    folder.mkdir(parents=True, exist_ok=True)
    graph = _two_input_graph() if task is None else _tabular_graph(task)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / MODEL_NAME)
    if task is None:
        write_manifest(folder, "two-input-anomaly", TWO_INPUT, TWO_INPUT_OUTPUT)
    else:
        write_manifest(folder, f"{task.value}-test", (TABULAR,), OUTPUTS[task])
    return folder


def expected_outputs(task: TaskKind, rows: np.ndarray) -> np.ndarray:
    """The tabular bundle's model outputs for ``rows``, in float64."""
    x = np.asarray(rows, np.float64)
    if task is TaskKind.MULTICLASS:
        logits = x @ MULTICLASS_WEIGHTS
        exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exponentials / exponentials.sum(axis=1, keepdims=True)
    if task is TaskKind.BINARY:
        return 1 / (1 + np.exp(-(x @ BINARY_WEIGHTS)))
    if task is TaskKind.MULTILABEL:
        return x @ MULTILABEL_WEIGHTS  # logits: the runtime applies the sigmoid
    if task is TaskKind.REGRESSION:
        with np.errstate(invalid="ignore"):
            return np.concatenate([x @ QT_WEIGHTS, np.sqrt(x @ HR_WEIGHTS)], axis=1)
    return x @ ANOMALY_WEIGHTS
