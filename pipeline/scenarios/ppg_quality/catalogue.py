"""The catalogue of real PPG recordings: where each file is, its sha256, device, what its source says, and the
times marked in it by eye (``Segment``) — the scenario's labels.

Labels are COARSE: the sources label whole files only. biosignalsnotebooks' ``bvp_motion_artifact`` says "a BVP
signal containing some motion artifacts"; inside its 30 s the two artefact episodes and the clean stretch were marked
here by eye after plotting the file, and everything else in it is uncertain. The rest files are taken as clean where
their source says rest and a plot agrees (their device start-up is marked uncertain). heartpy's ``data.csv`` has no
label; it was plotted and is clean. heartpy's ``data2.csv`` and ``data3.csv`` hold visible dropouts, flat stretches and
artefacts and stay unlabelled (``UNLABELLED``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pipeline.errors import DataError

SIGNAL_SAMPLES = "notebook_files/osf_files/signal_samples"


class SegmentKind(StrEnum):
    ARTEFACT = "artefact"  # motion artefact: the positive class
    CLEAN = "clean"  # an acceptable pulse wave: the negative class
    UNCERTAIN = "uncertain"  # neither with confidence: a window touching it is used nowhere


class TimeColumn(StrEnum):
    """How a CSV without a rate tells time (its rate is the mean over the file)."""

    MILLISECONDS = "milliseconds"  # heartpy data2.csv 'timer'
    DATETIME = "datetime"  # heartpy data3.csv 'datetime' (irregular stamps: the mean rate is used)


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    kind: SegmentKind


@dataclass(frozen=True)
class RecordingSource:
    """One channel of one file, what its source says about it, and the times marked in it."""

    key: str  # the name splits use
    package: str  # the installed package whose folder holds the file
    path: str  # the file inside that folder
    sha256: str  # of the file as installed
    session: str  # one acquisition: channels of one file share it
    device: str
    source_label: str  # what the source itself says about the file
    default_kind: SegmentKind  # the kind of any time no segment covers
    segments: tuple[Segment, ...] = ()
    channel: int | None = None  # HDF5 channel_N or CSV column; None: the only one
    sample_rate_hz: float | None = None  # a CSV's rate; None: the file's own (HDF5) or its time column
    time_column: TimeColumn | None = None


BSN, HEARTPY = "biosignalsnotebooks", "heartpy"
PLUX_HUB = "PLUX hub 00:07:80:79:6F:DB"
STARTUP = (Segment(0.0, 0.5, SegmentKind.UNCERTAIN),)  # the oximeter files start with two 0 samples
_OXIMETER = "pulse-oximeter raw channel (red or IR, inverted pulse), 16-bit"
RECORDINGS: tuple[RecordingSource, ...] = (
    RecordingSource("bvp_rest", BSN, f"{SIGNAL_SAMPLES}/bvp_rest.h5",
                    "1c8f101edb894e4e8d8f9e11a1189fd910ea2d1728d3661c5b63c9c2c847d6fb", "bvp-2018-07-04",
                    f"{PLUX_HUB}, BVP sensor, 16-bit", "rest ('conventional BVP under rest conditions')",
                    SegmentKind.CLEAN, (Segment(103.0, 106.0, SegmentKind.UNCERTAIN),), channel=1),
    RecordingSource("bvp_2017", BSN, f"{SIGNAL_SAMPLES}/signal_sample_single_hub_bvp_2017_1_17.h5",
                    "faf784b881d7e4bc7cefdd16db16339d30e14a5a52cf8c3ba174f639063d87c6", "bvp-2017-01-17",
                    "biosignalsplux 00:07:80:3B:46:61, BVP sensor, 16-bit",
                    "rest ('BVP signal sample without undesired events')", SegmentKind.CLEAN, channel=1),
    *(RecordingSource(f"hspo2_ch{channel}", BSN, f"{SIGNAL_SAMPLES}/signal_sample_single_hub_hSpO2_2018_7_6.h5",
                      "65c271c82728a87d03bcba0f32ff5d2b95b2e4cb56ab209b20dedc25eefa373b", "hspo2-2018-07-06",
                      f"{PLUX_HUB}, hSpO2 {_OXIMETER}", "hSpO2 sample (no event stated; clean on inspection)",
                      SegmentKind.CLEAN, STARTUP, channel=channel) for channel in (9, 10)),
    *(RecordingSource(f"fspo2_ch{channel}", BSN, f"{SIGNAL_SAMPLES}/signal_sample_single_hub_fspo2_2018_9_3.h5",
                      "53cb619d47d4327f3a913a5dbd4073de0d10ffe1839feccab573d17b5ef80d52", "fspo2-2018-09-03",
                      f"{PLUX_HUB}, fSpO2 {_OXIMETER}", "fSpO2 sample (no event stated; clean on inspection)",
                      SegmentKind.CLEAN, STARTUP, channel=channel) for channel in (9, 10)),
    RecordingSource("motion", BSN, f"{SIGNAL_SAMPLES}/bvp_motion_artifact.h5",
                    "bc15f10abb57cc361f9fb714ef4faad93c2f5ed261bcaf2d8cfd96150e2a53eb", "bvp-motion-2019-09-04",
                    "BITalino (r)evolution 20:16:11:02:85:30, analog A2 (sensor 'RAW'), 10-bit",
                    "motion artefact ('a BVP signal containing some motion artifacts')", SegmentKind.UNCERTAIN,
                    (Segment(4.0, 8.6, SegmentKind.ARTEFACT), Segment(13.7, 16.7, SegmentKind.ARTEFACT),
                     Segment(19.8, 30.0, SegmentKind.CLEAN)), channel=2),
    RecordingSource("heartpy_data", HEARTPY, "data/data.csv",
                    "b06b8049008b3d9391cd2b9a3b90510b3734426b8833a6de7b7b323b4bda7179", "heartpy-data",
                    "unknown PPG device (heartpy example), 100 Hz", "none (heartpy example; clean on inspection)",
                    SegmentKind.CLEAN, sample_rate_hz=100.0),
)
# Real recordings without labels: run through the model to count its alarms, never trained or gated on. Both hold
# visible dropouts, flat stretches and artefacts, so their alarm rate is not a false-alarm rate.
UNLABELLED: tuple[RecordingSource, ...] = (
    RecordingSource("heartpy_data2", HEARTPY, "data/data2.csv",
                    "7d85f0d33b04395409e81d614b9bd82541208cc3edfbc5a49b5129ae3cb573b9", "heartpy-data2",
                    "unknown PPG device (heartpy example), ~117 Hz", "none (heartpy example)",
                    SegmentKind.UNCERTAIN, channel=1, time_column=TimeColumn.MILLISECONDS),
    RecordingSource("heartpy_data3", HEARTPY, "data/data3.csv",
                    "16eedaa7c97c6ca873e7e424d27a84dcd043d4eca0e4f7611d2a37969192b7ea", "heartpy-data3",
                    "unknown PPG device (heartpy example), ~100 Hz, irregular time stamps", "none (heartpy example)",
                    SegmentKind.UNCERTAIN, channel=1, time_column=TimeColumn.DATETIME),
)
DUPLICATES = {"signal_sample_single_hub_BVP_2018_7_4.h5": "bvp_rest"}  # same sha256: never used a second time


def source(key: str) -> RecordingSource:
    for item in (*RECORDINGS, *UNLABELLED):
        if item.key == key:
            return item
    known = ", ".join(item.key for item in (*RECORDINGS, *UNLABELLED))
    raise DataError(f"no PPG recording '{key}'", expected=f"one of {known}", fix="name a catalogued recording")
