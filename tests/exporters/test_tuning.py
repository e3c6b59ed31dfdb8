"""int8 tuning: searches the settings, honours the accuracy check, reports every candidate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from exporters.errors import QuantizationError
from exporters.quantization import (
    AccuracyVerdict,
    ActivationType,
    QuantizationConfig,
    QuantizationFormat,
    TuningConfig,
    choose_quantization,
    prepare_for_static_quantization,
    quantizable_node_names,
    quantize_int8_static,
)
from exporters.timing import InterleavedTiming
from tests.exporters.toy_models import ModelZoo, Splits

QUICK = InterleavedTiming(rounds=3, runs_per_round=10, warmup_runs=2)
# both weight ranges, to exercise the search's mechanics (the default searches 7-bit weights only)
SMALL_SEARCH = TuningConfig(formats=(QuantizationFormat.QDQ,), activation_types=(ActivationType.UINT8,),
                            reduce_range=(False, True), channels_last=(True,), float_linear_outputs=(False,),
                            timing=QUICK)


def _run(path: Path, inputs: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": inputs})[0]


def _agreement_check(reference: np.ndarray, minimum: float):
    def check(probabilities: np.ndarray) -> AccuracyVerdict:
        agreement = float(np.mean(probabilities.argmax(1) == reference.argmax(1)))
        return AccuracyVerdict(agreement >= minimum, f"agreement {agreement:.3f}", (1.0 - agreement) * 100)

    return check


def test_tuning_reports_every_candidate_and_writes_the_fastest_passing_one(
    zoo: ModelZoo, signals: Splits, tmp_path: Path
) -> None:
    source = zoo.onnx_path("conv1d_zscore")
    destination = tmp_path / "tuned.onnx"
    checks = signals.test_x[:200]

    report = choose_quantization(source, destination, signals.calibration_x, checks,
                                 _agreement_check(_run(source, checks), 0.9), config=SMALL_SEARCH)

    assert len(report["candidates"]) == 4  # per-channel × reduce-range
    labels = {row["label"] for row in report["candidates"]}
    assert {"qdq u8s8 per-channel", "qdq u8s8 per-tensor reduce-range"} <= labels
    chosen = next(row for row in report["candidates"] if row["label"] == report["chosen"])
    assert chosen["accuracy_passed"] and report["passed_accuracy_check"]
    passing = [row for row in report["candidates"] if row["accuracy_passed"]]
    assert chosen["ratio_to_fp32"] <= min(row["ratio_to_fp32"] for row in passing) * 1.03 + 1e-12
    assert all(row["median_of_windows_us"] > 0 and row["ratio_to_fp32"] > 0 for row in report["candidates"])
    assert report["timing"]["rounds"] == 3 and report["fp32_median_of_windows_us"] > 0
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in onnx.load(destination).graph.node}
    assert np.mean(_run(destination, checks).argmax(1) == _run(source, checks).argmax(1)) >= 0.9


def test_when_nothing_passes_layers_go_back_to_float_and_the_most_accurate_is_kept(
    zoo: ModelZoo, signals: Splits, tmp_path: Path
) -> None:
    source = zoo.onnx_path("conv1d_zscore")
    checks = signals.test_x[:100]
    impossible = _agreement_check(_run(source, checks), 1.01)

    report = choose_quantization(source, tmp_path / "tuned.onnx", signals.calibration_x, checks, impossible,
                                 config=TuningConfig(formats=(QuantizationFormat.QDQ,),
                                                     activation_types=(ActivationType.UINT8,), per_channel=(True,),
                                                     reduce_range=(True,), channels_last=(True,),
                                                     float_linear_outputs=(False,), max_float_nodes=1,
                                                     timing=QUICK))

    assert not report["passed_accuracy_check"] and "no candidate passed" in report["rule"]
    floated = [row for row in report["candidates"] if row["settings"]["excluded_nodes"]]
    assert floated and all(len(row["settings"]["excluded_nodes"]) == 1 for row in floated)
    best = min(row["worst_drop_points"] for row in report["candidates"])
    chosen = next(row for row in report["candidates"] if row["label"] == report["chosen"])
    assert chosen["worst_drop_points"] == best


def test_excluded_nodes_stay_float_and_unknown_names_are_refused(
    zoo: ModelZoo, signals: Splits, tmp_path: Path
) -> None:
    source = zoo.onnx_path("conv1d_zscore")
    prepared = tmp_path / "prepared.onnx"
    prepare_for_static_quantization(source, prepared)
    layers = quantizable_node_names(prepared)
    assert layers
    destination = tmp_path / "partly-float.onnx"
    quantize_int8_static(source, destination, signals.calibration_x, QuantizationConfig(excluded_nodes=(layers[0],)),
                         prepared=prepared)
    node = next(node for node in onnx.load(destination).graph.node if node.name == layers[0])
    weights = {initializer.name: initializer for initializer in onnx.load(destination).graph.initializer}
    assert weights[node.input[1]].data_type == onnx.TensorProto.FLOAT  # its weight was not quantized

    with pytest.raises(QuantizationError, match="not in the prepared graph"):
        quantize_int8_static(source, tmp_path / "bad.onnx", signals.calibration_x,
                             QuantizationConfig(excluded_nodes=("no-such-node",)), prepared=prepared)
    assert not (tmp_path / "bad.onnx").exists()


def test_calibration_ranges_are_reused_from_the_cache(zoo: ModelZoo, signals: Splits, tmp_path: Path) -> None:
    source = zoo.onnx_path("conv1d_zscore")
    prepared, ranges = tmp_path / "prepared.onnx", tmp_path / "ranges.json"
    prepare_for_static_quantization(source, prepared)
    first, second = tmp_path / "first.onnx", tmp_path / "second.onnx"
    quantize_int8_static(source, first, signals.calibration_x, QuantizationConfig(), prepared=prepared,
                         ranges_cache=ranges)
    assert ranges.is_file()
    # Different calibration inputs, same cache: the cached ranges are used, so the models match.
    quantize_int8_static(source, second, signals.calibration_x[::-1] * 3.0, QuantizationConfig(), prepared=prepared,
                         ranges_cache=ranges)
    assert np.array_equal(_run(first, signals.test_x[:50]), _run(second, signals.test_x[:50]))


def test_empty_check_inputs_are_refused(zoo: ModelZoo, signals: Splits, tmp_path: Path) -> None:
    with pytest.raises(QuantizationError, match="check inputs"):
        choose_quantization(zoo.onnx_path("conv1d_zscore"), tmp_path / "x.onnx", signals.calibration_x,
                            signals.test_x[:0], _agreement_check(np.zeros((0, 3)), 0.9), config=SMALL_SEARCH)
    assert not (tmp_path / "x.onnx").exists()


def test_float_linear_outputs_leave_no_dequantize_before_the_softmax(
    zoo: ModelZoo, signals: Splits, tmp_path: Path
) -> None:
    source = zoo.onnx_path("conv1d_zscore")
    plain, float_out = tmp_path / "plain.onnx", tmp_path / "float-out.onnx"
    quantize_int8_static(source, plain, signals.calibration_x, QuantizationConfig())
    quantize_int8_static(source, float_out, signals.calibration_x, QuantizationConfig(float_linear_outputs=True))

    def feeds_softmax(path: Path) -> str:
        graph = onnx.load(path).graph
        softmax = next(node for node in graph.node if node.op_type == "Softmax")
        return next(node.op_type for node in graph.node if softmax.input[0] in node.output)

    assert feeds_softmax(plain) == "DequantizeLinear"
    assert feeds_softmax(float_out) in ("Gemm", "MatMul", "Add")
    agreement = np.mean(_run(float_out, signals.test_x).argmax(1) == _run(source, signals.test_x).argmax(1))
    assert agreement >= 0.9


def test_the_default_search_skips_qoperator_with_int8_activations() -> None:
    from exporters.quantization.tuning import _Search

    seen = []

    class Recorder(_Search):
        def __init__(self) -> None:
            self.progress, self.base = None, QuantizationConfig()

        def evaluate(self, settings):
            seen.append(settings)
            return None

    Recorder().grid(TuningConfig())
    pairs = {(settings.quant_format, settings.activation_type) for settings in seen}
    assert (QuantizationFormat.QOPERATOR, ActivationType.INT8) not in pairs
    assert len(seen) == 2 * 3 * 2 * 2  # layouts × (format, activation) pairs × per-channel × outputs
    assert all(settings.reduce_range for settings in seen)  # 7-bit weights: the same answers on every x86 CPU


def test_a_setting_that_cannot_quantize_the_model_is_reported_and_the_search_goes_on(
    zoo: ModelZoo, signals: Splits, tmp_path: Path, monkeypatch
) -> None:
    """A refused setting (ONNX Runtime's QOperator quantizer refuses a GRU's Loop) is one failed candidate, not the
    end of the search; only a search where nothing quantizes is an error."""
    from exporters.quantization import tuning

    real = tuning.quantize_int8_static

    def refuse_per_tensor(source, destination, calibration, settings, **options):
        if not settings.per_channel:
            raise QuantizationError("per-tensor refused (test)", expected="-", fix="-")
        return real(source, destination, calibration, settings, **options)

    monkeypatch.setattr(tuning, "quantize_int8_static", refuse_per_tensor)
    source, checks = zoo.onnx_path("conv1d_zscore"), signals.test_x[:200]
    report = choose_quantization(source, tmp_path / "tuned.onnx", signals.calibration_x, checks,
                                 _agreement_check(_run(source, checks), 0.9), config=SMALL_SEARCH)
    assert len(report["candidates"]) == 2 and all("per-channel" in row["label"] for row in report["candidates"])
    assert len(report["failed_candidates"]) == 2
    assert all("per-tensor refused" in row["reason"] for row in report["failed_candidates"])

    monkeypatch.setattr(tuning, "quantize_int8_static", lambda *arguments, **options: (_ for _ in ()).throw(
        QuantizationError("nothing quantizes (test)", expected="-", fix="-")))
    with pytest.raises(QuantizationError, match="no int8 candidate"):
        choose_quantization(source, tmp_path / "none.onnx", signals.calibration_x, checks,
                            _agreement_check(_run(source, checks), 0.9), config=SMALL_SEARCH)
