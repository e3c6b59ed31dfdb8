"""The ``edgemed`` CLI: exit codes (2 usage, 1 failure), messages, and the user-model path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from exporters.keras_to_onnx import MAX_OPSET, MIN_OPSET
from pipeline.cli import main

COMMANDS = ["build", "train", "export", "quantize", "evaluate", "bundle", "scenarios"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(runner, command):
    result = runner.invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_scenarios_lists_both_with_labels(runner):
    result = runner.invoke(main, ["scenarios"])
    assert result.exit_code == 0
    assert "ecg-arrhythmia" in result.output and "N, S, V, F" in result.output
    assert "breast-cancer" in result.output and "malignant, benign" in result.output


def test_unknown_scenario_is_a_usage_error_listing_valid_ones(runner, tmp_path):
    result = runner.invoke(main, ["build", "no-such-thing", "--artifacts", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown scenario 'no-such-thing'" in result.output
    assert "ecg-arrhythmia" in result.output and "breast-cancer" in result.output


def test_unknown_calibration_method_lists_the_valid_ones(runner):
    result = runner.invoke(main, ["quantize", "breast-cancer", "--calibration-method", "magic"])
    assert result.exit_code == 2
    assert "minmax" in result.output and "entropy" in result.output and "percentile" in result.output


# 19: the CLI once accepted up to 21, so the exporter refused it mid-build (exit 1).
@pytest.mark.parametrize("opset", [MIN_OPSET - 1, 19])
def test_an_opset_the_exporter_refuses_is_a_usage_error(runner, tmp_path, opset):
    result = runner.invoke(main, ["export", "breast-cancer", "--opset", str(opset), "--artifacts", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert f"{MIN_OPSET}<=x<={MAX_OPSET}" in result.output
    assert not any(tmp_path.iterdir())


def test_model_without_data_is_a_usage_error(runner, tmp_path):
    result = runner.invoke(main, ["build", "--model", str(tmp_path / "m.keras")])
    assert result.exit_code == 2
    assert "--model and --data go together" in result.output


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """A user's tiny softmax MLP on a learnable toy problem, with its .npz."""
    import keras

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("user")
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(1200, 6)).astype(np.float32)
    labels = (inputs[:, 0] + 0.5 * inputs[:, 1] > 0).astype(np.int64)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2, activation="softmax")]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(inputs[:800], labels[:800], epochs=15, verbose=0)
    model.save(folder / "mine.keras")
    np.savez(
        folder / "mine.npz",
        calibration_inputs=inputs[800:900],
        test_inputs=inputs[900:],
        test_labels=labels[900:],
        class_names=np.array(["negative", "positive"]),
    )
    return folder


def test_user_model_builds_into_a_bundle(runner, user_model, tmp_path):
    arguments = ["build", "--model", str(user_model / "mine.keras"), "--data", str(user_model / "mine.npz")]
    arguments += ["--profile", "tiny", "--artifacts", str(tmp_path / "a"), "--bundles", str(tmp_path / "b")]
    result = runner.invoke(main, arguments)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "b" / "mine" / "manifest.json").read_text())
    assert manifest["schema_version"] == 2 and manifest["output"]["task"] == "multiclass"
    assert manifest["output"]["labels"] == ["negative", "positive"]
    assert manifest["inputs"][0]["shape"] == [None, 6]
    assert manifest["inputs"][0]["feature_names"] == [f"feature_{index}" for index in range(6)]
    assert manifest["export"]["parity"]["max_abs_diff"] <= 1e-4
    assert "| variant | size (KiB) |" in result.output and "shipped:" in result.output
    assert "synthetic or real: not recorded" in result.output  # the user's data: the summary line says it is unknown
    again = runner.invoke(main, arguments)
    # The user's model is the ``import`` stage, in ``train``'s place; every stage is reused on a rerun.
    assert again.exit_code == 0 and "reused: data, import, export, variants, evaluate, bundle" in again.output


def test_train_on_a_user_model_stops_after_its_import(runner, user_model, tmp_path):
    arguments = ["train", "--model", str(user_model / "mine.keras"), "--data", str(user_model / "mine.npz")]
    result = runner.invoke(main, [*arguments, "--artifacts", str(tmp_path / "a"), "--bundles", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "mine: 2 stages" in result.output and "  import " in result.output
    assert sorted(path.name for path in (tmp_path / "a").iterdir()) == ["data", "import"]
    assert not (tmp_path / "b").exists()


def _write_npz(path, **overrides):
    rng = np.random.default_rng(1)
    arrays = {
        "calibration_inputs": rng.normal(size=(20, 6)).astype(np.float32),
        "test_inputs": rng.normal(size=(40, 6)).astype(np.float32),
        "test_labels": np.zeros(40, np.int64),
    }
    arrays.update(overrides)
    arrays = {key: value for key, value in arrays.items() if value is not None}
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"test_inputs": np.full((40, 6), np.nan, np.float32)}, "240 NaN/inf values in 40 rows"),
        ({"test_inputs": np.zeros((40, 5), np.float32)}, "shape (40, 5)"),
        ({"calibration_inputs": None}, "lacks the arrays ['calibration_inputs']"),
        ({"test_labels": np.full(40, 9, np.int64)}, "outside 0..1"),
        ({"class_names": np.array(["same", "same"])}, "class_names is ['same', 'same']"),
    ],
)
def test_bad_user_data_is_a_usage_error_and_writes_nothing(runner, user_model, tmp_path, overrides, needle):
    data = _write_npz(tmp_path / "bad.npz", **overrides)
    arguments = ["build", "--model", str(user_model / "mine.keras"), "--data", str(data)]
    result = runner.invoke(main, [*arguments, "--artifacts", str(tmp_path / "a"), "--bundles", str(tmp_path / "b")])
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("content", "needle"), [(None, "does not exist"), (b"not a zip", "not a Keras 3 .keras archive")]
)
def test_missing_or_corrupt_keras_file_is_a_usage_error(runner, user_model, tmp_path, content, needle):
    model = tmp_path / "broken.keras"
    if content is not None:
        model.write_bytes(content)
    arguments = ["build", "--model", str(model), "--data", str(user_model / "mine.npz")]
    result = runner.invoke(main, [*arguments, "--artifacts", str(tmp_path / "a")])
    assert result.exit_code == 2
    assert needle in result.output


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal() -> None:
    import io

    from pipeline.cli.progress import ProgressBars

    stream = io.StringIO()
    bars = ProgressBars("demo ", True, stream)
    for done in range(101):
        bars("train", done, 100)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "demo train: 0/100" and lines[-1] == "demo train: 100/100"
    assert "\r" not in stream.getvalue() and len(lines) <= 6


def test_the_build_says_whether_its_test_split_is_synthetic() -> None:
    from types import SimpleNamespace

    from pipeline.build.stages.evaluate import progress_task
    from pipeline.cli.build import data_note
    from pipeline.splits import DataSplits, Split

    def outcome(provenance: dict) -> SimpleNamespace:
        return SimpleNamespace(artifacts={"data": SimpleNamespace(metrics={"provenance": provenance})})

    def splits(provenance: dict) -> DataSplits:
        part = Split(np.zeros((4, 2), np.float32), np.zeros(4, np.int64))
        return DataSplits(part, part, part, part, class_names=("a", "b"), provenance=provenance)

    # ecg-arrhythmia: ECGSYN-like beats in every split; ppg-quality: real test split, synthetic training artefacts.
    assert data_note(outcome({"synthetic": True})) == "SYNTHETIC data (every split, the test split included)"
    assert data_note(outcome({"synthetic": False, "synthetic_training_data": "motion artefacts"})) == (
        "real data in the test split; the training splits add SYNTHETIC data")
    assert data_note(outcome({"synthetic": False})) == "real data"
    assert data_note(outcome({"synthetic": None})) == "synthetic or real: not recorded"
    assert progress_task(splits({"synthetic": True})) == "evaluate (SYNTHETIC test split)"
    assert progress_task(splits({"synthetic": False})) == "evaluate"
