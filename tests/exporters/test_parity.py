"""Parity: exact comparison numbers, every failure collected, fixed batch axes caught."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest

from exporters.errors import ParityError
from exporters.keras_to_onnx import ExportConfig, export_keras_to_onnx
from exporters.parity import check_keras_parity, compare_outputs
from tests.exporters.toy_models import ModelZoo, Splits, build_conv


def test_compare_outputs_reports_max_difference_and_argmax_agreement() -> None:
    reference = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    candidate = np.array([[0.15, 0.7, 0.2], [0.3, 0.6, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])

    max_abs_diff, agreement = compare_outputs(reference, candidate, tolerance=1e-4)

    assert max_abs_diff == pytest.approx(0.3)
    assert agreement == pytest.approx(0.75)


def test_compare_outputs_counts_ties_within_tolerance_as_agreement() -> None:
    reference = np.array([[0.5, 0.5 + 1e-6, 0.0]])
    candidate = np.array([[0.5 + 1e-6, 0.5, 0.0]])

    assert compare_outputs(reference, candidate, tolerance=1e-4)[1] == 1.0
    assert compare_outputs(reference, candidate, tolerance=0.0)[1] == 0.0


def test_compare_outputs_uses_a_half_threshold_for_single_column_outputs() -> None:
    reference = np.array([[0.49], [0.9], [0.1], [0.7]])
    candidate = np.array([[0.51], [0.9], [0.1], [0.7]])

    assert compare_outputs(reference, candidate, tolerance=1e-4) == (pytest.approx(0.02), 0.75)


def test_compare_outputs_decides_per_task_kind() -> None:
    reference = np.array([[0.2, 0.7], [0.6, 0.9], [0.49995, 0.1], [0.3, 0.2]])
    candidate = np.array([[0.2, 0.1], [0.6, 0.9], [0.5 + 1e-6, 0.1], [0.3, 0.2]])

    assert compare_outputs(reference, candidate, 1e-4, "multiclass")[1] == 0.75  # argmax: sample 0 flips
    # thresholds: sample 0 flips a column; sample 2 sits on 0.5 within the tolerance (a tie)
    assert compare_outputs(reference, candidate, 1e-4, "multilabel")[1] == 0.75
    assert compare_outputs(reference, candidate, 0.0, "multilabel")[1] == 0.5
    assert compare_outputs(reference[:, :1], candidate[:, :1], 1e-4, "binary")[1] == 1.0
    assert compare_outputs(reference, candidate, 1e-4, "regression") == (pytest.approx(0.6), None)
    assert compare_outputs(reference, candidate, 1e-4, "anomaly")[1] is None
    assert compare_outputs(reference, candidate, 1e-4) == compare_outputs(reference, candidate, 1e-4, None)


def test_compare_outputs_rejects_different_shapes() -> None:
    with pytest.raises(ParityError, match="output shapes differ"):
        compare_outputs(np.zeros((4, 3)), np.zeros((4, 2)), tolerance=1e-4)


@pytest.fixture(scope="module")
def wrong_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ONNX of a *different* (untrained, other seed) model with the same input/output shapes."""
    path = tmp_path_factory.mktemp("wrong") / "other_conv.onnx"
    export_keras_to_onnx(build_conv(seed=1234), path, ExportConfig())
    return path


def test_onnx_of_a_different_model_fails_with_every_failure_listed(
    zoo: ModelZoo, signals: Splits, wrong_onnx: Path
) -> None:
    with pytest.raises(ParityError) as raised:
        check_keras_parity(zoo.model("conv1d_zscore"), wrong_onnx, signals.test_x, batch_sizes=(1, 32))

    message = str(raised.value)
    for expected_fragment in (
        "batch size 1: max |Δ|",
        "batch size 32: max |Δ|",
        "batch size 1: argmax agreement",
        "batch size 32: argmax agreement",
    ):
        assert expected_fragment in message
    report = raised.value.report
    assert not report.passed
    assert len(report.failures) == 4
    assert report.max_abs_diff > 0.1
    assert report.argmax_agreement < 0.9


def test_report_without_raising_is_json_serializable(zoo: ModelZoo, signals: Splits, wrong_onnx: Path) -> None:
    report = check_keras_parity(
        zoo.model("conv1d_zscore"), wrong_onnx, signals.test_x[:40], batch_sizes=(8,), raise_on_failure=False
    )

    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["passed"] is False
    assert as_dict["batch_sizes"] == [8]
    assert as_dict["samples"] == 40
    assert len(as_dict["failures"]) == 2


def test_every_check_logs_one_line(zoo: ModelZoo, tabular: Splits, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="exporters.parity"):
        check_keras_parity(zoo.model("mlp"), zoo.onnx_path("mlp"), tabular.test_x, batch_sizes=(1, 32))

    passed_lines = [record.message for record in caplog.records if record.message.startswith("✓")]
    assert len(passed_lines) == 8  # ran, finite, max |Δ|, argmax × 2 batch sizes
    assert not [record for record in caplog.records if record.message.startswith("✗")]


def test_values_only_tasks_log_no_decision_line(zoo: ModelZoo, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="exporters.parity"):
        report = check_keras_parity(zoo.model("autoencoder"), zoo.onnx_path("autoencoder"), zoo.inputs("autoencoder"),
                                    batch_sizes=(1, 32), task="regression")

    assert report.passed and report.argmax_agreement is None
    assert len([record for record in caplog.records if record.message.startswith("✓")]) == 6
    assert not any("agreement" in record.message for record in caplog.records)
    assert json.loads(json.dumps(report.to_dict()))["argmax_agreement"] is None


def test_fixed_batch_axis_fails_other_batch_sizes(zoo: ModelZoo, tabular: Splits, tmp_path: Path) -> None:
    model = onnx.load(str(zoo.onnx_path("mlp")))
    for value in (model.graph.input[0], model.graph.output[0]):
        batch = value.type.tensor_type.shape.dim[0]
        batch.Clear()
        batch.dim_value = 1
    fixed = tmp_path / "fixed_batch.onnx"
    onnx.save(model, str(fixed))

    report = check_keras_parity(zoo.model("mlp"), fixed, tabular.test_x, batch_sizes=(1, 32), raise_on_failure=False)

    assert len(report.failures) == 1
    assert "fixed batch axis of 1" in report.failures[0]
    assert report.failures[0].startswith("batch size 32")


def test_rejects_non_finite_inputs(zoo: ModelZoo, tabular: Splits) -> None:
    inputs = tabular.test_x.copy()
    inputs[3, 2] = np.nan
    with pytest.raises(ParityError, match="NaN or inf"):
        check_keras_parity(zoo.model("mlp"), zoo.onnx_path("mlp"), inputs)
