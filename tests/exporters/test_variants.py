"""make_variant: one entry point, a registry behind it, unknown names rejected with the valid ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx
import pytest

from exporters.errors import QuantizationError
from exporters.quantization import QuantizationConfig, TuningConfig
from exporters.variants import (
    _MAKERS,
    REFERENCE_VARIANT,
    UnknownVariantError,
    VariantName,
    VariantRequest,
    make_variant,
)
from tests.exporters.toy_models import ModelZoo, Splits


def test_every_variant_name_has_a_maker() -> None:
    assert set(_MAKERS) == set(VariantName)
    assert REFERENCE_VARIANT is VariantName.FP32


def test_an_unknown_variant_lists_the_valid_ones(tabular: Splits, tmp_path: Path) -> None:
    with pytest.raises(UnknownVariantError) as raised:
        make_variant("int4", tmp_path / "in.onnx", tmp_path / "out.onnx", VariantRequest(tabular.calibration_x))

    assert isinstance(raised.value, QuantizationError) and isinstance(raised.value, ValueError)
    assert "unknown variant 'int4'" in str(raised.value)
    assert "fp32, fp16, int8-dynamic, int8-static" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_fp32_without_the_layout_choice_is_the_source_as_it_is(zoo: ModelZoo, tabular: Splits,
                                                                tmp_path: Path) -> None:
    source, destination = zoo.onnx_path("mlp"), tmp_path / "fp32.onnx"
    request = VariantRequest(tabular.calibration_x, choose_conv_layout=False)

    assert make_variant(VariantName.FP32, source, destination, request) is None
    assert destination.read_bytes() == source.read_bytes()


def test_names_are_accepted_as_strings_and_dispatched(zoo: ModelZoo, tabular: Splits, tmp_path: Path) -> None:
    destination = tmp_path / "fp16.onnx"

    assert make_variant(" FP16 ", zoo.onnx_path("mlp"), destination, VariantRequest(tabular.calibration_x)) is None
    initializers = onnx.load(str(destination)).graph.initializer
    assert any(tensor.data_type == onnx.TensorProto.FLOAT16 for tensor in initializers)


def test_int8_static_reports_calibration_progress(zoo: ModelZoo, tabular: Splits, tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    request = VariantRequest(tabular.calibration_x, QuantizationConfig(calibration_samples=64),
                             progress=lambda task, done, total: calls.append((task, done, total)))

    assert make_variant(VariantName.INT8_STATIC, zoo.onnx_path("mlp"), tmp_path / "int8.onnx", request) is None
    assert calls == [("calibration", 32, 64), ("calibration", 64, 64)]


def test_int8_tuning_without_a_check_is_refused(zoo: ModelZoo, tabular: Splits, tmp_path: Path) -> None:
    request = dataclasses.replace(VariantRequest(tabular.calibration_x), tuning=TuningConfig())

    with pytest.raises(QuantizationError, match="without a tuning check") as raised:
        make_variant(VariantName.INT8_STATIC, zoo.onnx_path("mlp"), tmp_path / "int8.onnx", request)

    assert raised.value.fix
    assert list(tmp_path.iterdir()) == []
