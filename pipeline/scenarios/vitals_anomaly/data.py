"""The UCR InternalBleeding16 series (aeon 1.6.0's copy), read as files, cut into model windows by time block.

aeon (BSD-3-Clause) is installed ``--no-deps`` as data only and never imported: its two CSVs
(``timestamp,value,is_anomaly``) are read with the device's own CSV reader (``runtime.readers``). The
TEST file is the whole series (7 501 points); the TRAIN file is its first 1 200 points — the archive's
anomaly-free training prefix — byte for byte (checked). One anomaly is labelled, samples 4187–4198
(``is_anomaly`` = 1; the UCR archive's original file name ``..._1200_4187_4199`` says the same).

The sample rate is not documented (module ``scenario``: a nominal 250 Hz). Windows are cut with
``runtime.windows.model_windows`` inside contiguous blocks of the series, a gap of at least one window
between blocks, so no window spans two splits; windows the quality checks flag are left out and counted.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from runtime.contract import InputSpec, WindowConfig, WindowNormalization
from runtime.contract.derived import Derivation
from runtime.features import FeatureKind
from runtime.hashing import sha256_file
from runtime.readers import read_signal, read_signal_csv
from runtime.windows import model_windows

SERIES_NAME = "135_UCR_Anomaly_InternalBleeding16"
AEON_VERSION = "1.6.0"
EXPECTED_SHA256 = {
    "TRAIN": "a531b6f4f556b17c0321d144c3f6b4a7bdf5e8464b2218566181702e77962c2b",
    "TEST": "fe26577b94896943e8205d04d56bf2511fe05c008df535a1ec3826adff3597e2",
}
TRAIN_PREFIX_SAMPLES = 1200  # the archive's anomaly-free training prefix (the TRAIN file)
SERIES_SAMPLES = 7501
LABEL_COLUMN = 2  # timestamp, value, is_anomaly
# Not documented by aeon or the archive (module ``scenario``): the rate the contract declares, nominal.
NOMINAL_RATE_HZ = 250.0


def data_folder() -> Path:
    """aeon's KDD-TSAD_135 folder (found without importing aeon)."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("aeon is not installed", expected=f"aeon=={AEON_VERSION} installed --no-deps as data",
                        fix=f"pip install --no-deps aeon=={AEON_VERSION} (make setup does)")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "KDD-TSAD_135"


def series_file(part: str) -> Path:
    """The TRAIN or TEST CSV."""
    return data_folder() / f"{SERIES_NAME}_{part}.csv"


@dataclass(frozen=True)
class UcrSeries:
    """The whole series (the TEST file) and its per-sample anomaly labels."""

    values: np.ndarray  # float64 (samples,), the archive's units (consistent with mmHg; not documented)
    anomalous: np.ndarray  # bool (samples,)
    sha256: dict[str, str]

    @property
    def anomaly_range(self) -> tuple[int, int]:
        """[first, last + 1) of the labelled anomaly."""
        indices = np.flatnonzero(self.anomalous)
        return int(indices[0]), int(indices[-1]) + 1


def load_series() -> UcrSeries:
    """Read and check both files: sha256, contiguous timestamps, 0/1 labels, TRAIN = the TEST prefix."""
    digests = {}
    for part, expected in EXPECTED_SHA256.items():
        path = series_file(part)
        if not path.is_file():
            raise DataError(f"{path} is missing", expected=f"aeon=={AEON_VERSION}'s copy of {SERIES_NAME}",
                            fix=f"pip install --no-deps aeon=={AEON_VERSION}")
        digests[part] = sha256_file(path)
        if digests[part] != expected:
            raise DataError(f"{path.name} has sha256 {digests[part]}", expected=expected,
                            fix=f"reinstall aeon=={AEON_VERSION} (another version ships other bytes)")
    test, train = series_file("TEST"), series_file("TRAIN")
    values = read_signal(test, sample_rate_hz=NOMINAL_RATE_HZ).samples
    labels = read_signal_csv(test, LABEL_COLUMN)
    stamps = read_signal_csv(test, 0)
    prefix = read_signal(train, sample_rate_hz=NOMINAL_RATE_HZ).samples
    problems = []
    if values.size != SERIES_SAMPLES or not np.array_equal(stamps, np.arange(values.size)):
        problems.append(f"{values.size} samples with non-contiguous timestamps")
    if not np.isin(labels, (0.0, 1.0)).all() or not labels.any():
        problems.append("labels other than 0/1, or no anomaly")
    if not np.array_equal(prefix, values[:TRAIN_PREFIX_SAMPLES]) or read_signal_csv(train, LABEL_COLUMN).any():
        problems.append("a TRAIN file that is not the anomaly-free first 1200 TEST samples")
    if problems:
        raise DataError(f"{SERIES_NAME}: " + "; ".join(problems), expected="the UCR series as aeon 1.6.0 ships it",
                        fix=f"reinstall aeon=={AEON_VERSION}")
    return UcrSeries(values, labels.astype(bool), digests)


@dataclass(frozen=True)
class BlockWindows:
    """The model windows of one block, with their labels and what was left out."""

    inputs: np.ndarray  # float32, shaped as the input spec
    starts: np.ndarray  # int64 start sample in the whole series
    labels: np.ndarray  # int64 0/1 (1: the window holds at least min_anomaly_samples anomalous samples)
    flagged: int  # windows the quality checks flagged (left out)
    ambiguous: int  # windows near the anomaly's boundary (left out)


@dataclass(frozen=True)
class LabelRule:
    """Which windows are anomalous, and which are too close to the labelled range to count either way."""

    min_anomaly_samples: int = 6  # anomalous: at least half of the 12 labelled samples inside the window
    # Ambiguous: fewer anomalous samples than that, or none but within this many samples of the range (the
    # waveform is still disturbed one sample after the labelled end: the boundary is not exact).
    boundary_margin_samples: int = 8


@dataclass(frozen=True)
class SeriesBlocks:
    """[start, end) of each split in the whole series (TEST file indexing); one window apart at least."""

    train: tuple[int, int] = (0, 1200)  # the archive's anomaly-free training prefix (the TRAIN file)
    validation: tuple[int, int] = (1328, 2300)  # early stopping on reconstruction loss
    calibration: tuple[int, int] = (2428, 3000)  # int8 calibration inputs only
    test: tuple[int, int] = (3128, 5400)  # the labelled anomaly (4187–4198) and ~9 s of normal pulses
    normal: tuple[int, int] = (5528, 7501)  # the alarm threshold at the target false-alarm rate

    def to_dict(self) -> dict[str, list[int]]:
        return {name: list(getattr(self, name)) for name in ("train", "validation", "calibration", "test", "normal")}


@dataclass(frozen=True)
class VitalsDataConfig:
    window_samples: int = 128  # 0.512 s at the nominal 250 Hz: about 70 % of one pulse
    hop_samples: int = 8  # a window every 32 ms (nominal): a 12-sample anomaly lies in ~16 windows
    normalization: WindowNormalization = WindowNormalization.NONE  # the graph scales (module docstring)
    blocks: SeriesBlocks = field(default_factory=SeriesBlocks)
    labels: LabelRule = field(default_factory=LabelRule)
    # The bootstrap's group: the windows starting in one block of this many samples (2 s at the nominal rate, a few
    # pulses) are resampled together, as windows a hop apart overlap almost wholly; the windows holding the one
    # labelled anomaly (~16) are one group of their own: one event.
    block_samples: int = 500
    data_sha256: str = EXPECTED_SHA256["TEST"]  # the series' version (part of every cache key)


def input_spec(config: VitalsDataConfig) -> InputSpec:
    """The one model input: a signal window the windowed stream cuts every hop at the nominal rate."""
    window = WindowConfig(hop_s=config.hop_samples / NOMINAL_RATE_HZ, normalization=config.normalization)
    return InputSpec("input", (None, config.window_samples, 1), FeatureKind.WAVEFORM, sample_rate_hz=NOMINAL_RATE_HZ,
                     derived=Derivation.signal_window(window))


def block_windows(series: UcrSeries, block: tuple[int, int], spec: InputSpec, rule: LabelRule) -> BlockWindows:
    """Windows cut inside ``block`` = [start, end) exactly as the device cuts them, labelled by ``rule``."""
    start, end = block
    cut = model_windows(series.values[start:end], spec)
    starts = cut.starts + start
    width = spec.window_samples
    first, last = series.anomaly_range
    inside = np.array([series.anomalous[begin:begin + width].sum() for begin in starts], dtype=np.int64)
    near = (starts < last + rule.boundary_margin_samples) & (starts + width > first - rule.boundary_margin_samples)
    positive = inside >= rule.min_anomaly_samples
    ambiguous = near & ~positive
    keep = cut.judged & ~ambiguous
    return BlockWindows(cut.inputs[keep], starts[keep], positive[keep].astype(np.int64),
                        flagged=int((~cut.judged).sum()), ambiguous=int((ambiguous & cut.judged).sum()))


def check_blocks(blocks: dict[str, tuple[int, int]], window_samples: int, total: int) -> None:
    """Blocks inside the series, in order, none overlapping, at least one window apart."""
    ordered = sorted(blocks.items(), key=lambda item: item[1][0])
    for name, (start, end) in ordered:
        if not 0 <= start < end <= total or end - start < window_samples:
            raise DataError(f"the {name} block [{start}, {end}) of a {total}-sample series",
                            expected=f"a block inside the series of at least one window ({window_samples} samples)",
                            fix="move the block")
    for (before, (_, end)), (after, (start, _)) in pairwise(ordered):
        if start - end < window_samples:
            raise DataError(f"the {before} block ends at {end} and the {after} block starts at {start}",
                            expected=f"a gap of at least one window ({window_samples} samples) between blocks",
                            fix="leave a window's gap so no window spans two splits")
