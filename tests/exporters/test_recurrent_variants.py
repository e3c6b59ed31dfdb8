"""Recurrent models through export and every variant: the LSTM stays one fused LSTM op, the GRU an
ONNX Loop (Keras 3 → tf2onnx), and each variant keeps to fp32 within its precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from exporters._graph import iterate_nodes
from exporters._onnxruntime import run_in_batches
from exporters.errors import ParityError
from exporters.parity import check_keras_parity, compare_outputs
from exporters.variants import VariantName, VariantRequest, make_variant, prepare_variant_source
from tests.exporters.toy_models import SEQUENCE_SHAPE, ModelZoo, random_inputs

RECURRENT_OP = {"gru": "Loop", "lstm": "LSTM"}
# Largest |Δ| against fp32 per variant; ties within it count as agreeing (untrained models sit near ties).
VARIANT_TOLERANCE = {VariantName.FP32: 1e-4, VariantName.FP16: 2e-3, VariantName.INT8_DYNAMIC: 2e-2,
                     VariantName.INT8_STATIC: 2e-2}


def _op_types(path: Path) -> set[str]:
    return {node.op_type for node in iterate_nodes(onnx.load(str(path)).graph)}


@pytest.fixture(scope="module", params=["gru", "lstm"])
def recurrent(request: pytest.FixtureRequest, zoo: ModelZoo, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[str, Path, np.ndarray]:
    family = request.param
    source = tmp_path_factory.mktemp(f"{family}_source") / "fp32-source.onnx"
    prepare_variant_source(zoo.onnx_path(family), source, random_inputs(SEQUENCE_SHAPE, 128, seed=21),
                           task="multiclass")
    return family, source, random_inputs(SEQUENCE_SHAPE, 150, seed=22)


def test_export_matches_keras_and_keeps_the_recurrent_op(recurrent: tuple[str, Path, np.ndarray],
                                                         zoo: ModelZoo) -> None:
    family, source, test = recurrent

    report = check_keras_parity(zoo.model(family), zoo.onnx_path(family), test, batch_sizes=(1, 32),
                                task="multiclass")

    assert report.passed, report.failures
    assert RECURRENT_OP[family] in _op_types(zoo.onnx_path(family))
    assert RECURRENT_OP[family] in _op_types(source)  # the graph passes keep it


@pytest.mark.parametrize("variant", list(VariantName))
def test_every_variant_runs_and_stays_close_to_fp32(recurrent: tuple[str, Path, np.ndarray], tmp_path: Path,
                                                    variant: VariantName) -> None:
    family, source, test = recurrent
    destination = tmp_path / f"{variant.value}.onnx"

    make_variant(variant, source, destination, VariantRequest(random_inputs(SEQUENCE_SHAPE, 128, seed=21),
                                                              task="multiclass"))

    tolerance = VARIANT_TOLERANCE[variant]
    difference, agreement = compare_outputs(run_in_batches(source, test, 32, ParityError),
                                            run_in_batches(destination, test, 1, ParityError), tolerance,
                                            "multiclass")
    assert difference <= tolerance and agreement == 1.0, (difference, agreement)
    operations = _op_types(destination)
    if family == "gru":
        assert "Loop" in operations  # the GRU's Loop survives every variant
    else:
        assert operations & {"LSTM", "DynamicQuantizeLSTM"}
