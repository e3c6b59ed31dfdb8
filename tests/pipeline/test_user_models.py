"""``edgemed build --model M.keras --data D.npz`` for every task kind, end to end through the CLI.

Tiny models trained here on learnable toy problems — binary, multilabel, regression, an autoencoder,
a two-input model, a logits model, and the multiclass families (MLP, 1-D CNN, LSTM, GRU, attention,
depthwise CNN) — each built once (module scope) with the tiny profile, then checked: parity in the
export manifest, the bundle's task kind and decision rule, the gate verdicts, and decisions of the
device runtime (``runtime.bundle``) that agree with Keras on the test inputs. Then what must fail:
damaged variants per kind, every bad ``.npz`` (exit 2, nothing written), ``edgemed inspect``, and the
cache keys (graph passes, tool versions, the int8 search).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest
from click.testing import CliRunner

from exporters.heads import head_reference
from pipeline.build.artifacts import artifact_id, load_artifact
from pipeline.build.stages.data import load_data
from pipeline.build.stages.evaluate import evaluate_variants, task_data
from pipeline.build.stages.variants import load_decision_predictions, load_predictions, variants_stage_key
from pipeline.cli import main
from pipeline.config import TINY_TUNING, EvaluateConfig, VariantsConfig
from runtime.bundle import TrustPolicy, load_bundle
from runtime.contract import TaskKind
from runtime.decide import decide

RATE = 100.0  # Hz, for every waveform and sequence input
CLASSES = 3
TRAIN, CALIBRATION, VALIDATION, TEST = 600, 200, 200, 300
PARITY_TOLERANCE = 1e-4


def _sizes(rows: int = TRAIN + CALIBRATION + VALIDATION + TEST) -> dict[str, slice]:
    cuts = np.cumsum([0, TRAIN, CALIBRATION, VALIDATION, TEST])
    return {name: slice(cuts[index], cuts[index + 1])
            for index, name in enumerate(("train", "calibration", "validation", "test"))} | {"rows": rows}


PARTS = _sizes()


def _fit(model, inputs, labels, loss: str | object, epochs: int = 4) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    model.fit(inputs, labels, epochs=epochs, batch_size=64, verbose=0, shuffle=True)


def _split_arrays(inputs, labels, *, labelled_validation: bool = True, prefix_inputs=None) -> dict:
    """The .npz arrays of one toy problem: calibration, validation (labelled), test (labelled)."""
    def cut(value, part):
        if isinstance(value, dict):
            return {name: array[PARTS[part]] for name, array in value.items()}
        return value[PARTS[part]]

    arrays = {}
    for part in ("calibration", "validation", "test"):
        chunk = cut(inputs, part)
        if isinstance(chunk, dict):
            arrays.update({f"{part}_inputs__{name}": array for name, array in chunk.items()})
        else:
            arrays[f"{part}_inputs"] = chunk
    arrays["test_labels"] = cut(labels, "test")
    if labelled_validation:
        arrays["validation_labels"] = cut(labels, "validation")
    return arrays


def _train(value):
    return {name: array[PARTS["train"]] for name, array in value.items()} if isinstance(value, dict) \
        else value[PARTS["train"]]


# ----------------------------------------------------------------------------- toy problems


def _tabular(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(PARTS["rows"], 8)).astype(np.float32)


def _waves(seed: int, length: int = 32, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Sines of 2, 5 or 9 cycles per window (the class), random phase and amplitude, noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, PARTS["rows"])
    time = np.arange(length) / length
    cycles = np.array([2.0, 5.0, 9.0])[labels]
    amplitude = rng.uniform(0.5, 2.0, (PARTS["rows"], 1))
    waves = amplitude * np.sin(2 * np.pi * cycles[:, None] * time + rng.uniform(0, 6.3, (PARTS["rows"], 1)))
    signals = waves[..., None] + 0.2 * rng.normal(size=(PARTS["rows"], length, channels))
    return signals.astype(np.float32), labels


def make_binary(folder: Path) -> None:
    import keras

    x = _tabular(1)
    noise = 0.4 * np.random.default_rng(2).normal(size=len(x))
    y = (x[:, 0] + x[:, 1] - 0.5 * x[:, 2] + noise > 0).astype(np.int64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    _fit(model, _train(x), _train(y), "binary_crossentropy")
    model.save(folder / "model.keras")
    np.savez(folder / "data.npz", **_split_arrays(x, y), class_names=np.array(["no finding", "finding"]))


def make_multilabel(folder: Path) -> None:
    import keras

    x = _tabular(3)
    y = np.stack([x[:, j] + 0.5 * x[:, j + 3] > 0.2 for j in range(3)], axis=1).astype(np.int64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="sigmoid")])
    _fit(model, _train(x), _train(y), "binary_crossentropy", epochs=6)
    model.save(folder / "model.keras")
    np.savez(folder / "data.npz", **_split_arrays(x, y), class_names=np.array(["arrhythmia", "ischaemia", "artefact"]))


def regression_data() -> tuple[np.ndarray, np.ndarray]:
    x = _tabular(4)
    noise = 0.1 * np.random.default_rng(5).normal(size=(len(x), 2))
    return x, (np.stack([3 * x[:, 0] + x[:, 1], 2 * x[:, 2] - x[:, 3]], axis=1) + noise).astype(np.float32)


def make_regression(folder: Path) -> None:
    import keras

    x, y = regression_data()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    _fit(model, _train(x), _train(y), "mse", epochs=8)
    model.save(folder / "model.keras")
    np.savez(folder / "data.npz", **_split_arrays(x, y), class_names=np.array(["systolic", "heart_rate"]),
             output_units=np.array(["mmHg", "bpm"]))


def anomaly_data(seed: int = 6) -> dict[str, np.ndarray]:
    """Normal rows on a 3-D subspace of 8-D (plus a little noise); anomalies off it."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(3, 8))

    def normal(rows: int) -> np.ndarray:
        return (rng.normal(size=(rows, 3)) @ basis + 0.05 * rng.normal(size=(rows, 8))).astype(np.float32)

    test = normal(TEST)
    labels = (rng.random(TEST) < 0.2).astype(np.int64)
    test[labels == 1] = (1.7 * rng.normal(size=(int(labels.sum()), 8))).astype(np.float32)
    return {"train": normal(TRAIN), "calibration_inputs": normal(CALIBRATION), "normal_inputs": normal(200),
            "test_inputs": test, "test_labels": labels}


def make_anomaly(folder: Path) -> None:
    import keras

    data = anomaly_data()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3, name="code"),
                              keras.layers.Dense(8, name="reconstruction")])
    _fit(model, data["train"], data["train"], "mse", epochs=10)
    model.save(folder / "model.keras")
    np.savez(folder / "data.npz", **{key: value for key, value in data.items() if key != "train"})


def two_input_data() -> tuple[dict[str, np.ndarray], np.ndarray]:
    window, labels = _waves(7)
    rr = 800.0 + 60.0 * labels[:, None] + 25.0 * np.random.default_rng(8).normal(size=(len(labels), 4))
    return {"window": window, "rr": rr.astype(np.float32)}, labels


def make_two_input(folder: Path) -> None:
    import keras

    inputs, labels = two_input_data()
    window, rr = keras.Input((32, 1), name="window"), keras.Input((4,), name="rr")
    hidden = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(8, 5, activation="relu")(window))
    scaled = keras.layers.Rescaling(1 / 100.0, offset=-8.0)(rr)
    joined = keras.layers.Concatenate()([hidden, keras.layers.Dense(4, activation="relu")(scaled)])
    model = keras.Model({"window": window, "rr": rr}, keras.layers.Dense(CLASSES, activation="softmax")(joined))
    _fit(model, _train(inputs), _train(labels), "sparse_categorical_crossentropy", epochs=6)
    model.save(folder / "model.keras")
    np.savez(folder / "data.npz", **_split_arrays(inputs, labels), sample_rate_hz=RATE,
             test_leads=np.array(["lead II"]))  # the waveform's lead, named as a device CSV may


def _classifier(folder: Path, inputs: np.ndarray, labels: np.ndarray, layers: list, *, logits: bool = False,
                epochs: int = 4) -> None:
    import keras

    head = keras.layers.Dense(CLASSES, activation=None if logits else "softmax")
    model = keras.Sequential([keras.Input(inputs.shape[1:]), *layers, head])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
    _fit(model, _train(inputs), _train(labels), loss, epochs)
    model.save(folder / "model.keras")
    extra = {"sample_rate_hz": RATE} if inputs.ndim > 2 else {}
    np.savez(folder / "data.npz", **_split_arrays(inputs, labels), **extra)


def _tabular_classes() -> tuple[np.ndarray, np.ndarray]:
    x = _tabular(9)
    return x, np.digitize(x[:, 0] + 0.5 * x[:, 1], [-0.5, 0.5]).astype(np.int64)


def make_logits(folder: Path) -> None:
    import keras

    _classifier(folder, *_tabular_classes(), [keras.layers.Dense(16, activation="relu")], logits=True)


def make_mlp(folder: Path) -> None:
    import keras

    _classifier(folder, *_tabular_classes(), [keras.layers.Dense(16, activation="relu")])


def make_conv1d(folder: Path) -> None:
    import keras

    _classifier(folder, *_waves(10), [keras.layers.Conv1D(8, 5, activation="relu"), keras.layers.MaxPooling1D(2),
                                      keras.layers.Conv1D(8, 3, activation="relu"),
                                      keras.layers.GlobalAveragePooling1D()])


def make_depthwise(folder: Path) -> None:
    import keras

    _classifier(folder, *_waves(11, channels=2), [keras.layers.DepthwiseConv1D(5, activation="relu"),
                                                  keras.layers.Conv1D(8, 1, activation="relu"),
                                                  keras.layers.GlobalMaxPooling1D()])


def make_lstm(folder: Path) -> None:
    import keras

    _classifier(folder, *_waves(12, length=16, channels=3), [keras.layers.LSTM(8)], epochs=5)


def make_gru(folder: Path) -> None:
    import keras

    _classifier(folder, *_waves(13, length=16, channels=3), [keras.layers.GRU(8)], epochs=5)


def make_attention(folder: Path) -> None:
    import keras

    inputs, labels = _waves(14, length=16, channels=4)
    tokens = keras.Input((16, 4))
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(tokens, tokens)
    hidden = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization()(tokens + attended))
    model = keras.Model(tokens, keras.layers.Dense(CLASSES, activation="softmax")(hidden))
    _fit(model, _train(inputs), _train(labels), "sparse_categorical_crossentropy", epochs=5)
    model.save(folder / "model.keras")
    np.savez(folder / "data.npz", **_split_arrays(inputs, labels), sample_rate_hz=RATE)


@dataclass(frozen=True)
class Case:
    kind: TaskKind
    make: Callable[[Path], None]
    head: str | None = None  # what the export appends
    output: str = "probabilities"  # the graph output's name


CASES = {
    "binary": Case(TaskKind.BINARY, make_binary),
    "multilabel": Case(TaskKind.MULTILABEL, make_multilabel),
    "regression": Case(TaskKind.REGRESSION, make_regression, output="values"),
    "anomaly": Case(TaskKind.ANOMALY, make_anomaly, "reconstruction-error", "anomaly_score"),
    "two-input": Case(TaskKind.MULTICLASS, make_two_input),
    "logits": Case(TaskKind.MULTICLASS, make_logits, "softmax"),
    "mlp": Case(TaskKind.MULTICLASS, make_mlp),
    "conv1d": Case(TaskKind.MULTICLASS, make_conv1d),
    "depthwise": Case(TaskKind.MULTICLASS, make_depthwise),
    "lstm": Case(TaskKind.MULTICLASS, make_lstm),
    "gru": Case(TaskKind.MULTICLASS, make_gru),
    "attention": Case(TaskKind.MULTICLASS, make_attention),
}
# The gate's rule names what each kind measured.
RULE_WORDS = {
    TaskKind.MULTICLASS: ("macro-F1", "sensitivity"),
    TaskKind.BINARY: ("sensitivity", "specificity", "AUROC", "operating point"),
    TaskKind.MULTILABEL: ("macro-F1", "every label", "AUROC"),
    TaskKind.REGRESSION: ("MAE", "limits-of-agreement"),
    TaskKind.ANOMALY: ("AUROC", "false-alarm rate", "sensitivity"),
}


@dataclass(frozen=True)
class Built:
    """One case's files, the CLI's result, and what it wrote."""

    folder: Path
    result: object
    artifacts: Path
    bundle: Path

    @property
    def manifest(self) -> dict:
        return json.loads((self.bundle / "manifest.json").read_text())

    def artifact(self, stage: str):
        """A stage's artefact of this build (the lineage names the import stage ``model``)."""
        return load_artifact(self.artifacts / stage / self.manifest["lineage"]["model" if stage == "import" else stage])

    def npz(self) -> dict[str, np.ndarray]:
        with np.load(self.folder / "data.npz") as arrays:
            return {key: arrays[key] for key in arrays.files}


def build(folder: Path, name: str, *extra: str) -> object:
    arguments = ["build", "--model", str(folder / "model.keras"), "--data", str(folder / "data.npz"), "--profile",
                 "tiny", "--name", name, "--artifacts", str(folder.parent / "artifacts"), "--bundles",
                 str(folder.parent / "bundles"), *extra]
    return CliRunner().invoke(main, arguments)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("user-models")


@pytest.fixture(scope="module")
def built(workspace) -> Callable[[str], Built]:
    """Each case's model and data made, and built with the tiny profile, once (on first use)."""
    cache: dict[str, Built] = {}

    def get(name: str) -> Built:
        if name not in cache:
            import keras

            keras.utils.set_random_seed(0)
            folder = workspace / name
            folder.mkdir()
            CASES[name].make(folder)
            result = build(folder, name)
            assert result.exit_code == 0, result.output
            cache[name] = Built(folder, result, workspace / "artifacts", workspace / "bundles" / name)
        return cache[name]

    return get


def _test_inputs(arrays: dict[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
    if "test_inputs" in arrays:
        return arrays["test_inputs"]
    return {key.split("__", 1)[1]: value for key, value in arrays.items() if key.startswith("test_inputs__")}


def _keras_outputs(folder: Path, inputs, head: str | None) -> np.ndarray:
    import keras

    model = keras.saving.load_model(folder / "model.keras", compile=False)
    outputs = np.asarray(model.predict(inputs, batch_size=256, verbose=0), dtype=np.float32)
    return head_reference(head, outputs, inputs) if head else outputs


# ----------------------------------------------------------------------------- every kind builds


@pytest.mark.parametrize("name", list(CASES))
def test_build_ships_a_bundle_with_parity_and_the_kinds_rule_and_gate(built, name):
    case, item = CASES[name], built(name)
    manifest = item.manifest
    parity = item.artifact("export").metrics["parity"]
    assert parity["passed"] is True and parity["max_abs_diff"] <= PARITY_TOLERANCE
    assert parity["batch_sizes"] == [1, 32] and parity["samples"] == 256 and parity["outputs"] == [case.output]
    decided = case.kind in (TaskKind.MULTICLASS, TaskKind.BINARY, TaskKind.MULTILABEL)
    assert parity["argmax_agreement"] == (1.0 if decided else None)
    assert manifest["export"]["parity"]["passed"] is True
    assert item.artifact("import").metrics["task"]["kind"] == case.kind.value
    assert item.artifact("import").metrics["task"]["head"] == case.head
    output = manifest["output"]
    assert output["task"] == case.kind.value and output["names"] == [case.output]
    assert not output["graph_outputs_logits"]  # every head is in the graph
    rule = output["decision"]
    if case.kind is TaskKind.BINARY:
        assert 0 < rule["threshold"] < 1 and "sensitivity ≥ 0.95" in rule["chosen_by"]
        assert "validation split (200 samples)" in rule["chosen_by"]
        assert output["labels"] == ["no finding", "finding"]
    elif case.kind is TaskKind.MULTILABEL:
        assert len(rule["thresholds"]) == 3 and all(0 < value < 1 for value in rule["thresholds"])
        assert "per label" in rule["chosen_by"]
    elif case.kind is TaskKind.REGRESSION:
        assert rule == {"units": ["mmHg", "bpm"]} and output["labels"] == ["systolic", "heart_rate"]
    elif case.kind is TaskKind.ANOMALY:
        assert rule["target_false_alarm_rate"] == 0.01 and np.isfinite(rule["threshold"])
        assert "normal inputs" in rule["chosen_by"] and output["labels"] == ["normal", "anomalous"]
    else:
        assert rule == {"low_confidence_below": None}
    variants = manifest["variants"]
    assert list(variants) == ["fp32", "fp16", "int8-dynamic", "int8-static"]
    assert variants["fp32"]["gate"]["passed"] is True and variants[manifest["variant"]]["gate"]["passed"] is True
    for variant in list(variants)[1:]:
        assert all(word in variants[variant]["gate"]["rule"] for word in RULE_WORDS[case.kind]), variant
        assert variants[variant]["gate"]["reason"].startswith(("passed", "failed"))
    evaluation = item.artifact("evaluate").metrics
    assert evaluation["task"] == case.kind.value and set(evaluation["passed"]) == set(variants)
    headline = variants["fp32"]["headline"]
    assert headline["value"] is not None and headline["low"] <= headline["high"]  # with its bootstrap interval
    report = (item.bundle / "report.md").read_text()
    assert f"({case.kind.value})" in report and "## Gate verdicts" in report


@pytest.mark.parametrize("name", list(CASES))
def test_the_device_runtime_decides_as_keras_does(built, name):
    case, item = CASES[name], built(name)
    bundle = load_bundle(item.bundle, trust=TrustPolicy.development())
    assert bundle.output.task is case.kind
    inputs = _test_inputs(item.npz())
    device = bundle.predict(inputs)
    keras_values = _keras_outputs(item.folder, inputs, case.head).reshape(len(device), -1)
    # The shipped variant may be reduced-precision: it differs from fp32 by at most this (recorded on the
    # same test inputs); fp32 from Keras by the parity tolerance.
    margin = item.artifact("variants").metrics["variants"][bundle.variant]["max_abs_diff_vs_fp32"] + PARITY_TOLERANCE
    assert np.max(np.abs(device - keras_values)) <= margin + 1e-6
    if case.kind is TaskKind.REGRESSION:
        return
    on_device = [decision.labels for decision in bundle.decide(inputs)]
    from_keras = [decision.labels for decision in decide(bundle.output, keras_values)]
    different = [index for index, (a, b) in enumerate(zip(on_device, from_keras, strict=True)) if a != b]
    for index in different:  # only where Keras itself sits within the margin of the decision boundary
        assert _near_boundary(bundle.output, keras_values[index], 2 * margin), (index, keras_values[index])
    assert len(different) <= 0.02 * len(on_device)


def _near_boundary(output, row: np.ndarray, margin: float) -> bool:
    rule = output.decision
    if output.task is TaskKind.MULTICLASS:
        top = np.sort(row)[-2:]
        return top[1] - top[0] <= margin
    thresholds = np.atleast_1d(getattr(rule, "thresholds", getattr(rule, "threshold", None)))
    return bool(np.any(np.abs(row - thresholds) <= margin))


def test_a_two_input_model_keeps_its_inputs_and_parity_at_two_batch_sizes(built):
    item = built("two-input")
    manifest = item.manifest
    specs = {spec["name"]: spec for spec in manifest["inputs"]}  # in the model's input order (Keras sorts a dict)
    assert sorted(specs) == ["rr", "window"]
    assert specs["window"]["shape"] == [None, 32, 1] and specs["window"]["sample_rate_hz"] == RATE
    assert specs["rr"]["feature_kind"] == "tabular" and len(specs["rr"]["feature_names"]) == 4
    assert specs["window"]["leads"] == ["II"] and "leads" not in specs["rr"]  # test_leads: the waveform's only
    parity = item.artifact("export").metrics["parity"]
    assert parity["batch_sizes"] == [1, 32] and parity["passed"] and parity["max_abs_diff"] <= PARITY_TOLERANCE
    bundle = load_bundle(item.bundle, trust=TrustPolicy.development())
    inputs = {name: value[:33] for name, value in _test_inputs(item.npz()).items()}
    whole = bundle.predict(inputs)
    one_by_one = np.concatenate([bundle.predict({name: value[row:row + 1] for name, value in inputs.items()})
                                 for row in range(33)])
    np.testing.assert_allclose(whole, one_by_one, atol=1e-6)
    profile = json.loads((item.bundle / "reference_profile.json").read_text())
    assert "window/peak_to_peak" in profile["features"] and "rr/feature_0" in profile["features"]


def test_profiles_and_reports_follow_the_kind(built):
    binary = json.loads((built("binary").bundle / "reference_profile.json").read_text())
    assert binary["task"] == "binary" and set(binary["predictions"]["class_counts"]) == {"no finding", "finding"}
    multilabel = json.loads((built("multilabel").bundle / "reference_profile.json").read_text())
    assert set(multilabel["predictions"]["label_fractions"]) == {"arrhythmia", "ischaemia", "artefact"}
    regression = json.loads((built("regression").bundle / "reference_profile.json").read_text())
    assert set(regression["predictions"]["values"]) == {"systolic", "heart_rate"}
    anomaly = json.loads((built("anomaly").bundle / "reference_profile.json").read_text())
    assert sum(anomaly["predictions"]["class_counts"].values()) == TEST and "score" in anomaly["predictions"]
    report = (built("regression").bundle / "report.md").read_text()
    assert "| systolic | mmHg |" in report and "no decision to compare (values only)" in report
    assert "AUROC" in (built("anomaly").bundle / "report.md").read_text()


def test_a_rebuild_reuses_every_stage(built):
    item = built("regression")
    again = build(item.folder, "regression")
    assert again.exit_code == 0 and "reused: data, import, export, variants, evaluate, bundle" in again.output


def test_renamed_copies_reuse_the_stages_and_the_manifest_names_content_not_a_stale_file_name(built):
    """The data and import stages are keyed by content: a renamed copy reuses them, so what they record names the
    content (sha256), never the first file name they were built from."""
    import shutil

    item = built("mlp")
    shutil.copy(item.folder / "model.keras", item.folder / "renamed.keras")
    shutil.copy(item.folder / "data.npz", item.folder / "renamed.npz")
    arguments = ["build", "--model", str(item.folder / "renamed.keras"), "--data", str(item.folder / "renamed.npz"),
                 "--profile", "tiny", "--name", "mlp", "--artifacts", str(item.artifacts), "--bundles",
                 str(item.bundle.parent)]
    again = CliRunner().invoke(main, arguments)
    assert again.exit_code == 0 and "reused: data, import" in again.output, again.output
    manifest = item.manifest
    assert manifest["description"] == "user model renamed.keras"
    assert "data.npz" not in json.dumps(manifest["data"]) and "model.keras" not in json.dumps(manifest["training"])
    assert manifest["data"]["provenance"]["source"].startswith("user-supplied .npz (sha256 ")
    assert manifest["training"]["source"].startswith("the user's .keras file (sha256 ")


# ----------------------------------------------------------------------------- damaged variants fail the gate


def _damage(kind: TaskKind, outputs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    outputs = np.asarray(outputs, dtype=np.float64)
    if kind in (TaskKind.BINARY, TaskKind.MULTILABEL):
        logits = np.log(np.clip(outputs, 1e-6, 1 - 1e-6) / np.clip(1 - outputs, 1e-6, 1))
        return 1 / (1 + np.exp(-(logits + rng.normal(scale=2.0, size=outputs.shape))))
    if kind is TaskKind.MULTICLASS:
        noisy = np.clip(outputs + rng.uniform(0, 0.8, size=outputs.shape), 0, None)
        return noisy / noisy.sum(axis=1, keepdims=True)
    if kind is TaskKind.ANOMALY:  # every score given to another sample: other samples alarm
        return rng.permutation(outputs)
    return outputs + rng.normal(scale=outputs.std(axis=0), size=outputs.shape)


@pytest.mark.parametrize("name", ["binary", "multilabel", "regression", "anomaly", "two-input"])
def test_a_damaged_variant_is_rejected_by_its_kinds_gate(built, name):
    case, item = CASES[name], built(name)
    variants, splits = item.artifact("variants"), load_data(item.artifact("data"))
    test, decision = load_predictions(variants), load_decision_predictions(variants)
    rng = np.random.default_rng(0)
    damaged = _damage(case.kind, test["fp32"], rng)
    predictions = {"fp32": test["fp32"], "int8-static": test["int8-static"], "damaged": damaged}
    decisions = {"fp32": decision.get("fp32"), "int8-static": decision.get("int8-static")}
    if decision:
        decisions["damaged"] = _damage(case.kind, decision["fp32"], rng)
    _, verdicts = evaluate_variants(predictions, splits.test.labels, splits.class_names, EvaluateConfig(),
                                    task=case.kind, decision_predictions=decisions if decision else None,
                                    data=task_data(splits))
    assert verdicts["fp32"].passed and not verdicts["damaged"].passed, verdicts["damaged"].reason
    assert verdicts["damaged"].reason.startswith("failed: ")
    stored = {variant: item.manifest["variants"][variant]["gate"]["passed"] for variant in ("fp32", "int8-static")}
    assert {variant: verdicts[variant].passed for variant in stored} == stored  # the stage's own verdicts


def test_an_unlabelled_anomaly_test_split_is_judged_by_alarm_agreement(built):
    item = built("anomaly")
    variants, splits = item.artifact("variants"), load_data(item.artifact("data"))
    test = load_predictions(variants)
    data = dataclasses.replace(task_data(splits), test_labels=None)
    rng = np.random.default_rng(1)
    predictions = {"fp32": test["fp32"], "same": test["fp32"].copy(),
                   "damaged": _damage(TaskKind.ANOMALY, test["fp32"], rng)}
    decisions = {name: load_decision_predictions(variants)["fp32"] for name in ("fp32", "same")}
    decisions["damaged"] = _damage(TaskKind.ANOMALY, decisions["fp32"], rng)
    _, verdicts = evaluate_variants(predictions, None, splits.class_names, EvaluateConfig(), task=TaskKind.ANOMALY,
                                    decision_predictions=decisions, data=data)
    assert verdicts["same"].passed and "alarms agree on 100.00%" in verdicts["same"].reason
    assert not verdicts["damaged"].passed and "alarm agreement" in verdicts["damaged"].reason


@pytest.mark.parametrize(("name", "labelled"), [("regression", False), ("regression", True), ("anomaly", False),
                                               ("binary", True), ("multilabel", True)])
def test_int8_tuning_checks_candidates_by_the_kind(built, name, labelled):
    """The accuracy check int8 tuning applies on held-out data: an exact copy of fp32 passes, a damaged one fails."""
    from pipeline.clinical.task_evaluation import TaskData
    from pipeline.clinical.tuning_check import task_accuracy_check

    case, item = CASES[name], built(name)
    splits = load_data(item.artifact("data"))
    variants = item.artifact("variants")
    outputs = (load_decision_predictions(variants) or load_predictions(variants))["fp32"]
    labels = task_data(splits).decision_labels if case.kind is not TaskKind.REGRESSION else splits.test.labels
    if case.kind is TaskKind.REGRESSION:
        outputs = load_predictions(variants)["fp32"]
    data = TaskData(case.kind, splits.class_names, labels if labelled else None, splits.units)
    check = task_accuracy_check(data, outputs, EvaluateConfig().decision, EvaluateConfig().gate_for(case.kind))
    same = check(outputs.copy())
    assert same.passed and same.worst_drop_points <= 1e-9, same.reason
    broken = check(_damage(case.kind, outputs, np.random.default_rng(2)))
    assert not broken.passed and broken.worst_drop_points > 1.0, broken.reason
    if case.kind is TaskKind.REGRESSION and not labelled:
        assert "of the spread of fp32's outputs" in broken.reason


def test_a_mixed_precision_model_is_exported_computing_in_float32_and_every_variant_is_made(workspace):
    """A model trained under ``mixed_float16`` (float16 compute, float32 weights) exported as trained differs from
    Keras by ~5e-4 and its fp16 conversion does not load in ONNX Runtime; edgemed exports it computing in float32
    with the same weights, says so in the manifest, passes parity at 1e-4 and makes every variant."""
    import keras

    folder = workspace / "mixed-precision"
    folder.mkdir()
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        _classifier(folder, *_waves(15), [keras.layers.Conv1D(8, 5, activation="relu"),
                                          keras.layers.GlobalAveragePooling1D()])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    result = build(folder, "mixed-precision")
    assert result.exit_code == 0, result.output
    item = Built(folder, result, workspace / "artifacts", workspace / "bundles" / "mixed-precision")
    (note,) = [warning for warning in item.manifest["export"]["warnings"] if "mixed precision" in warning]
    assert "mixed_float16: 3 layers" in note and "computing in float32 with the same weights" in note
    assert item.manifest["export"]["parity"]["max_abs_diff"] <= 1e-4
    variants = item.artifact("variants").metrics
    assert variants["not_made"] == {} and {"fp32", "fp16", "int8-static"} <= set(variants["order"])
    shown = CliRunner().invoke(main, ["inspect", str(folder / "model.keras")])
    assert shown.exit_code == 0 and "precision: mixed_float16 on 3 layers (trained in mixed precision): exported " \
        "computing in float32" in shown.output, shown.output


def test_a_variant_that_cannot_be_made_is_left_out_with_its_reason_and_the_rest_ship(tmp_path, monkeypatch):
    """A reduced-precision variant whose making fails (``QuantizationError``) is left out, named with the reason
    in the shipped bundle's selection, and the other variants are judged and timed as usual; requiring it with
    ``--variant`` fails with that reason and publishes nothing."""
    import keras

    from exporters.errors import QuantizationError
    from pipeline.build.stages import variants as variants_stage

    made = variants_stage.make_variant

    def refuse_fp16(name, source, destination, request):
        if str(name) == "fp16":
            raise QuantizationError("the fp16 variant does not load in ONNX Runtime: type error (test)")
        return made(name, source, destination, request)

    monkeypatch.setattr(variants_stage, "make_variant", refuse_fp16)
    folder = tmp_path / "refused"
    folder.mkdir()
    keras.utils.set_random_seed(0)
    make_mlp(folder)
    result = build(folder, "refused")
    assert result.exit_code == 0, result.output
    item = Built(folder, result, tmp_path / "artifacts", tmp_path / "bundles" / "refused")
    variants = item.artifact("variants").metrics
    assert variants["not_made"] == {"fp16": "the fp16 variant does not load in ONNX Runtime: type error (test)"}
    assert "fp16" not in variants["order"] and set(item.manifest["variants"]) == set(variants["order"])
    assert not item.artifact("variants").path("fp16.onnx").exists()
    assert "; fp16 could not be made (the fp16 variant does not load" in item.manifest["selection"]["reason"]
    bundle = load_bundle(item.bundle, trust=TrustPolicy.development())
    outputs = np.asarray(bundle.predict({bundle.inputs[0].name: _test_inputs(item.npz())[:4]}))
    assert outputs.shape == (4, CLASSES) and np.isfinite(outputs).all()
    required = build(folder, "refused-fp16", "--variant", "fp16")
    assert required.exit_code != 0
    assert "the required variant fp16 cannot ship: it could not be made (the fp16 variant" in required.output
    assert not (tmp_path / "bundles" / "refused-fp16").exists()


# ----------------------------------------------------------------------------- bad data: exit 2, nothing written


def _run_bad(built, tmp_path, name: str, change: Callable[[dict], None], *extra: str):
    item = built(name)
    arrays = item.npz()
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    arguments = ["build", "--model", str(item.folder / "model.keras"), "--data", str(tmp_path / "bad.npz"),
                 "--artifacts", str(tmp_path / "artifacts"), "--bundles", str(tmp_path / "bundles"), *extra]
    result = CliRunner().invoke(main, arguments)
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "bundles").exists()
    return result


def _drop(*keys: str) -> Callable[[dict], None]:
    return lambda arrays: [arrays.pop(key) for key in keys]


def _set(key: str, value: Callable[[dict], np.ndarray]) -> Callable[[dict], None]:
    return lambda arrays: arrays.__setitem__(key, value(arrays))


BAD_DATA = [
    ("two-input", _drop("test_inputs__rr"), "lacks the arrays ['test_inputs__rr']"),
    ("two-input", lambda arrays: arrays.update(test_inputs=arrays.pop("test_inputs__window"),
                                               ) or arrays.pop("test_inputs__rr"),
     "one 'test_inputs' array cannot feed it"),
    ("two-input", _set("test_inputs__rr", lambda arrays: arrays["test_inputs__rr"][:-1]),
     "test_inputs has different numbers of rows per input: {'rr': 299, 'window': 300}"),
    ("two-input", _set("validation_inputs__window", lambda arrays: arrays["validation_inputs__window"][..., 0]),
     "validation_inputs__window has inputs of shape (200, 32)"),
    ("binary", _set("test_labels", lambda arrays: arrays["test_labels"][:-1]),
     "test_labels has values of shape (299,)"),
    ("binary", _set("test_labels", lambda arrays: arrays["test_labels"].astype(np.float32)),
     "test_labels has values of dtype float32 for a binary task"),
    ("regression", _set("test_labels", lambda arrays: np.round(arrays["test_labels"]).astype(np.int64)),
     "test_labels has values of dtype int64 for a regression"),
    ("regression", _drop("output_units"), "no output_units for a regression model"),
    ("binary", _set("validation_labels", lambda arrays: np.zeros_like(arrays["validation_labels"])),
     "validation_labels: cannot choose a threshold for 'finding'"),
    ("binary", _set("test_labels", lambda arrays: np.zeros_like(arrays["test_labels"])),
     "test_labels hold no sample of class 1"),  # the gate would pass a class it never measured
    ("mlp", _set("test_labels", lambda arrays: np.minimum(arrays["test_labels"], 1)),
     "test_labels hold no sample of class 2"),
    ("binary", _drop("validation_inputs", "validation_labels"), "validation_inputs + validation_labels"),
    ("binary", _drop("validation_labels"), "the .npz has no validation_labels for a binary model"),
    ("multilabel", _set("test_labels", lambda arrays: arrays["test_labels"][:, :2]),
     "test_labels has values of shape (300, 2)"),
    ("anomaly", _set("normal_inputs", lambda arrays: arrays["normal_inputs"][:50]),
     "50 normal samples (normal inputs) cannot resolve the false-alarm rate 0.01"),
    ("anomaly", _set("test_label", lambda arrays: arrays.pop("test_labels")),
     "keys edgemed does not know: ['test_label']"),
    ("mlp", _set("test_labels", lambda arrays: arrays["test_labels"].astype(np.float32)),
     "test_labels has values of dtype float32 for a multiclass task"),
    ("mlp", _set("class_names", lambda arrays: np.array(["a", "b"])), "class_names is ['a', 'b']"),
    ("conv1d", _drop("sample_rate_hz"), "no sample_rate_hz"),
    ("conv1d", _set("test_leads", lambda arrays: np.array(["MLII", "Jane Doe"])),
     "test_leads has 2 value(s); entries [1] are no standard lead name"),  # never shown: it may be a patient's
    ("mlp", _set("test_leads", lambda arrays: np.array(["MLII"])), "but the model takes no waveform input"),
]


@pytest.mark.parametrize(("name", "change", "needle"), BAD_DATA,
                         ids=[f"{case[0]}-{index}" for index, case in enumerate(BAD_DATA)])
def test_bad_data_is_a_usage_error_naming_the_key_and_writes_nothing(built, tmp_path, name, change, needle):
    result = _run_bad(built, tmp_path, name, change)
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.output.split()), result.output


def test_integer_targets_named_a_regression_say_so(built, tmp_path):
    result = _run_bad(built, tmp_path, "regression",
                      _set("test_labels", lambda arrays: np.round(arrays["test_labels"]).astype(np.int64)),
                      "--task", "regression")
    assert result.exit_code == 2 and "test_labels has values of dtype int64 for a regression" in result.output


@pytest.mark.parametrize(("name", "task", "needle"), [
    ("mlp", "binary", "--task binary, but output"),
    ("anomaly", "binary", "--task binary, but output"),
])
def test_a_task_the_model_cannot_be_is_a_usage_error(built, tmp_path, name, task, needle):
    result = _run_bad(built, tmp_path, name, lambda arrays: None, "--task", task)
    assert result.exit_code == 2 and needle in result.output, result.output


def test_task_needs_a_model(tmp_path):
    result = CliRunner().invoke(main, ["build", "breast-cancer", "--task", "binary", "--artifacts", str(tmp_path)])
    assert result.exit_code == 2 and "use it with --model and --data" in result.output
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- edgemed inspect


INSPECTED = {
    "binary": ("task: binary (detected)", "head: none", "decision (> 0.5)", "highest threshold with sensitivity ≥ 0.95",
               "on the validation split (200 samples)"),
    "multilabel": ("task: multilabel (detected)", "per label", "labels arrhythmia, ischaemia, artefact"),
    "regression": ("task: regression (detected)", "values only", "MAE growth", "units mmHg, bpm"),
    "anomaly": ("task: anomaly (detected)", "head: reconstruction-error, appended to the exported graph",
                "false-alarm rate ≤ 0.01 on normal data on the normal inputs (200 samples)", "AUROC"),
    "two-input": ("window: (batch, 32, 1) — waveform", "rr: (batch, 4) — tabular row", "test_inputs__window",
                  "task: multiclass (detected)", "macro-F1 drop"),
    "logits": ("logits: yes", "head: softmax, appended to the exported graph", "argmax"),
}


@pytest.mark.parametrize("name", list(INSPECTED))
def test_inspect_says_what_edgemed_understood(built, name):
    item = built(name)
    result = CliRunner().invoke(main, ["inspect", str(item.folder / "model.keras"), "--data",
                                       str(item.folder / "data.npz")])
    assert result.exit_code == 0, result.output
    for needle in INSPECTED[name]:
        assert needle in result.output, (needle, result.output)
    assert "parity: ONNX Runtime vs Keras" in result.output and "data: ok" in result.output
    assert "precision: float32\n" in result.output


def test_inspect_without_data_and_with_a_problem(built, tmp_path):
    autoencoder = built("anomaly").folder / "model.keras"
    result = CliRunner().invoke(main, ["inspect", str(autoencoder)])
    assert result.exit_code == 0 and "task: anomaly (detected)" in result.output and "data: none given" in result.output
    linear = built("regression").folder / "model.keras"
    result = CliRunner().invoke(main, ["inspect", str(linear)])
    assert result.exit_code == 2 and "cannot tell what output" in result.output and "--task" in result.output
    result = CliRunner().invoke(main, ["inspect", str(linear), "--task", "regression"])
    assert result.exit_code == 0 and "task: regression (named with --task)" in result.output
    arrays = built("regression").npz()
    arrays.pop("output_units")
    np.savez(tmp_path / "bad.npz", **arrays)
    result = CliRunner().invoke(main, ["inspect", str(linear), "--data", str(tmp_path / "bad.npz")])
    assert result.exit_code == 2 and "no output_units" in result.output and "inputs:" in result.output
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.npz"]


# ----------------------------------------------------------------------------- honest cache keys


def test_the_cache_keys_hold_the_passes_the_int8_search_and_the_tool_versions(built, monkeypatch):
    import exporters.passes
    from pipeline.build.stages import variants as variants_stage

    item = built("binary")
    export, variants = item.artifact("export"), item.artifact("variants")
    assert set(export.manifest["config"]["tools"]) == {"tf2onnx", "tensorflow", "keras", "onnx"}
    assert set(variants.manifest["config"]["tools"]) == {"onnxruntime", "onnx"}
    passes = variants.manifest["config"]["graph_passes"]
    assert passes["fp32"] == [name.value for name in exporters.passes.DEFAULT_PASSES]
    assert passes["int8_static"] == ["channels-last-boundaries"]
    task = variants.metrics["task"]
    config = VariantsConfig(int8_tuning=TINY_TUNING)

    def identifier(**changes) -> str:
        return artifact_id("variants", variants_stage_key(dataclasses.replace(config, **changes), task,
                                                          EvaluateConfig()), export.id)

    base = identifier()
    assert identifier(int8_tuning=dataclasses.replace(TINY_TUNING, per_channel=(False,))) != base
    monkeypatch.setattr(variants_stage, "DEFAULT_PASSES", tuple(reversed(exporters.passes.DEFAULT_PASSES)))
    assert identifier() != base
    monkeypatch.undo()
    monkeypatch.setattr(variants_stage, "VARIANT_TOOLS", ("onnxruntime", "onnx", "numpy"))
    assert identifier() != base


def test_an_anomaly_alarm_with_no_labelled_anomaly_in_the_test_split_does_not_ship(built, tmp_path):
    """An autoencoder's test data without test_labels measures no alarm on any real anomaly: the anomalous class has
    0 real test examples under the evidence rule, as any class would (it passed as 'all test examples' before)."""
    item = built("anomaly")
    arrays = item.npz()
    arrays.pop("test_labels")
    np.savez(tmp_path / "normal-only.npz", **arrays)
    arguments = ["build", "--model", str(item.folder / "model.keras"), "--data", str(tmp_path / "normal-only.npz"),
                 "--artifacts", str(tmp_path / "artifacts"), "--bundles", str(tmp_path / "bundles")]
    refused = CliRunner().invoke(main, arguments)
    assert refused.exit_code != 0 and "anomalous" in refused.output, refused.output
    assert "0 real test examples" in " ".join(refused.output.split()), refused.output
    assert not any((tmp_path / "bundles").glob("*/manifest.json"))
    allowed = CliRunner().invoke(main, [*arguments, "--allow-unvalidated"])
    assert allowed.exit_code == 0, allowed.output
    manifest = json.loads(next((tmp_path / "bundles").glob("*/manifest.json")).read_text())
    evidence = manifest["data"]["provenance"]["evidence"]
    assert evidence["passed"] is False and evidence["classes"]["anomalous"]["examples"] == 0
