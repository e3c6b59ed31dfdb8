"""Where a user's test examples come from: the optional ``test_sources`` and ``train_sources`` of their ``.npz``.

The evidence rule (``pipeline/clinical/evidence.py``) asks every class for real test examples from at least two
recordings or subjects that no training example came from. edgemed never sees a user's training data, so a
``.npz`` that only holds test rows cannot show that: many beats of one patient, or test rows from the patients the
model was trained on, would pass as independent evidence. Two optional keys say it:

| key | content |
|---|---|
| ``test_sources`` | 1-D strings or integers, one per test row: the recording or subject the row was cut from |
| ``train_sources`` | 1-D strings or integers: every recording or subject that trained the model (repeats allowed) |

With ``test_sources`` the rule counts each class's distinct sources; with ``train_sources`` too, a test source that
also trained the model is not independent. ``train_sources`` alone cannot be judged (``DataError``).

The ids may be hospital record numbers: they never leave this module. The data stage's provenance (copied into the
manifest) holds opaque numbers instead — ``source 1``, ``source 2``, … in order of first appearance in
``test_sources`` — with each class's examples per number and which numbers also trained the model; an error names
a row's index or an array's dtype, never an id.

This module must not import tensorflow, keras or onnx.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.clinical.evidence import WHOLE_SPLIT, ClassSources
from pipeline.errors import DataError
from runtime.contract import TaskKind

SOURCE_KEYS = ("test_sources", "train_sources")
PROVENANCE_KEY = "test_sources"  # the data stage's provenance entry (opaque numbers and counts only)
MAX_ID_CHARACTERS = 256
_FIX = "numpy.savez(..., test_sources=numpy.array(recording_of_each_test_row), train_sources=numpy.array(...))"


def _ids(contents: Mapping[str, np.ndarray], key: str) -> list[str]:
    """The ids under ``key`` as text (an integer id 7 and the text "7" are the same source), checked."""
    values = np.asarray(contents[key])
    if values.ndim != 1 or values.dtype.kind not in "USiu":
        raise DataError(f"{key} is a {values.dtype} array of shape {values.shape}",
                        expected="a 1-D array of strings or integers: recording or subject ids",
                        fix=f"numpy.savez(..., {key}=numpy.array(['rec-01', 'rec-01', 'rec-02', ...]))")
    if values.size == 0:
        raise DataError(f"{key} is empty", expected="one id per row (test_sources) or per training source",
                        fix=f"fill {key}, or leave both source keys out (independence is then reported unverified)")
    ids = [value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value) for value in values.tolist()]
    bad = next((index for index, text in enumerate(ids) if not text.strip() or len(text) > MAX_ID_CHARACTERS), None)
    if bad is not None:
        raise DataError(f"{key}[{bad}] is empty or longer than {MAX_ID_CHARACTERS} characters",
                        expected="a non-empty recording or subject id", fix=f"fix row {bad} of {key}")
    return ids


def class_rows(kind: TaskKind, labels: np.ndarray | None, names: Sequence[str], rows: int) -> dict[str, np.ndarray]:
    """Per class (as ``evidence.class_test_counts`` counts them), a boolean mask over the test rows: a class's rows
    (multiclass, binary, labelled anomaly), a label's positive rows (multilabel), or every row under ``WHOLE_SPLIT``
    (regression, unlabelled anomaly)."""
    if labels is None or kind is TaskKind.REGRESSION:
        return {WHOLE_SPLIT: np.ones(rows, dtype=bool)}
    values = np.asarray(labels)
    if kind is TaskKind.MULTILABEL:
        return {name: values.reshape(rows, -1)[:, column] == 1 for column, name in enumerate(names)}
    return {name: values == index for index, name in enumerate(names)}


def opaque_test_groups(contents: Mapping[str, np.ndarray], rows: int) -> np.ndarray | None:
    """Each test row's source as its opaque number (``source 1``, ``source 2``, … in order of first appearance, as
    the provenance numbers them): the groups the evaluation's bootstrap resamples whole (the ids never leave this
    module). None without ``test_sources``; ``sources_provenance`` checks them."""
    if "test_sources" not in contents:
        return None
    tested = _ids(contents, "test_sources")
    if len(tested) != rows:
        return None  # sources_provenance refuses it with the message
    numbers: dict[str, int] = {}
    for text in tested:
        numbers.setdefault(text, len(numbers) + 1)
    return np.asarray([f"source {numbers[text]}" for text in tested])


def sources_provenance(contents: Mapping[str, np.ndarray], kind: TaskKind, labels: np.ndarray | None,
                       names: Sequence[str], rows: int) -> dict[str, Any] | None:
    """The provenance entry for ``test_sources`` (None when the ``.npz`` has neither key): per class, examples per
    opaque source number; the numbers that also trained the model; whether the training's sources were given."""
    if "test_sources" not in contents:
        if "train_sources" in contents:
            raise DataError("the .npz has train_sources but no test_sources",
                            expected="test_sources (one id per test row) beside train_sources: the rule compares "
                            "the two", fix=_FIX)
        return None
    tested = _ids(contents, "test_sources")
    if len(tested) != rows:
        raise DataError(f"test_sources has {len(tested)} ids for {rows} test rows",
                        expected="one recording or subject id per test row, in the test rows' order", fix=_FIX)
    numbers: dict[str, int] = {}
    for text in tested:
        numbers.setdefault(text, len(numbers) + 1)
    column = np.asarray([numbers[text] for text in tested], dtype=np.int64)
    examples = {label: {str(number): int(count) for number, count in zip(*np.unique(column[mask], return_counts=True))}
                for label, mask in class_rows(kind, labels, names, rows).items()}
    trained = None
    if "train_sources" in contents:
        trained = sorted({numbers[text] for text in _ids(contents, "train_sources") if text in numbers})
    return {"sources": len(numbers), "examples": examples, "training_recorded": trained is not None,
            "in_training": trained or []}


def user_test_sources(provenance: Mapping[str, Any], counts: Mapping[str, int]) -> dict[str, ClassSources] | None:
    """``Scenario.test_sources`` for a user's data: each class's sources from the data stage's provenance entry
    (None when the ``.npz`` gave no ``test_sources``: independence is then reported unverified)."""
    entry = provenance.get(PROVENANCE_KEY)
    if not isinstance(entry, Mapping):
        return None
    trained = frozenset(f"source {number}" for number in entry["in_training"])
    recorded = bool(entry["training_recorded"])
    examples = entry["examples"]
    return {label: ClassSources({f"source {number}": count for number, count in examples.get(label, {}).items()},
                                trained, recorded) for label in counts}
