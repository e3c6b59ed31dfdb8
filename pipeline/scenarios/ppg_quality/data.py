"""The real PPG recordings, their labels, and the device's windows cut from them.

Files are read where ``pip`` installed them (``biosignalsnotebooks`` and ``heartpy`` are installed ``--no-deps``
as data and never imported), each checked against the sha256 ``catalogue`` records, read with the device's reader
(``runtime.readers.read_signal``: PLUX ``.h5`` as raw ADC counts, CSV columns as written), brought to the model
rate with the device's resampler (``runtime.resample``) and cut, flagged and z-scored by
``runtime.windows.model_windows`` — the code the windowed stream runs.

Labels are COARSE (``catalogue``: per file, and marked by eye inside the motion file): a window is an artefact when
it holds at least the minimum overlap of one marked episode, acceptable when it touches clean time only, and
otherwise used nowhere (``window_labels``).
"""

from __future__ import annotations

import csv
import importlib.util
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.scenarios.ppg_quality.catalogue import (
    UNLABELLED,
    RecordingSource,
    Segment,
    SegmentKind,
    TimeColumn,
    source,
)
from runtime.contract import InputSpec
from runtime.errors import IntegrityError
from runtime.hashing import sha256_file
from runtime.readers import read_signal
from runtime.resample import StreamingResampler
from runtime.windows import model_windows

logger = logging.getLogger(__name__)

ARTEFACT, CLEAN, EXCLUDED = 1, 0, -1  # window labels; EXCLUDED windows are in no split


def package_folder(package: str) -> Path:
    """Where pip installed ``package`` (found without importing it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"{package} is not installed", expected=f"{package} installed as data (pip --no-deps)",
                        fix=f"pip install --no-deps {package} (biosignalsnotebooks==0.6.14, heartpy==1.2.7)")
    return Path(next(iter(spec.submodule_search_locations)))


def recording_path(item: RecordingSource) -> Path:
    """The file of ``item``, refused unless its sha256 is the recorded one."""
    path = package_folder(item.package) / item.path
    if not path.is_file():
        raise DataError(f"{path} is missing", expected=f"{item.path} inside the installed {item.package}",
                        fix=f"reinstall {item.package} (pip install --no-deps --force-reinstall)")
    actual = sha256_file(path)
    if actual != item.sha256:
        raise IntegrityError(f"{path.name} has sha256 {actual}", expected=f"sha256 {item.sha256}",
                             fix=f"install the pinned {item.package} version; new data needs new annotations here")
    return path


def csv_rate_hz(path: Path, column: TimeColumn) -> float:
    """The mean sample rate of a CSV from its first (time) column."""
    with path.open(newline="", encoding="utf-8") as handle:
        cells = [row[0] for row in csv.reader(handle) if row][1:]
    if column is TimeColumn.MILLISECONDS:
        span_s = (float(cells[-1]) - float(cells[0])) / 1000.0
    else:
        span_s = (datetime.fromisoformat(cells[-1]) - datetime.fromisoformat(cells[0])).total_seconds()
    return (len(cells) - 1) / span_s


@dataclass(frozen=True)
class PpgRecording:
    source: RecordingSource
    signal: np.ndarray  # float64 (samples,) at the model rate, in the file's units (ADC counts)
    file_rate_hz: float
    model_rate_hz: float

    @property
    def duration_s(self) -> float:
        return self.signal.size / self.model_rate_hz


def load_recording(item: RecordingSource, model_rate_hz: float) -> PpgRecording:
    """``item`` read as the device reads it and resampled to ``model_rate_hz`` by the device's resampler."""
    path = recording_path(item)
    rate = item.sample_rate_hz
    if rate is None and item.time_column is not None:
        rate = csv_rate_hz(path, item.time_column)
    recording = read_signal(path, sample_rate_hz=rate, channel=item.channel)
    resampler = StreamingResampler(recording.sample_rate_hz, model_rate_hz)
    signal = np.concatenate([resampler.process(recording.samples), resampler.flush()])
    logger.info("%s: %d samples at %.3f Hz → %d at %g Hz", item.key, recording.samples.size,
                recording.sample_rate_hz, signal.size, model_rate_hz)
    return PpgRecording(item, signal, float(recording.sample_rate_hz), model_rate_hz)


def covering_segments(item: RecordingSource, duration_s: float) -> list[Segment]:
    """The marked segments of ``item``; time none covers has its default kind."""
    return fill_segments(item.segments, duration_s, item.default_kind)


def fill_segments(segments: tuple[Segment, ...], duration_s: float, default_kind: SegmentKind) -> list[Segment]:
    """``segments`` plus ``default_kind`` segments over the time between them, up to ``duration_s``."""
    ordered = sorted(segments, key=lambda segment: segment.start_s)
    filled, cursor = [], 0.0
    for segment in ordered:
        if segment.start_s > cursor:
            filled.append(Segment(cursor, segment.start_s, default_kind))
        cursor = max(cursor, segment.end_s)
    if cursor < duration_s:
        filled.append(Segment(cursor, duration_s, default_kind))
    return [*ordered, *filled]


def clean_stretches(item: RecordingSource, start_s: float, end_s: float,
                    duration_s: float) -> list[tuple[float, float]]:
    """The clean time of ``item`` between ``start_s`` and ``end_s``, as (start, end) stretches."""
    stretches = []
    for segment in covering_segments(item, duration_s):
        first, last = max(segment.start_s, start_s), min(segment.end_s, end_s)
        if segment.kind is SegmentKind.CLEAN and last > first:
            stretches.append((first, last))
    return sorted(stretches)


def window_labels(starts_s: np.ndarray, window_s: float, segments: list[Segment],
                  minimum_overlap_s: float) -> np.ndarray:
    """ARTEFACT when a window overlaps one artefact segment by ≥ ``minimum_overlap_s``; CLEAN when it touches
    clean time only; else EXCLUDED (a little artefact, or anything uncertain)."""
    starts = np.asarray(starts_s, dtype=np.float64)
    ends = starts + window_s

    def overlap(segment: Segment) -> np.ndarray:
        return np.clip(np.minimum(ends, segment.end_s) - np.maximum(starts, segment.start_s), 0.0, None)

    largest_artefact = np.zeros(starts.size)
    touched = np.zeros(starts.size, dtype=bool)  # by artefact or uncertain time
    for segment in segments:
        if segment.kind is SegmentKind.CLEAN:
            continue
        amount = overlap(segment)
        touched |= amount > 1e-9
        if segment.kind is SegmentKind.ARTEFACT:
            largest_artefact = np.maximum(largest_artefact, amount)
    labels = np.where(touched, EXCLUDED, CLEAN).astype(np.int8)
    labels[largest_artefact >= minimum_overlap_s - 1e-9] = ARTEFACT
    return labels


@dataclass(frozen=True)
class Block:
    """A contiguous stretch of one recording given whole to one split."""

    recording: str
    start_s: float = 0.0
    end_s: float | None = None  # None: to the end of the recording

    def bounds(self, duration_s: float) -> tuple[float, float]:
        return self.start_s, duration_s if self.end_s is None else min(self.end_s, duration_s)


@dataclass(frozen=True)
class BlockWindows:
    """The judged windows of one block (flagged ones are counted, not kept) with their labels."""

    inputs: np.ndarray  # float32 (n, samples, 1): z-scored as the device does
    labels: np.ndarray  # int8 (n,): ARTEFACT, CLEAN or EXCLUDED
    starts_s: np.ndarray  # float64 (n,): start of each window in the recording
    flagged: dict[str, int]  # windows the device's quality checks flagged, per flag


def block_windows(signal: np.ndarray, rate_hz: float, start_s: float, end_s: float, spec: InputSpec,
                  segments: list[Segment], minimum_overlap_s: float) -> BlockWindows:
    """``signal[start_s:end_s]`` cut by ``runtime.windows.model_windows`` and labelled by ``segments``."""
    first, last = round(start_s * rate_hz), round(end_s * rate_hz)
    cut = model_windows(signal[first:last], spec)
    starts_s = (first + cut.starts) / rate_hz
    flagged: dict[str, int] = {}
    for flags in cut.flags:
        for flag in flags:
            flagged[flag] = flagged.get(flag, 0) + 1
    judged = cut.judged
    inputs = cut.inputs if cut.inputs.ndim == 3 else cut.inputs[:, :, None]
    labels = window_labels(starts_s, spec.window_samples / rate_hz, segments, minimum_overlap_s)
    return BlockWindows(inputs[judged], labels[judged], starts_s[judged], flagged)


def check_blocks(assignment: dict[str, tuple[Block, ...]], window_s: float) -> None:
    """Refuse unknown recordings, overlapping blocks, and blocks of one session in two splits closer than a window."""
    placed: list[tuple[str, RecordingSource, Block]] = []
    for split, blocks in assignment.items():
        for block in blocks:
            item = source(block.recording)
            if item in UNLABELLED:
                raise DataError(f"{block.recording} in the {split} split has no labels",
                                expected="a labelled recording", fix="run unlabelled recordings after the build")
            end = np.inf if block.end_s is None else block.end_s
            for other_split, other, other_block in placed:
                if other.session != item.session:
                    continue
                other_end = np.inf if other_block.end_s is None else other_block.end_s
                gap = max(block.start_s - other_end, other_block.start_s - end)
                same_channel = other.key == item.key
                needed = window_s if other_split != split else (0.0 if same_channel else -np.inf)
                if gap < needed - 1e-9:
                    raise DataError(
                        f"{item.key} {block.start_s}–{block.end_s} s ({split}) and {other.key} "
                        f"{other_block.start_s}–{other_block.end_s} s ({other_split}) are {gap:g} s apart",
                        expected=f"blocks of one session in different splits at least one window ({window_s:g} s) "
                                 "apart, and no block overlapping another",
                        fix="move the block boundaries apart",
                    )
            placed.append((split, item, block))
