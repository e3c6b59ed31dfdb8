"""Split making and the checks that stop bad data before any stage runs."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.splits import DataSplits, Split, load_splits, save_splits, split_by_group, split_indices, validate_split

FRACTIONS = {"train": 0.6, "validation": 0.15, "calibration": 0.1, "test": 0.15}


def test_stratified_split_is_a_seed_fixed_partition_keeping_class_balance():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    first = split_indices(labels, FRACTIONS, seed=3)
    again = split_indices(labels, FRACTIONS, seed=3)
    other = split_indices(labels, FRACTIONS, seed=4)
    assert all(np.array_equal(first[name], again[name]) for name in FRACTIONS)
    assert not np.array_equal(first["test"], other["test"])
    combined = np.sort(np.concatenate(list(first.values())))
    assert np.array_equal(combined, np.arange(len(labels)))
    test_balance = np.bincount(labels[first["test"]]) / len(first["test"])
    assert np.allclose(test_balance, [0.6, 0.3, 0.1], atol=0.01)


def test_group_split_never_puts_one_record_in_two_splits():
    groups = np.repeat(np.arange(20), 50)
    parts = split_by_group(groups, FRACTIONS, seed=0)
    seen = [set(groups[rows]) for rows in parts.values()]
    for index, first in enumerate(seen):
        for second in seen[index + 1 :]:
            assert not first & second
    assert sum(len(rows) for rows in parts.values()) == len(groups)
    assert all(len(rows) > 0 for rows in parts.values())


def test_fractions_must_sum_to_one():
    with pytest.raises(DataError, match=r"sum to 0\.900"):
        split_indices(np.zeros(10, int), {"train": 0.5, "test": 0.4}, seed=0)


def test_nan_is_reported_with_count_and_rows():
    inputs = np.zeros((10, 4), np.float32)
    inputs[3, 1] = np.nan
    inputs[7, 0] = np.inf
    with pytest.raises(DataError) as error:
        validate_split("test", Split(inputs, np.zeros(10, np.int64)), (4,), 2)
    message = str(error.value)
    assert "2 NaN/inf values in 2 rows" in message and "[3, 7]" in message and "Fix:" in message


@pytest.mark.parametrize(
    ("inputs", "labels", "needle"),
    [
        (np.zeros((5, 3), np.float32), np.zeros(5, np.int64), "shape (5, 3)"),
        (np.zeros((5, 4), np.int32), np.zeros(5, np.int64), "dtype int32"),
        (np.zeros((5, 4), np.float32), np.zeros((5, 2), np.int64), "labels of shape"),
        (np.zeros((5, 4), np.float32), np.full(5, 7, np.int64), "outside 0..1"),
    ],
)
def test_shape_dtype_and_label_errors_say_what_is_wrong(inputs, labels, needle):
    with pytest.raises(DataError, match="Expected:") as error:
        validate_split("train", Split(inputs, labels), (4,), 2)
    assert needle in str(error.value)


def test_splits_round_trip_through_npz(tmp_path):
    rng = np.random.default_rng(0)
    parts = {name: Split(rng.normal(size=(4, 3)).astype(np.float32), np.arange(4) % 2) for name in FRACTIONS}
    splits = DataSplits(**parts, class_names=("a", "b"))
    save_splits(splits, tmp_path / "s.npz")
    loaded = load_splits(tmp_path / "s.npz", {"synthetic": True})
    assert loaded.class_names == ("a", "b") and loaded.provenance == {"synthetic": True}
    assert np.array_equal(loaded.test.inputs, splits.test.inputs)
    assert loaded.class_balance()["train"] == {"a": 2, "b": 2}
