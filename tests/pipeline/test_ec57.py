"""AAMI EC57-style beat matching and scoring on hand-made annotation/detection pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.validation import ec57
from pipeline.validation.real_ecg import match_beats as real_ecg_match_beats
from runtime.ecg.beat_matching import MatchError

REFERENCE = np.array([1.0, 2.0, 3.0, 4.0, 5.0])


def pairs(match) -> list[tuple[int, int]]:
    return list(zip(match.reference.tolist(), match.detected.tolist()))


def test_exact_detections_all_match():
    match = ec57.match_beats(REFERENCE, REFERENCE.copy(), 0.15)
    assert pairs(match) == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)]
    assert match.unmatched_reference.size == match.unmatched_detected.size == 0
    counts = ec57.score_record("exact", REFERENCE, REFERENCE)
    assert (counts.qrs_true_positives, counts.qrs_false_negatives, counts.qrs_false_positives) == (5, 0, 0)


def test_shift_inside_the_tolerance_matches_and_outside_does_not():
    inside = ec57.score_record("in", REFERENCE, REFERENCE + 0.149)
    assert (inside.qrs_true_positives, inside.qrs_false_negatives, inside.qrs_false_positives) == (5, 0, 0)
    edge = ec57.score_record("edge", REFERENCE, REFERENCE - 0.15)  # the tolerance is inclusive
    assert edge.qrs_true_positives == 5
    outside = ec57.score_record("out", REFERENCE, REFERENCE + 0.151)
    assert (outside.qrs_true_positives, outside.qrs_false_negatives, outside.qrs_false_positives) == (0, 5, 5)
    in_samples = ec57.match_beats(np.array([360, 720]), np.array([414, 775]), 54)  # ±150 ms at 360 Hz
    assert pairs(in_samples) == [(0, 0)] and in_samples.unmatched_detected.tolist() == [1]


def test_extra_and_missed_beats():
    detected = np.array([1.02, 2.5, 3.01, 5.0, 6.0])  # 2.0 and 4.0 missed; 2.5 and 6.0 extra
    match = ec57.match_beats(REFERENCE, detected, 0.15)
    assert pairs(match) == [(0, 0), (2, 2), (4, 3)]
    assert match.unmatched_reference.tolist() == [1, 3]
    assert match.unmatched_detected.tolist() == [1, 4]
    rates = ec57.rates(ec57.score_record("r", REFERENCE, detected))
    assert rates["qrs_sensitivity"] == pytest.approx(3 / 5)
    assert rates["qrs_positive_predictivity"] == pytest.approx(3 / 5)


def test_two_detections_near_one_reference_give_one_match_and_one_false_detection():
    match = ec57.match_beats(np.array([10.0]), np.array([9.95, 10.03]), 0.15)
    assert pairs(match) == [(0, 1)]  # the nearer one
    assert match.unmatched_detected.tolist() == [0]
    tie = ec57.match_beats(np.array([100]), np.array([110, 90]), 15)  # equally near: the earlier detection
    assert pairs(tie) == [(0, 1)]


def test_one_detection_between_two_references_is_used_once():
    match = ec57.match_beats(np.array([100, 120]), np.array([110]), 15)  # sample indices: an exact tie
    assert pairs(match) == [(0, 0)]  # a tie goes to the earlier reference beat
    assert match.unmatched_reference.tolist() == [1]
    nearer = ec57.match_beats(np.array([100, 120]), np.array([112]), 15)
    assert pairs(nearer) == [(1, 0)]


def test_nearest_pair_first_rather_than_reference_order():
    # reference 1.0 could take 1.1, but 1.1 is nearer to reference 1.15, which has nothing else
    match = ec57.match_beats(np.array([1.0, 1.15]), np.array([0.9, 1.1]), 0.15)
    assert pairs(match) == [(0, 0), (1, 1)]


def test_input_order_does_not_change_the_matches():
    generator = np.random.default_rng(0)
    reference = np.sort(generator.uniform(0, 100, 120))
    detected = np.concatenate([reference + generator.normal(0, 0.08, reference.size), generator.uniform(0, 100, 15)])
    sorted_match = ec57.match_beats(reference, np.sort(detected), 0.15)
    shuffled = generator.permutation(detected.size)
    shuffled_match = ec57.match_beats(reference, detected[shuffled], 0.15)
    as_times = sorted(detected[shuffled][shuffled_match.detected].tolist())
    assert as_times == sorted(np.sort(detected)[sorted_match.detected].tolist())


def test_v_class_counts_end_to_end():
    reference = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    reference_v = np.array([False, True, False, True, True, False])
    detected = np.array([1.0, 2.0, 3.0, 4.05, 6.0, 7.0, 8.0])  # 5.0 (a V) missed; 7.0 and 8.0 false detections
    detected_v = np.array([False, True, True, False, False, True, False])
    counts = ec57.score_record("v", reference, detected, reference_v, detected_v)
    assert counts.v_true_positives == 1  # 2.0
    assert counts.v_false_negatives == 2  # 4.0 called non-V, 5.0 not detected
    assert counts.v_false_positives == 2  # 3.0 (non-V called V) and 7.0 (false detection called V)
    assert counts.v_true_negatives == 3  # 1.0, 6.0 and the false detection 8.0
    rates = ec57.rates(counts)
    assert rates["v_sensitivity"] == pytest.approx(1 / 3)
    assert rates["v_positive_predictivity"] == pytest.approx(1 / 3)
    assert rates["v_false_positive_rate"] == pytest.approx(2 / 5)
    assert (counts.qrs_true_positives, counts.qrs_false_negatives, counts.qrs_false_positives) == (5, 1, 2)


def test_undefined_rates_are_none():
    counts = ec57.score_record("no v", REFERENCE, REFERENCE)
    rates = ec57.rates(counts)
    assert rates["v_sensitivity"] is None and rates["v_positive_predictivity"] is None
    assert rates["v_false_positive_rate"] == 0.0


def test_gross_pools_counts_and_per_record_results_are_kept():
    first = ec57.score_record("a", REFERENCE, REFERENCE, REFERENCE > 4.5, REFERENCE > 4.5)
    second = ec57.score_record("b", REFERENCE, REFERENCE[:3], REFERENCE > 0, np.ones(3, dtype=bool))
    gross = ec57.gross_counts([first, second])
    assert gross.qrs_true_positives == 8 and gross.qrs_false_negatives == 2
    assert gross.v_true_positives == 4 and gross.v_false_negatives == 2
    summary = ec57.summarise([first, second], ec57.Ec57Config(replicates=200))
    assert [row["record"] for row in summary["per_record"]] == ["a", "b"]
    assert summary["per_record"][1]["v_sensitivity"] == pytest.approx(3 / 5)
    assert summary["gross"]["v_sensitivity"] == pytest.approx(4 / 6)
    assert summary["gross"]["qrs_sensitivity"] == pytest.approx(8 / 10)


def test_bootstrap_over_records_is_seeded_and_brackets_the_gross_value():
    generator = np.random.default_rng(5)
    counts = []
    for record in range(12):
        reference = np.arange(1.0, 201.0)
        is_v = generator.random(reference.size) < 0.2
        called = np.where(generator.random(reference.size) < 0.9, is_v, ~is_v)
        counts.append(ec57.score_record(str(record), reference, reference, is_v, called))
    config = ec57.Ec57Config(replicates=500, seed=3)
    intervals = ec57.bootstrap_intervals(counts, config)
    assert intervals == ec57.bootstrap_intervals(counts, config)
    assert intervals != ec57.bootstrap_intervals(counts, ec57.Ec57Config(replicates=500, seed=4))
    gross = ec57.rates(ec57.gross_counts(counts))
    for name in ("v_sensitivity", "v_positive_predictivity", "v_false_positive_rate"):
        low, high = intervals[name]
        assert low <= gross[name] <= high and high - low < 0.2
    assert intervals["qrs_sensitivity"] == (1.0, 1.0)
    with pytest.raises(DataError, match="no records"):
        ec57.bootstrap_intervals([])


def test_undefined_replicates_are_left_out_of_intervals():
    no_v = ec57.score_record("n", REFERENCE, REFERENCE)
    intervals = ec57.bootstrap_intervals([no_v, no_v], ec57.Ec57Config(replicates=50))
    assert intervals["v_sensitivity"] is None
    assert not math.isnan(intervals["v_false_positive_rate"][0])


def test_bad_inputs_are_refused():
    with pytest.raises(MatchError, match="tolerance"):
        ec57.match_beats(REFERENCE, REFERENCE, -1)
    with pytest.raises(MatchError, match="finite"):
        ec57.match_beats(np.array([1.0, np.nan]), REFERENCE, 0.15)
    with pytest.raises(DataError, match="booleans"):
        ec57.score_record("x", REFERENCE, REFERENCE, np.ones(5), np.ones(5, dtype=bool))


def test_real_ecg_validation_uses_the_same_matcher():
    reference = np.array([1.0, 2.0, 3.0, 4.0])
    detected = np.array([1.05, 1.1, 2.2, 3.14, 5.0])
    true_positives, false_negatives, false_positives, errors = real_ecg_match_beats(reference, detected, 0.15)
    match = ec57.match_beats(reference, detected, 0.15)
    assert true_positives == match.reference.size == 2
    assert (false_negatives, false_positives) == (2, 3)
    assert errors == pytest.approx([0.05, 0.14])
