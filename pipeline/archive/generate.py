"""Write an archive from annotated recordings: excerpts, sidecars, an index, and deliberately corrupt files on request.

``plan_excerpts`` spreads N excerpts of S seconds evenly over the source recordings (each source gets N / sources,
the remainder to the first ones; starts evenly spaced from 0 to the last possible start, so excerpts of one source
overlap when N × S exceeds the sources' length — ``overlap_s`` says by how much). ``write_archive`` writes them into
a staging folder beside the destination and renames it into place when complete: a killed generator leaves no
half archive. The source data is the caller's (the CLI cuts the vendored MIT-BIH records): this room does not
import the scenarios.
"""

from __future__ import annotations

import itertools
import math
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from pipeline.archive.layout import ANNOTATIONS_SUFFIX, INDEX_NAME, ArchiveError, write_annotations, write_index
from pipeline.errors import DataError


class SignalFormat(StrEnum):
    NPY = "npy"  # float32 samples (numpy.save)
    CSV = "csv"  # one 'ecg' column, three decimals


class Corruption(StrEnum):
    """Deliberately bad files, for tests and demonstrations (each fails its recording alone)."""

    TRUNCATED_NPY = "truncated-npy"  # an .npy whose header claims more samples than the file holds
    TEXT_CSV = "text-csv"  # a .csv whose 'ecg' column holds words
    BAD_ANNOTATIONS = "bad-annotations"  # a good signal whose sidecar is not JSON
    MISSING_FILE = "missing-file"  # listed in the index, absent from the folder


@dataclass(frozen=True)
class ExcerptPlan:
    source: str  # the source recording's name
    start_s: float
    seconds: float


@dataclass(frozen=True)
class ArchiveRecording:
    """One recording to write: a single lead and (optionally) its reference beats."""

    name: str
    signal: np.ndarray  # (samples,)
    sample_rate_hz: float
    beat_samples: np.ndarray | None = None  # reference beats (sample indices), or None: no sidecar
    labels: Sequence[str] | None = None  # one per beat
    group: str | None = None
    extra: dict | None = None  # more fields for its index entry (e.g. the source record and start)


def plan_excerpts(durations_s: dict[str, float], count: int, seconds: float) -> list[ExcerptPlan]:
    """``count`` excerpts of ``seconds`` spread over the sources (name → duration), in source order."""
    if count < 1 or not math.isfinite(seconds) or seconds <= 0 or not durations_s:
        raise DataError(f"{count} excerpts of {seconds} s from {len(durations_s)} sources",
                           expected="at least one excerpt, a positive length and one source",
                           fix="ask for --recordings ≥ 1 and --seconds > 0")
    short = [name for name, duration in durations_s.items() if duration < seconds]
    if short:
        raise DataError(f"source(s) {', '.join(short)} are shorter than {seconds} s",
                           expected=f"sources of at least {seconds} s", fix="ask for shorter excerpts")
    sources = list(durations_s)
    plans = []
    for position, name in enumerate(sources):
        per_source = count // len(sources) + (position < count % len(sources))
        last_start = durations_s[name] - seconds
        for index in range(per_source):
            start = 0.0 if per_source == 1 else last_start * index / (per_source - 1)
            plans.append(ExcerptPlan(name, math.floor(start * 1000) / 1000, seconds))
    return plans


def overlap_s(plans: Sequence[ExcerptPlan]) -> float:
    """The largest overlap between two excerpts of one source (0: none overlap)."""
    worst = 0.0
    for first, second in itertools.pairwise(plans):
        if first.source == second.source:
            worst = max(worst, first.start_s + first.seconds - second.start_s)
    return round(worst, 3)


def _write_signal(folder: Path, name: str, signal: np.ndarray, signal_format: SignalFormat) -> str:
    file_name = f"{name}.{signal_format.value}"
    if signal_format is SignalFormat.NPY:
        np.save(folder / file_name, np.asarray(signal, dtype=np.float32))
    else:
        text = "\n".join(f"{value:.3f}" for value in np.asarray(signal, dtype=np.float64).tolist())
        (folder / file_name).write_text("ecg\n" + text + "\n")
    return file_name


def _write_corrupt(folder: Path, kind: Corruption, number: int, template: ArchiveRecording) -> dict:
    """One deliberately bad recording of ``kind``; its index entry."""
    name = f"corrupt-{number:02d}-{kind.value}"
    entry = {"name": name, "file": f"{name}.npy", "sample_rate_hz": template.sample_rate_hz, "annotations": None,
             "group": "corrupt"}
    if kind is Corruption.TRUNCATED_NPY:
        np.save(folder / entry["file"], np.asarray(template.signal, dtype=np.float32))
        data = (folder / entry["file"]).read_bytes()
        (folder / entry["file"]).write_bytes(data[: len(data) // 2])
    elif kind is Corruption.TEXT_CSV:
        entry["file"] = f"{name}.csv"
        (folder / entry["file"]).write_text("ecg\n" + "\n".join(["lead-off"] * 1000) + "\n")
    elif kind is Corruption.BAD_ANNOTATIONS:
        np.save(folder / entry["file"], np.asarray(template.signal, dtype=np.float32))
        entry["annotations"] = f"{name}{ANNOTATIONS_SUFFIX}"
        (folder / entry["annotations"]).write_text('{"format": "edgemed-beat-annotations", "beat_samples": [1, 2,')
    return entry


def write_archive(destination: Path, recordings: Iterable[ArchiveRecording], description: str,
                  source: dict | None = None, signal_format: SignalFormat = SignalFormat.NPY,
                  corrupt: int = 0) -> Path:
    """Write the recordings (and ``corrupt`` bad files, cycling through ``Corruption``) as an archive at
    ``destination``, which must not exist or be empty; return the index path."""
    destination = Path(destination)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise ArchiveError(f"{destination} already exists and is not an empty folder",
                           expected="a new or empty folder for the archive",
                           fix="choose another --output, or delete the old archive first")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))
    except OSError as problem:
        raise ArchiveError(f"the archive folder {destination} cannot be made ({problem.strerror or problem})",
                           expected="a path inside a folder that can be written",
                           fix="choose another --output") from None
    try:
        entries, template = [], None
        for recording in recordings:
            entry = {"name": recording.name,
                     "file": _write_signal(staging, recording.name, recording.signal, signal_format),
                     "sample_rate_hz": float(recording.sample_rate_hz), "annotations": None, "group": recording.group}
            if recording.beat_samples is not None:
                entry["annotations"] = f"{recording.name}{ANNOTATIONS_SUFFIX}"
                write_annotations(staging / entry["annotations"], recording.sample_rate_hz, recording.beat_samples,
                                  recording.labels or ())
            entries.append({**entry, **(recording.extra or {})})
            template = template or recording
        if template is None:
            raise ArchiveError("no recording to write", expected="at least one recording",
                               fix="ask for --recordings ≥ 1")
        kinds = list(Corruption)
        entries += [_write_corrupt(staging, kinds[number % len(kinds)], number, template) for number in range(corrupt)]
        write_index(staging, entries, description, source)
        if destination.exists():
            destination.rmdir()  # empty, checked above
        staging.rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination / INDEX_NAME
