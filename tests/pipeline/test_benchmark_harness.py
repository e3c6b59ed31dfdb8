"""The benchmark harness on tiny ONNX models: rows, head-to-head, JSON schema, provider skipping, bad input."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.benchmark.errors import BatchSizeError, ModelNotFoundError, NoVariantsError, ProviderNotInstalledError
from pipeline.benchmark.harness import BenchmarkConfig, run_benchmark
from pipeline.benchmark.head_to_head import HEAD_TO_HEAD_ENGINE, QUICK_HEAD_TO_HEAD, run_head_to_head
from pipeline.benchmark.results_io import write_results
from pipeline.benchmark.scenario_inputs import (
    RANDOM_INPUTS,
    ScenarioInputs,
    describe_timing_inputs,
    from_build,
    from_model_path,
)
from pipeline.benchmark.schema import BENCH_SCHEMA, schema_errors, validate_results
from pipeline.benchmark.statistics import QUICK_STABILITY
from pipeline.cli.bench import bench_command
from runtime.errors import EdgemedError

FEATURES, CLASSES = 6, 3
FIXTURE_INPUTS = "synthetic: the test's seeded normal rows"


def tiny_classifier(path: Path, batch: int | str = "batch") -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).normal(size=(FEATURES, CLASSES)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "weights"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)],
        "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, CLASSES])],
        [numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> ScenarioInputs:
    folder = tmp_path_factory.mktemp("bench")
    variants = {name: tiny_classifier(folder / f"{name}.onnx") for name in ("fp32", "int8-static")}
    return ScenarioInputs(
        name="tiny", variants=variants,
        timing_inputs=np.random.default_rng(1).normal(size=(8, FEATURES)).astype(np.float32),
        inputs=FIXTURE_INPUTS, inputs_synthetic=True,
        gate_passed={"fp32": True, "int8-static": True},
    )


@pytest.fixture(scope="module")
def document(scenario: ScenarioInputs) -> dict:
    config = BenchmarkConfig(stability=QUICK_STABILITY, batch_sizes=(1, 4), threads=(1,), peers=False, quick=True)
    return run_benchmark([scenario], config)


def test_every_variant_gets_a_measured_row(document: dict) -> None:
    rows = [row for row in document["scenarios"][0]["rows"] if row["status"] == "ok"]
    assert {row["variant"] for row in rows} == {"fp32", "int8-static"}
    for row in rows:
        latency = row["latency"]
        assert latency["p50_us"] <= latency["p90_us"] <= latency["p95_us"] <= latency["p99_us"] <= latency["max_us"]
        assert len(latency["window_medians_us"]) == QUICK_STABILITY.windows
        assert row["session_creation_ms"] > 0 and row["first_inference_us"] > 0
        assert set(row["throughput"]) == {"1", "4"}
        assert row["peak_rss_bytes"] > 10 * 1024 * 1024 and row["model_size_bytes"] > 0
        assert row["runtime"]["intra_op_threads"] == 1
    assert document["scenarios"][0]["would_ship"] in {"fp32", "int8-static"}


def test_head_to_head_times_every_onnx_variant_in_one_worker(document: dict) -> None:
    (entry,) = document["scenarios"][0]["head_to_head"]
    assert entry["threads"] == 1 and QUICK_HEAD_TO_HEAD.min_rounds <= entry["rounds"] <= QUICK_HEAD_TO_HEAD.max_rounds
    assert set(entry["models"]) == {"onnxruntime fp32", "onnxruntime int8-static"}  # peers off: no LiteRT
    for model in entry["models"].values():
        assert len(model["window_medians_us"]) == entry["rounds"]
        assert model["median_of_windows_us"] > 0 and all(value > 0 for value in model["window_medians_us"])
    assert "peak_rss_bytes" not in entry and entry["runtime"]["onnxruntime"]
    sources = {check["target"]: check["source"] for check in document["scenarios"][0]["targets"]}
    shipped = document["scenarios"][0]["would_ship"]
    if shipped == "int8-static":
        assert sources["shipped int8 (int8-static) batch-1 p50 µs < ONNX fp32"] == "head-to-head"
    else:
        assert not any("shipped int8" in target for target in sources)
    assert document["settings"]["head_to_head"]["seconds"] == QUICK_HEAD_TO_HEAD.seconds


def test_head_to_head_times_batch_256_after_batch_1(document: dict) -> None:
    (entry,) = document["scenarios"][0]["head_to_head"]
    part = entry["batch_256"]  # batch sizes (1, 4): the head-to-head still times the target's batch, 256
    assert QUICK_HEAD_TO_HEAD.batch_min_rounds <= part["rounds"] <= QUICK_HEAD_TO_HEAD.batch_max_rounds
    assert part["runs_per_round"] >= QUICK_HEAD_TO_HEAD.batch_min_runs_per_round
    assert set(part["models"]) == set(entry["models"])
    for model in part["models"].values():
        assert len(model["window_medians_us"]) == part["rounds"] and model["median_of_windows_us"] > 0
        assert model["samples_per_second"] == pytest.approx(256 / (model["median_of_windows_us"] / 1e6))
    throughput = next(check for check in document["scenarios"][0]["targets"] if "batch-256" in check["target"])
    assert throughput["source"] == "per-process" and throughput["ratio"] is None  # no LiteRT peer to pair with


def test_models_that_cannot_take_batch_256_are_left_out_of_that_part(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.npy"
    np.save(inputs, np.random.default_rng(2).normal(size=(8, FEATURES)).astype(np.float32))
    models = {"dynamic": tiny_classifier(tmp_path / "dynamic.onnx"),
              "other": tiny_classifier(tmp_path / "other.onnx"),
              "fixed": tiny_classifier(tmp_path / "fixed.onnx", batch=1)}

    def spec(variants: tuple[str, ...]) -> dict:
        candidates = {f"onnxruntime {name}": {"engine": "onnxruntime", "model": str(models[name])} for name in variants}
        return {"engine": HEAD_TO_HEAD_ENGINE, "threads": 1, "candidates": candidates, "session": {},
                "head_to_head": asdict(QUICK_HEAD_TO_HEAD)}

    samples = np.load(inputs)
    result = run_head_to_head(spec(("dynamic", "other", "fixed")), samples)
    assert set(result["models"]) == {"onnxruntime dynamic", "onnxruntime other", "onnxruntime fixed"}
    assert set(result["batch_256"]["models"]) == {"onnxruntime dynamic", "onnxruntime other"}
    alone = run_head_to_head(spec(("dynamic", "fixed")), samples)
    assert "batch_256" not in alone and len(alone["models"]) == 2  # one model at batch 256: nothing to pair


def test_progress_counts_the_head_to_head(scenario: ScenarioInputs) -> None:
    reports: list[tuple[int, int]] = []
    config = BenchmarkConfig(stability=QUICK_STABILITY, batch_sizes=(1,), threads=(1,), peers=False, quick=True)
    run_benchmark([scenario], config, lambda task, done, total: reports.append((done, total)))
    assert reports[-1] == (3, 3)  # two variants, one head-to-head


def test_missing_providers_are_reported_not_failed(document: dict) -> None:
    import onnxruntime

    installed = onnxruntime.get_available_providers()
    rows = document["scenarios"][0]["rows"]
    by_provider: dict[str, list[dict]] = {}
    for row in rows:
        by_provider.setdefault(row["provider"], []).append(row)
    assert any(row["status"] == "ok" for row in by_provider["CPUExecutionProvider"])
    for provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        assert by_provider.get(provider), provider  # every provider has its rows, installed or not
        for row in by_provider[provider]:
            if provider not in installed:
                assert row["status"] == "not available" and "not available" in row["reason"]
            else:  # installed: measured, or reported with the reason it could not be (no GPU on this machine)
                assert row["status"] == "ok" or row["reason"]


def test_document_matches_schema_and_fingerprint(document: dict) -> None:
    validate_results(document)
    machine = document["machine"]
    assert machine["usable_cores"] >= 1 and isinstance(machine["isa_flags"], list)
    assert machine["onnxruntime"]["version"]
    broken = json.loads(json.dumps(document))
    del broken["scenarios"][0]["rows"][0]["latency"]["p99_us"]
    assert any("p99_us" in error for error in schema_errors(broken, BENCH_SCHEMA))
    assert document["scenarios"][0]["inputs"] == FIXTURE_INPUTS and document["scenarios"][0]["inputs_synthetic"]
    unlabelled = json.loads(json.dumps(document))
    del unlabelled["scenarios"][0]["inputs"]
    with pytest.raises(EdgemedError, match="missing 'inputs'"):
        validate_results(unlabelled)


def test_schema_accepts_documents_without_head_to_head_and_rejects_broken_entries(document: dict) -> None:
    older = json.loads(json.dumps(document))
    del older["scenarios"][0]["head_to_head"]
    for check in older["scenarios"][0]["targets"]:
        del check["source"]
    validate_results(older)
    breakages = {
        "rounds": lambda entry: entry.pop("rounds"),
        "window medians": lambda entry: entry["models"]["onnxruntime fp32"]["window_medians_us"].pop(),
        "positive": lambda entry: entry["models"]["onnxruntime fp32"]["window_medians_us"].__setitem__(0, -1.0),
        "median_of_windows_us": lambda entry: entry["models"]["onnxruntime fp32"].__setitem__(
            "median_of_windows_us", "fast"),
        "at least 2": lambda entry: entry["models"].pop("onnxruntime fp32"),
        "batch_256: missing 'runs_per_round'": lambda entry: entry["batch_256"].pop("runs_per_round"),
        "samples_per_second": lambda entry: entry["batch_256"]["models"]["onnxruntime fp32"].pop("samples_per_second"),
        r"batch_256.models.onnxruntime fp32: \d+ window medians": lambda entry: entry["batch_256"]["models"][
            "onnxruntime fp32"]["window_medians_us"].pop(),
    }
    for expected, breakage in breakages.items():
        broken = json.loads(json.dumps(document))
        breakage(broken["scenarios"][0]["head_to_head"][0])
        with pytest.raises(EdgemedError, match=expected):
            validate_results(broken)
    bad_source = json.loads(json.dumps(document))
    bad_source["scenarios"][0]["targets"][0]["source"] = "guess"
    with pytest.raises(EdgemedError, match="source"):
        validate_results(bad_source)


def test_results_are_written_completely_or_not_at_all(document: dict, tmp_path: Path) -> None:
    written = write_results(document, tmp_path / "results")
    names = {path.name for path in written}
    assert {"bench.json", "bench.md", "latency_tiny.png", "pareto_tiny.png"} <= names
    assert json.loads((tmp_path / "results" / "bench.json").read_text())["schema_version"] == 3
    markdown = (tmp_path / "results" / "bench.md").read_text()
    assert "| onnxruntime fp32" in markdown
    assert f"## tiny\n\nTiming inputs (every latency, throughput and head-to-head figure below): {FIXTURE_INPUTS}." \
        in markdown
    head_to_head = markdown.split("### Head-to-head (interleaved, batch 1)")[1].split("### Targets")[0]
    assert "rotates from round to round" in head_to_head and "| ÷ ONNX fp32 |" in head_to_head
    assert "| onnxruntime int8-static" in head_to_head and "| 1.00 |" in head_to_head  # fp32 against itself
    batch = markdown.split("### Head-to-head (interleaved, batch 256)")[1].split("### Targets")[0]
    assert "| samples/s |" in batch and "| onnxruntime int8-static" in batch
    broken = {**document, "scenarios": [{"name": "x"}]}
    with pytest.raises(EdgemedError):
        write_results(broken, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_bad_input_raises_typed_errors(tmp_path: Path, scenario: ScenarioInputs) -> None:
    with pytest.raises(ModelNotFoundError, match=r"Expected: .*Fix:"):
        from_model_path(tmp_path / "nowhere")
    with pytest.raises(NoVariantsError, match="Fix:"):
        from_build("ecg-arrhythmia", {}, tmp_path)
    with pytest.raises(ProviderNotInstalledError, match="installed"):
        run_benchmark([scenario], BenchmarkConfig(providers=("cpu", "no-such-provider"), peers=False))
    fixed = ScenarioInputs("fixed", {"fp32": tiny_classifier(tmp_path / "fixed.onnx", batch=1)},
                           np.zeros((4, FEATURES), np.float32))
    with pytest.raises(BatchSizeError, match="fixed at 1"):
        run_benchmark([fixed], BenchmarkConfig(stability=QUICK_STABILITY, batch_sizes=(1, 32), peers=False))


def test_cli_exit_codes_and_no_partial_results(tmp_path: Path) -> None:
    runner = CliRunner()
    output = tmp_path / "results"
    missing = runner.invoke(bench_command, ["--model", str(tmp_path / "missing.onnx"), "--output", str(output)])
    assert missing.exit_code == 2 and "Expected:" in missing.output
    model = tiny_classifier(tmp_path / "model.onnx", batch=1)
    bad_batch = runner.invoke(bench_command, ["--model", str(model), "--quick", "--output", str(output)])
    assert bad_batch.exit_code == 2 and "batch size" in bad_batch.output
    assert not output.exists() or not any(output.iterdir())
    good = tiny_classifier(tmp_path / "good.onnx")
    finished = runner.invoke(bench_command, ["--model", str(good), "--quick", "--threads", "1", "--no-plots",
                                             "--batch-sizes", "1,2", "--output", str(output)])
    assert finished.exit_code == 0, finished.output
    assert (output / "bench.json").is_file() and (output / "bench.md").is_file()
    # A bare model file has no data: it is timed on seeded N(0,1) random inputs, and every output says so.
    (result,) = json.loads((output / "bench.json").read_text())["scenarios"]
    assert result["inputs"] == RANDOM_INPUTS and result["inputs_synthetic"] is True
    assert "synthetic: seeded standard normal N(0,1)" in RANDOM_INPUTS and "not real data" in RANDOM_INPUTS
    assert RANDOM_INPUTS in (output / "bench.md").read_text()
    assert f"good: timed on {RANDOM_INPUTS}" in finished.output


def test_scenario_timing_inputs_and_accuracy_data_say_synthetic_or_real() -> None:
    from types import SimpleNamespace

    from pipeline.benchmark.gate_settings import describe_test_split
    from pipeline.splits import DataSplits, Split

    def splits(synthetic: bool) -> DataSplits:
        rows = np.zeros((100, FEATURES), np.float32)
        parts = {name: Split(rows, np.zeros(100, np.int64)) for name in ("train", "validation", "calibration", "test")}
        return DataSplits(**parts, class_names=("a", "b"), provenance={"synthetic": synthetic})

    artifacts = {"data": SimpleNamespace(manifest={"config": {"data": {}}}),
                 "evaluate": SimpleNamespace(metrics={"decision_data": "validation split (100 samples)"})}
    synthetic, real = splits(True), splits(False)  # ecg-arrhythmia's ECGSYN-like beats; ecg-pvc's MIT-BIH beats
    assert describe_timing_inputs("ecg-arrhythmia", synthetic) == (
        "ecg-arrhythmia test split: its first 64 of 100 samples, cycled (SYNTHETIC data)")
    assert describe_timing_inputs("ecg-pvc", real).endswith("(real data)")
    assert describe_test_split("ecg-arrhythmia", synthetic, artifacts) == (
        "ecg-arrhythmia test split (100 samples; SYNTHETIC data); thresholds chosen on the validation split (100 "
        "samples)")
    assert "; real data)" in describe_test_split("ecg-pvc", real, artifacts)
