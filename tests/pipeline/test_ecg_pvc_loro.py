"""The PVC LORO measurement: scoring equals ec57, threshold rules, inner groups, the model, one tiny fold."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.benchmark.ecg_pvc_loro import (
    VARIANTS,
    by_seed_table,
    fold_seed,
    over_seeds,
    score_fold,
    write_report,
)
from pipeline.benchmark.ecg_pvc_scoring import (
    markdown_table,
    pooled_counts,
    rates,
    record_counts,
    threshold_for_f1,
    threshold_for_sensitivity,
)
from pipeline.benchmark.ecg_pvc_training import FoldConfig, inner_groups, model_inputs, run_fold
from pipeline.scenarios.ecg_pvc.beats import FALSE_DETECTION, NON_V, RecordBeats, V, record_beats
from pipeline.scenarios.ecg_pvc.mitdb import load_records
from pipeline.scenarios.ecg_pvc.model import ModelConfigError, PvcModelConfig, build_pvc_model
from pipeline.validation import ec57


@pytest.fixture(scope="module")
def record_105():
    record = load_records(["105"])[0]
    return record, record_beats(record)


def test_benchmark_counts_equal_ec57_on_a_real_record(record_105):
    record, beats = record_105
    predicted = np.random.default_rng(0).random(beats.peaks.size) < 0.3
    ours = record_counts(beats, predicted)
    reference = ec57.score_record("105", record.beat_indices, beats.peaks, record.is_pvc, predicted,
                                  ec57.Ec57Config(tolerance_s=0.15 * 360))  # positions in samples
    assert ours == {"record": "105", **{key: value for key, value in vars(reference).items() if key != "record"}}
    assert rates(ours) == ec57.rates(reference)
    assert ours["qrs_false_positives"] > 0 and ours["v_false_negatives"] > 0


def test_pooled_counts_sum_the_records(record_105):
    _, beats = record_105
    one = record_counts(beats, beats.labels == V)
    pooled = pooled_counts([one, one])
    assert pooled["record"] == "pooled" and pooled["v_true_positives"] == 2 * one["v_true_positives"]
    assert rates(pooled)["v_sensitivity"] == pytest.approx(rates(one)["v_sensitivity"])
    assert rates(one)["v_positive_predictivity"] == 1.0  # labels as predictions: only missed beats count against


def test_threshold_rules():
    scores = np.array([0.9, 0.8, 0.8, 0.3, 0.2, 0.1])
    is_v = np.array([True, True, False, True, False, False])
    assert threshold_for_f1(scores, is_v) == pytest.approx(0.3)  # 3 of 4 called are V, all V found: F1 6/7
    assert threshold_for_sensitivity(scores, is_v, 0.6) == pytest.approx(0.8)  # 2 of 3 V at ≥ 0.8
    assert threshold_for_sensitivity(scores, is_v, 0.97) == pytest.approx(0.3)
    assert threshold_for_f1(scores, np.zeros(6, dtype=bool)) == 0.5
    assert threshold_for_sensitivity(scores, np.zeros(6, dtype=bool), 0.9) == 0.5


def fake_record(name: str, beats: int, v_share: float, seed: int) -> RecordBeats:
    """Separable toy beats: V windows carry a negative bump, V pre-RR is short."""
    generator = np.random.default_rng(seed)
    labels = np.where(generator.random(beats) < v_share, V, NON_V).astype(np.int8)
    labels[:2] = FALSE_DETECTION
    is_v = labels == V
    time = np.linspace(-1, 1, 252)
    windows = np.exp(-(time / 0.05) ** 2)[None, :] * np.where(is_v, -1.0, 1.0)[:, None]
    windows = (windows + 0.05 * generator.standard_normal(windows.shape)).astype(np.float32)
    rr = np.ones((beats, 6), dtype=np.float32)
    rr[is_v, 3] = 0.6
    return RecordBeats(name, 360.0, np.arange(beats) * 300 + 100, windows, windows.copy(), rr, labels,
                       np.where(labels == FALSE_DETECTION, -1, np.arange(beats)), beats, 0, 0)


def test_inner_groups_are_a_seeded_partition_with_v_rich_records_spread():
    train = [fake_record(str(index), 200, 0.6 if index < 3 else 0.01, index) for index in range(9)]
    groups = inner_groups(train, FoldConfig(inner_folds=3), seed=4)
    assert sorted(name for group in groups for name in group) == sorted(item.record for item in train)
    assert all(len({"0", "1", "2"} & set(group)) == 1 for group in groups)
    assert groups == inner_groups(train, FoldConfig(inner_folds=3), seed=4)


def test_model_inputs_and_outputs_for_every_variant():
    beats = [fake_record("a", 50, 0.3, 0)]
    for variant in VARIANTS.values():
        model = build_pvc_model(variant.model, 252, 6)
        inputs = model_inputs(beats, [np.arange(50)], variant.model)
        assert sorted(tensor.name for tensor in model.inputs) == sorted(inputs)
        assert model.predict(inputs, verbose=0).shape == (50, 1)
        assert ("window" in inputs) == variant.model.use_window
        assert ("residual" in inputs) == variant.model.use_template
    with pytest.raises(ModelConfigError, match="waveform"):
        build_pvc_model(PvcModelConfig(use_window=False, use_template=False), 252, 6)


def test_one_tiny_fold_is_reproducible_and_scored(tmp_path):
    records = [fake_record(str(index), 160, 0.3, index) for index in range(4)]
    config = FoldConfig(inner_folds=3, epochs=2, patience=1)
    model = VARIANTS["gated-template+rr"].model
    first = run_fold(model, True, records[0], records[1:], config, seed=1, prefix="[test]")
    second = run_fold(model, True, records[0], records[1:], config, seed=1, prefix="[test]")
    np.testing.assert_array_equal(first.test_probabilities, second.test_probabilities)
    assert first.threshold == second.threshold and len(first.epochs_run) == 3
    assert first.test_probabilities.shape == (160,)
    scored = score_fold(records[0], first.test_probabilities, first.threshold)
    assert scored["counts"]["qrs_false_positives"] == 2
    other = run_fold(model, True, records[0], records[1:], config, seed=fold_seed(1, 0), prefix="[test]")
    runs = []
    for seed, result in ((0, first), (1, other)):
        counts = score_fold(records[0], result.test_probabilities, result.threshold)
        fold = {"record": "0", "threshold": result.threshold, "probabilities": result.test_probabilities, **counts}
        runs.append({"seed": seed, "folds": [fold], "pooled": {"counts": pooled_counts([counts["counts"]]),
                                                               "rates": rates(pooled_counts([counts["counts"]]))},
                     "pooled_at_0_5": {"counts": counts["counts_at_0_5"], "rates": counts["rates_at_0_5"]}})
    folds, pooled, at_half = over_seeds(runs)
    report = {"threshold_rule": "rule", "scoring": "scoring", "variants": {"toy": {
        "description": "toy", "train_seconds_per_fold": 1.0, "seeds": [0, 1], "runs": runs, "folds": folds,
        "pooled": pooled, "pooled_at_0_5": at_half}}}
    json_path, markdown_path, probabilities_path = write_report(report, tmp_path)
    markdown = markdown_path.read_text()
    assert "| **pooled** | 158 |" in markdown  # 160 detections, 2 of them false: once, though summed over 2 seeds
    assert "V TP / FN / FP (sum of 2 seeds)" in markdown and "### Seed 1" in markdown
    assert f"| {threshold_text(first.threshold)} / {threshold_text(other.threshold)} |" in markdown
    with np.load(probabilities_path) as saved:
        np.testing.assert_array_equal(saved["toy|0|seed 0"], first.test_probabilities.astype(np.float32))
        np.testing.assert_array_equal(saved["toy|0|seed 1"], other.test_probabilities.astype(np.float32))
    assert '"probabilities"' not in json_path.read_text()
    assert not list(tmp_path.glob(".*partial"))


def threshold_text(value: float) -> str:
    return f"{value:.3f}"


def test_over_seeds_sums_counts_and_keeps_each_seeds_rates():
    def counts(true_positives: int, false_negatives: int, false_positives: int) -> dict:
        return {"record": "200", "qrs_true_positives": 100, "qrs_false_negatives": 0, "qrs_false_positives": 0,
                "v_true_positives": true_positives, "v_false_negatives": false_negatives,
                "v_false_positives": false_positives, "v_true_negatives": 100 - true_positives - false_negatives}

    runs = []
    for seed, numbers in ((0, (40, 10, 0)), (1, (20, 30, 10))):
        fold = {"record": "200", "threshold": 0.5 + seed / 10, "counts": counts(*numbers),
                "rates": rates(counts(*numbers)), "counts_at_0_5": counts(*numbers)}
        pooled = pooled_counts([fold["counts"]])
        runs.append({"seed": seed, "folds": [fold], "pooled": {"counts": pooled, "rates": rates(pooled)},
                     "pooled_at_0_5": {"counts": pooled, "rates": rates(pooled)}})
    folds, pooled, at_half = over_seeds(runs)
    assert folds[0]["counts"]["v_true_positives"] == 60 and folds[0]["counts"]["qrs_true_positives"] == 200
    assert folds[0]["rates"]["v_sensitivity"] == pytest.approx(0.6)  # 60 of the 100 V beats the two seeds saw
    assert folds[0]["by_seed"] == {"v_sensitivity": [0.8, 0.4], "v_positive_predictivity": [1.0, 2 / 3],
                                   "threshold": [0.5, 0.6]}
    assert pooled["record"] == "pooled" and pooled["by_seed"]["v_sensitivity"] == [0.8, 0.4]
    assert at_half["counts"]["v_false_positives"] == 10
    table = by_seed_table(folds, pooled, [0, 1])
    assert "| 200 | 80.0 / 40.0 | 100.0 / 66.7 | 0.500 / 0.600 |" in table


def test_fold_seeds_of_seed_zero_are_the_fold_indices_and_other_seeds_never_reuse_them():
    assert [fold_seed(0, index) for index in range(10)] == list(range(10))
    assert not {fold_seed(1, index) for index in range(10)} & {fold_seed(0, index) for index in range(10)}


def test_markdown_table_rows():
    counts = {"record": "100", "qrs_true_positives": 99, "qrs_false_negatives": 1, "qrs_false_positives": 0,
              "v_true_positives": 9, "v_false_negatives": 1, "v_false_positives": 1, "v_true_negatives": 88}
    table = markdown_table([{"counts": counts, "rates": rates(counts), "threshold": 0.25}],
                           {"counts": {**counts, "record": "pooled"}, "rates": rates(counts)})
    assert "| 100 | 100 | 10 | 99.0 | 100.0 | 90.0 | 90.0 | 1.1 | 9 / 1 / 1 | 0.250 |" in table
    assert table.splitlines()[-1].startswith("| **pooled** |")


def test_seeds_are_whole_numbers_from_zero():
    from pipeline.benchmark.ecg_pvc_loro import LoroConfig, main, run_loro
    from pipeline.errors import UsageError

    with pytest.raises(UsageError, match="one or more whole numbers"):
        run_loro(["gated-template+rr"], LoroConfig(seeds=()))
    with pytest.raises(SystemExit) as exited:
        main(["--seeds", "-1"])
    assert exited.value.code == 2
