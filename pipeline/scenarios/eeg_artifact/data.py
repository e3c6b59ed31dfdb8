"""Labelled EEG windows: which part of which recording goes to which split, and which windows are kept.

Labels are COARSE: the source labels whole files only ("contains movement artefacts", "noisy data with
electromagnetic origin", or an ordinary acquisition). Inside a movement file most of the time is ordinary EEG, and
an ordinary file can hold a blink or a knock. So every window is screened by a documented amplitude rule on its
raw counts at the model rate (``EvidenceConfig``; the model never sees amplitude, its windows are z-scored) and kept
only when the screen agrees with its file's label: a clean file's window must look like EEG, a movement file's must
show a large excursion, an electromagnetic file's must carry no EEG-sized signal. Disagreeing windows are
ambiguous: in no split, counted per part in the provenance.

Splits are by file where the data allows and otherwise by contiguous time blocks of one file with a gap of at least
one window between blocks (``EegDataConfig`` refuses less): no window, and no overlap of windows, spans two splits.
Movement is tested on a recording (``seg2``) that nothing else uses; the one electromagnetic recording (``seg3``)
is cut into four time blocks, so its test figure is within-recording. Every window is cut, quality-flagged and
z-scored by ``runtime.windows.model_windows`` (the device's code); flagged windows are in no split and counted.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.errors import DataError
from pipeline.scenarios.eeg_artifact.recordings import EegRecording, at_model_rate, recording
from pipeline.splits import SPLIT_NAMES, Split
from runtime.contract import Derivation, InputSpec
from runtime.windows import cut_windows, model_windows

CLASS_NAMES = ("clean", "movement", "electromagnetic")


@dataclass(frozen=True)
class RecordingPart:
    """A contiguous stretch of one recording, its file-level label and its split."""

    stem: str  # the recording (``recordings.RECORDINGS``)
    label: str  # one of CLASS_NAMES: what the source says about the whole file
    split: str  # one of SPLIT_NAMES
    start_s: float = 0.0
    end_s: float | None = None  # None: to the end of the recording

    def __post_init__(self) -> None:
        recording(self.stem)
        if self.label not in CLASS_NAMES or self.split not in SPLIT_NAMES:
            raise DataError(f"part {self.describe()} has label '{self.label}' and split '{self.split}'",
                            expected=f"a label of {CLASS_NAMES} and a split of {SPLIT_NAMES}",
                            fix="name a known class and split")
        if self.start_s < 0 or (self.end_s is not None and self.end_s <= self.start_s):
            raise DataError(f"part {self.describe()} has an empty or negative time range",
                            expected="0 ≤ start_s < end_s", fix="fix the part's times")

    def describe(self) -> str:
        end = "end" if self.end_s is None else f"{self.end_s:g} s"
        return f"{self.stem} [{self.start_s:g} s – {end}]"


def _parts(label: str, stems_by_split: dict[str, tuple[str, ...]]) -> tuple[RecordingPart, ...]:
    return tuple(RecordingPart(stem, label, split) for split, stems in stems_by_split.items() for stem in stems)


DEFAULT_PARTS: tuple[RecordingPart, ...] = (
    # clean: whole files (three devices in train and in test); the eyes-open/closed file also gives calibration
    RecordingPart("eeg_sample_closed_open_eyes", "clean", "train", 0.0, 198.0),
    RecordingPart("eeg_sample_closed_open_eyes", "clean", "calibration", 200.0),
    *_parts("clean", {"train": ("eeg_sample_0cm_h", "eeg_sample_1cm_v", "eeg_sample_2cm_v"),
                      "validation": ("eeg_sample_2cm_h",),
                      "test": ("eeg_sample_o", "eeg_sample_1cm_h", "eeg_sample_0cm_v")}),
    # movement: seg2 is the test recording; seg1 is cut into train, validation and calibration blocks
    RecordingPart("eeg_sample_artefacts_seg1", "movement", "train", 0.0, 95.0),
    RecordingPart("eeg_sample_artefacts_seg1", "movement", "validation", 97.0, 110.0),
    RecordingPart("eeg_sample_artefacts_seg1", "movement", "calibration", 112.0),
    RecordingPart("eeg_sample_artefacts_seg2", "movement", "test"),
    # electromagnetic: the one recording, four time blocks
    RecordingPart("eeg_sample_artefacts_seg3", "electromagnetic", "train", 0.0, 48.0),
    RecordingPart("eeg_sample_artefacts_seg3", "electromagnetic", "validation", 50.0, 60.0),
    RecordingPart("eeg_sample_artefacts_seg3", "electromagnetic", "calibration", 62.0, 68.0),
    RecordingPart("eeg_sample_artefacts_seg3", "electromagnetic", "test", 70.0),
)


@dataclass(frozen=True)
class EvidenceConfig:
    """The amplitude screen that confirms a window's file-level label (raw counts at the model rate; 1 count ≈
    0.0011 µV). Set from the clean recordings, where it flags 55 of 689 windows at a 1 s hop (49 of them in 2cm_v, whose
    periodic sharp dips reach the ADC floor), and from the movement files' visible episodes."""

    movement_peak_to_peak: float = 40_000.0  # a window spanning ≥ 61 % of the ADC range (≈ 44 µV) is an excursion …
    movement_slow_std: float = 5_000.0  # … as is one whose < slow_below_hz component has this spread (≈ 5.5 µV)
    slow_below_hz: float = 2.0  # head and electrode movement is slow; EEG rhythms of interest are above it
    electromagnetic_peak_to_peak: float = 2_000.0  # below this (≈ 2 µV) the window carries no EEG-sized signal


MOVEMENT_LIKE, LOW_AMPLITUDE, EEG_LIKE = "movement-like", "no EEG-sized signal", "EEG-like"
EXPECTED_EVIDENCE = {"clean": EEG_LIKE, "movement": MOVEMENT_LIKE, "electromagnetic": LOW_AMPLITUDE}


def window_evidence(raw_windows: np.ndarray, rate_hz: float, config: EvidenceConfig) -> np.ndarray:
    """What the amplitude screen says of each raw window ``(n, samples, 1)``: one of the three evidence names."""
    values = np.asarray(raw_windows, dtype=np.float64)[:, :, 0]
    centred = values - values.mean(axis=1, keepdims=True)
    peak_to_peak = centred.max(axis=1) - centred.min(axis=1)
    spectrum = np.fft.rfft(centred, axis=1)
    frequencies = np.fft.rfftfreq(values.shape[1], 1.0 / rate_hz)
    slow = np.fft.irfft(np.where(frequencies < config.slow_below_hz, spectrum, 0.0), values.shape[1], axis=1)
    movement = (peak_to_peak >= config.movement_peak_to_peak) | (slow.std(axis=1) >= config.movement_slow_std)
    low = peak_to_peak < config.electromagnetic_peak_to_peak
    return np.where(movement, MOVEMENT_LIKE, np.where(low, LOW_AMPLITUDE, EEG_LIKE))


@dataclass(frozen=True)
class EegDataConfig:
    model_rate_hz: float = 250.0  # keeps the EM recording's 60–110 Hz energy (resampler pass band ≤ 112.5 Hz)
    window_s: float = 2.0  # 500 samples: a few alpha cycles and a whole movement excursion
    hop_s: float = 1.0  # the device decides every second; validation, calibration and test windows use it
    train_hop_s: float = 0.25  # training windows start this often (shifted copies; same cutting, flags, z-score)
    # The bootstrap's group: the windows of one recording starting in one block of this many seconds are resampled
    # together (overlapping windows, and the windows of one artefact episode, are not independent evidence).
    block_s: float = 10.0
    parts: tuple[RecordingPart, ...] = DEFAULT_PARTS
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)

    def __post_init__(self) -> None:
        for split in SPLIT_NAMES:
            labels = {part.label for part in self.parts if part.split == split}
            if split != "calibration" and labels != set(CLASS_NAMES):
                raise DataError(f"the {split} split has parts of {sorted(labels)} only",
                                expected=f"every class in train, validation and test: {CLASS_NAMES}",
                                fix="give the split a part of each class")
        for stem in {part.stem for part in self.parts}:
            blocks = sorted((part for part in self.parts if part.stem == stem), key=lambda part: part.start_s)
            for before, after in itertools.pairwise(blocks):
                if before.end_s is None or after.start_s - before.end_s < self.window_s:
                    raise DataError(
                        f"{before.describe()} ({before.split}) and {after.describe()} ({after.split}) are closer "
                        f"than one window", expected=f"a gap of at least {self.window_s:g} s between blocks of a "
                        "recording (no window, nor an overlap of windows, spans two splits)",
                        fix="end the earlier block one window before the next one starts")

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.model_rate_hz)


@dataclass(frozen=True)
class PartWindows:
    """The kept windows of one part and what was left out."""

    part: RecordingPart
    inputs: np.ndarray  # (kept, samples, 1) float32, z-scored as the device does
    labels: np.ndarray  # (kept,) int64
    summary: dict  # windows, quality_flagged, ambiguous, kept (what the provenance shows)
    groups: np.ndarray  # (kept,) text: the recording and the block_s block each window starts in


def part_windows(part: RecordingPart, signal: np.ndarray, spec: InputSpec, config: EegDataConfig) -> PartWindows:
    """Cut, flag and z-score one part with the device's code at its split's hop; keep the screened windows."""
    rate = float(spec.sample_rate_hz)
    if part.split == "train" and config.train_hop_s != config.hop_s:
        spec = replace(spec, derived=Derivation.signal_window(replace(spec.derived.window, hop_s=config.train_hop_s)))
    first = round(part.start_s * rate)
    last = signal.size if part.end_s is None else min(signal.size, round(part.end_s * rate))
    block = signal[first:last]
    windows = model_windows(block, spec)
    raw = cut_windows(block, spec.window_samples, spec.hop_samples)
    evidence = window_evidence(raw, rate, config.evidence)
    unflagged = windows.judged
    confirmed = evidence == EXPECTED_EVIDENCE[part.label]
    keep = unflagged & confirmed
    label = CLASS_NAMES.index(part.label)
    summary = {"file": recording(part.stem).file_name, "channel": recording(part.stem).channel,
               "label": part.label, "split": part.split, "from_s": part.start_s,
               "to_s": round(last / rate, 3), "hop_s": spec.derived.window.hop_s, "windows": int(keep.size),
               "quality_flagged": int(np.sum(~unflagged)), "ambiguous": int(np.sum(unflagged & ~confirmed)),
               "kept": int(np.sum(keep))}
    inputs = windows.inputs[keep]
    if inputs.ndim == 2:
        inputs = inputs[:, :, None]
    starts_s = (first + np.arange(keep.size) * spec.hop_samples) / rate
    blocks = np.floor(starts_s[keep] / config.block_s).astype(np.int64)
    groups = np.asarray([f"{part.stem}:{block}" for block in blocks.tolist()], dtype=str)
    return PartWindows(part, inputs.astype(np.float32), np.full(int(np.sum(keep)), label, dtype=np.int64), summary,
                       groups)


def load_signals(config: EegDataConfig) -> dict[str, np.ndarray]:
    """Every recording the parts use, at the model rate (each file read and resampled once)."""
    stems = sorted({part.stem for part in config.parts})
    return {stem: at_model_rate(recording(stem), config.model_rate_hz) for stem in stems}


def make_split(windows: list[PartWindows]) -> Split:
    if not windows:
        return Split(np.zeros((0, 0, 1), dtype=np.float32), np.zeros(0, dtype=np.int64))
    return Split(np.concatenate([item.inputs for item in windows]), np.concatenate([item.labels for item in windows]),
                 np.concatenate([item.groups for item in windows]))


def recordings_used(config: EegDataConfig) -> list[EegRecording]:
    return [recording(stem) for stem in sorted({part.stem for part in config.parts})]
