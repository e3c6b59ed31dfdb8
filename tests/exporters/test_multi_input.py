"""Multi-input (and multi-output) models: named inputs, parity on dict inputs, every input fed to
calibration, tuning, the graph passes' parity and the variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from exporters._onnxruntime import run_in_batches
from exporters.errors import ParityError, QuantizationError
from exporters.inputs import select
from exporters.keras_to_onnx import ExportConfig, export_keras_to_onnx
from exporters.parity import check_keras_parity, compare_outputs
from exporters.quantization import (
    AccuracyVerdict,
    ActivationType,
    QuantizationConfig,
    QuantizationFormat,
    TuningConfig,
    choose_quantization,
)
from exporters.quantization.calibration import CalibrationReader, calibration_subset
from exporters.timing import InterleavedTiming, onnx_runner
from exporters.variants import VariantName, VariantRequest, make_variant, prepare_variant_source
from tests.exporters.toy_models import CLASSES, RR_FEATURES, SIGNAL_LENGTH, build_two_input, make_two_input

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def data() -> dict[str, dict[str, np.ndarray]]:
    inputs, labels = make_two_input()
    parts = {"train": slice(0, 400), "calibration": slice(400, 528), "test": slice(528, 700)}
    split = {name: select(inputs, rows) for name, rows in parts.items()}
    split["train_labels"] = labels[parts["train"]]
    return split


@pytest.fixture(scope="module")
def model(data: dict) -> object:
    return build_two_input(data["train"], data["train_labels"])


@pytest.fixture(scope="module")
def exported(model: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("two_input") / "two_input.onnx"
    export_keras_to_onnx(model, path, ExportConfig())
    return path


@pytest.fixture(scope="module")
def variant_source(exported: Path, data: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("two_input_source") / "fp32-source.onnx"
    return path, prepare_variant_source(exported, path, data["calibration"])


def test_every_keras_input_becomes_a_named_graph_input_with_a_dynamic_batch_axis(exported: Path) -> None:
    graph = onnx.load(str(exported)).graph
    shapes = {value.name: [axis.dim_param or axis.dim_value for axis in value.type.tensor_type.shape.dim]
              for value in graph.input}

    assert shapes == {"window": ["batch", SIGNAL_LENGTH, 1], "rr": ["batch", RR_FEATURES]}
    assert [value.name for value in graph.output] == ["probabilities"]
    assert graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_parity_on_dict_inputs_at_batch_1_and_32(model: object, exported: Path, data: dict) -> None:
    test = data["test"]
    assert len(test["rr"]) % 32 != 0  # a partial last batch proves the dynamic axis of both inputs

    report = check_keras_parity(model, exported, test, batch_sizes=(1, 32))

    assert report.passed, report.failures
    assert report.samples == len(test["rr"])
    assert report.outputs == ("probabilities",)
    assert report.max_abs_diff <= TOLERANCE and report.argmax_agreement == 1.0


def test_parity_refuses_inputs_that_do_not_name_every_model_input(model: object, exported: Path,
                                                                   data: dict) -> None:
    with pytest.raises(ParityError, match="missing \\['rr'\\]"):
        check_keras_parity(model, exported, {"window": data["test"]["window"]})
    with pytest.raises(ParityError, match="one input array was given to a model with 2 inputs"):
        check_keras_parity(model, exported, data["test"]["window"])
    misaligned = {"window": data["test"]["window"], "rr": data["test"]["rr"][:-1]}
    with pytest.raises(ParityError, match="different numbers of samples"):
        check_keras_parity(model, exported, misaligned)


def test_calibration_keeps_the_rows_of_every_input_aligned() -> None:
    rows = np.arange(100, dtype=np.float32)
    inputs = {"window": np.repeat(rows[:, None, None], SIGNAL_LENGTH, axis=1), "rr": np.repeat(rows[:, None], 4, 1)}

    subset = calibration_subset(inputs, QuantizationConfig(calibration_samples=64))
    batches = list(iter(CalibrationReader(["window", "rr"], subset, None).get_next, None))

    assert set(subset) == {"window", "rr"} and len(subset["rr"]) == 64
    np.testing.assert_array_equal(subset["window"][:, 0, 0], subset["rr"][:, 0])
    assert [sorted(batch) for batch in batches] == [["rr", "window"]] * 2
    assert all(np.array_equal(batch["window"][:, 0, 0], batch["rr"][:, 0]) for batch in batches)
    single = list(iter(CalibrationReader("input", rows[:40, None], None).get_next, None))  # the one-array form
    assert [len(batch["input"]) for batch in single] == [32, 8]


def test_graph_passes_check_parity_on_every_input(variant_source: tuple[Path, dict], data: dict) -> None:
    path, made = variant_source

    assert made["graph_passes"]["max_abs_diff"] <= TOLERANCE
    assert made["graph_passes"]["samples"] == len(data["calibration"]["rr"])
    assert {value.name for value in onnx.load(str(path)).graph.input} == {"window", "rr"}


@pytest.mark.parametrize(("variant", "tolerance", "agreement"),
                         [(VariantName.FP32, TOLERANCE, 1.0), (VariantName.FP16, 1e-2, 0.98),
                          (VariantName.INT8_DYNAMIC, 0.15, 0.9), (VariantName.INT8_STATIC, 0.15, 0.9)])
def test_variants_run_on_every_input_and_agree_with_fp32(variant_source: tuple[Path, dict], data: dict,
                                                         tmp_path: Path, variant: VariantName, tolerance: float,
                                                         agreement: float) -> None:
    source, _ = variant_source
    destination = tmp_path / f"{variant.value}.onnx"
    request = VariantRequest(data["calibration"], QuantizationConfig(calibration_samples=128),
                             choose_conv_layout=False)

    make_variant(variant, source, destination, request)

    reference = run_in_batches(source, data["test"], 32, ParityError)
    outputs = run_in_batches(destination, data["test"], 32, ParityError)
    difference, agreed = compare_outputs(reference, outputs, 0.0, "multiclass")
    assert outputs.shape == (len(data["test"]["rr"]), CLASSES)
    assert difference <= tolerance and agreed >= agreement, (difference, agreed)


def test_int8_static_is_calibrated_on_every_input(variant_source: tuple[Path, dict], data: dict,
                                                  tmp_path: Path) -> None:
    source, _ = variant_source
    destination = tmp_path / "int8.onnx"
    make_variant(VariantName.INT8_STATIC, source, destination,
                 VariantRequest(data["calibration"], QuantizationConfig(calibration_samples=128)))

    graph = onnx.load(str(destination)).graph
    dequantized = {output for node in graph.node if node.op_type == "DequantizeLinear" for output in node.output}
    weighted = [node for node in graph.node if node.op_type in ("Conv", "Gemm", "MatMul")]
    # The window's convolution, the RR Dense and the head all read calibrated int8 activations:
    # a range per branch exists only if calibration fed both inputs.
    assert sorted(node.op_type for node in weighted) == ["Conv", "Gemm", "Gemm"]
    assert all(node.input[0] in dequantized for node in weighted)


def test_calibration_refuses_inputs_of_the_wrong_shape(variant_source: tuple[Path, dict], data: dict,
                                                       tmp_path: Path) -> None:
    source, _ = variant_source
    wrong = {"window": data["calibration"]["window"][:, :32], "rr": data["calibration"]["rr"]}

    with pytest.raises(QuantizationError, match="'window' has sample shape \\(32, 1\\)"):
        make_variant(VariantName.INT8_STATIC, source, tmp_path / "int8.onnx", VariantRequest(wrong))


def test_int8_tuning_checks_candidates_on_every_input(variant_source: tuple[Path, dict], data: dict,
                                                      tmp_path: Path) -> None:
    source, _ = variant_source
    reference = run_in_batches(source, data["test"], 64, ParityError)

    def agreement(probabilities: np.ndarray) -> AccuracyVerdict:
        agreed = float(np.mean(probabilities.argmax(1) == reference.argmax(1)))
        return AccuracyVerdict(agreed >= 0.9, f"agreement {agreed:.3f}", (1.0 - agreed) * 100)

    search = TuningConfig(formats=(QuantizationFormat.QDQ,), activation_types=(ActivationType.UINT8,),
                          per_channel=(True,), reduce_range=(True,), channels_last=(True,),
                          float_linear_outputs=(False,), timing=InterleavedTiming(3, 3, 1))
    report = choose_quantization(source, tmp_path / "tuned.onnx", data["calibration"], data["test"], agreement,
                                 config=search)

    assert report["checked_samples"] == len(data["test"]["rr"])
    assert report["passed_accuracy_check"], report["candidates"]


def test_timing_binds_every_input(variant_source: tuple[Path, dict], data: dict) -> None:
    run = onnx_runner(variant_source[0], select(data["test"], slice(0, 1)))

    assert run() is None  # ONNX Runtime raises on an unbound input; io binding returns None


def test_multi_output_model_exports_keras_output_names_and_parity_compares_each(tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(3)
    window, rr = keras.Input((SIGNAL_LENGTH, 1), name="window"), keras.Input((RR_FEATURES,), name="rr")
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(window), rr])
    rhythm = keras.layers.Dense(CLASSES, activation="softmax", name="rhythm")(joined)
    ectopic = keras.layers.Dense(1, activation="sigmoid", name="ectopic")(joined)
    # a list of inputs in another order than model.inputs: export and parity fill the model's own structure
    model = keras.Model([rr, window], [rhythm, ectopic], name="two_heads")
    destination = tmp_path / "two_heads.onnx"
    inputs = {"window": np.random.default_rng(0).normal(size=(40, SIGNAL_LENGTH, 1)).astype(np.float32) * 0.05,
              "rr": np.random.default_rng(1).normal(size=(40, RR_FEATURES)).astype(np.float32) * 0.05}

    export_keras_to_onnx(model, destination, ExportConfig())
    report = check_keras_parity(model, destination, inputs, batch_sizes=(1, 32))

    assert [value.name for value in onnx.load(str(destination)).graph.output] == ["rhythm", "ectopic"]
    assert report.passed, report.failures
    assert report.outputs == ("rhythm", "ectopic")
