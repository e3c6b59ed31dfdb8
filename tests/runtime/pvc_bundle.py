"""Hand-built PVC bundles whose inputs the ECG stream derives: a beat window, a template residual and RR features
(or two of them), one binary sigmoid ``v_probability``, with the manifest's RR and template settings explicit.

The model is linear in its inputs (flattened and joined in manifest order, times ``weights``, plus ``BIAS``,
through a sigmoid), so ``expected_probability`` recomputes it in numpy from the inputs the stream traced.
Its RR weight makes a premature beat (pre-RR / local RR under ~0.85) a V.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtime.bundle import Bundle, load_bundle
from runtime.contract import MODEL_NAME, BinaryRule, InputSpec, OutputSpec, TaskKind
from runtime.contract.derived import RR_FEATURE_NAMES, Derivation, RrFeatureConfig, StreamFeature, TemplateConfig
from runtime.features import FeatureKind
from runtime.trust import TrustPolicy
from tests.runtime.hand_built import write_manifest

UNSIGNED = TrustPolicy.development()  # a hand-made bundle has no signature
RATE = 360.0
SAMPLES = 252  # 0.25 s before the R-peak, 0.45 s from it on
RR = RrFeatureConfig(history_beats=10, max_rr_s=3.0, default_rr_s=1.0)
TEMPLATE = TemplateConfig(history_beats=30, minimum_std=1e-6, minimum_pre_to_local=0.9)
OUTPUT = OutputSpec(("v_probability",), TaskKind.BINARY, ("non-V", "V"),
                    BinaryRule(0.5, "a premature beat: pre-RR under 0.85 of the local RR (hand-built)"))
BIAS = 8.5


def _window(name: str, derivation: Derivation) -> InputSpec:
    return InputSpec(name, (None, SAMPLES, 1), FeatureKind.WAVEFORM, sample_rate_hz=RATE, window_before_s=0.25,
                     window_after_s=0.45, derived=derivation)


WINDOW = _window("window", Derivation.beat_window())
RESIDUAL = _window("residual", Derivation.template_residual(TEMPLATE, RR))
RR_INPUT = InputSpec("rr", (None, len(RR_FEATURE_NAMES)), FeatureKind.TABULAR, feature_names=RR_FEATURE_NAMES,
                     derived=Derivation.rr_features(RR))
THREE_INPUTS = (WINDOW, RESIDUAL, RR_INPUT)
TWO_INPUTS = (RESIDUAL, RR_INPUT)


def weights(inputs: tuple[InputSpec, ...]) -> dict[str, np.ndarray]:
    """Per input, its weights (one per flattened value): small on the waveforms, −10 on pre-RR / local RR."""
    table = {}
    for spec in inputs:
        values = np.zeros(int(np.prod(spec.sample_shape)), np.float32)
        if spec.stream_feature is StreamFeature.RR_FEATURES:
            values[RR_FEATURE_NAMES.index("pre_to_local")] = -10.0
            values[RR_FEATURE_NAMES.index("post_to_local")] = 0.5
        elif spec.stream_feature is StreamFeature.TEMPLATE_RESIDUAL:
            values[80:100] = 0.01  # around the R-peak (index 90)
        else:
            values[90] = 1e-4  # the raw window's R-peak value (any unit: the stream feeds it as cut)
        table[spec.name] = values
    return table


def expected_probability(inputs: tuple[InputSpec, ...], fed: dict[str, np.ndarray]) -> np.ndarray:
    """The model's output for a batch ``fed`` (input name → (n, *sample shape)), in float64."""
    table = weights(inputs)
    logit = BIAS + sum(np.asarray(fed[spec.name], np.float64).reshape(len(fed[spec.name]), -1) @ table[spec.name]
                       for spec in inputs)
    return 1 / (1 + np.exp(-logit))


def _graph(inputs: tuple[InputSpec, ...]) -> onnx.GraphProto:
    table = weights(inputs)
    graph_inputs, flat, nodes = [], [], []
    for spec in inputs:
        graph_inputs.append(helper.make_tensor_value_info(spec.name, TensorProto.FLOAT, ["batch", *spec.sample_shape]))
        nodes.append(helper.make_node("Flatten", [spec.name], [f"{spec.name}_flat"], axis=1))
        flat.append(f"{spec.name}_flat")
    joined = np.concatenate([table[spec.name] for spec in inputs])[:, None]
    nodes += [
        helper.make_node("Concat", flat, ["joined"], axis=1),
        helper.make_node("MatMul", ["joined", "weights"], ["linear"]),
        helper.make_node("Add", ["linear", "bias"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["v_probability"]),
    ]
    output = helper.make_tensor_value_info("v_probability", TensorProto.FLOAT, ["batch", 1])
    initialisers = [numpy_helper.from_array(joined, "weights"), numpy_helper.from_array(np.float32([BIAS]), "bias")]
    return helper.make_graph(nodes, "pvc_test", graph_inputs, [output], initialisers)


def build_pvc_bundle(folder: Path, inputs: tuple[InputSpec, ...] = THREE_INPUTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model = helper.make_model(_graph(inputs), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / MODEL_NAME)
    write_manifest(folder, "pvc-stream-test", inputs, OUTPUT)
    return folder


def load_pvc_bundle(folder: Path, inputs: tuple[InputSpec, ...] = THREE_INPUTS) -> Bundle:
    return load_bundle(build_pvc_bundle(folder, inputs), provider="cpu", threads=1, trust=UNSIGNED)
