"""The real PLUX EEG recordings biosignalsnotebooks 0.6.14 installs, what each one is, and how they are read.

The files are read where ``pip`` put them (biosignalsnotebooks is installed ``--no-deps`` as data and never
imported), each checked against the sha256 recorded here, read with the device's reader
(``runtime.readers.read_signal``: raw 16-bit ADC counts of one ``channel_N``) and brought to the model rate with the
device's resampler (``runtime.resample``), once per file: exactly what the device does before it cuts windows.

What the files hold (checked here, not taken from the ``_info.json`` beside them, which is wrong in two ways):

* every file is 1000 Hz, 16-bit, raw counts (0–65 535); 1 count ≈ 0.0011 µV (biosignalsnotebooks'
  ``raw_to_phy`` for the biosignalsplux EEG sensor: µV = (counts × 3 / 2¹⁶ − 1.5) / 0.04199), so the sensor's whole
  range is about ±36 µV and large movements saturate it;
* the ``_info.json`` of the electrode-distance and O/P files says about 4 minutes; the HDF5 files hold 65 s each;
* ``eeg_sample_p.h5`` is NOT a P3/P4 recording as its ``_info.json`` says: its samples are identical to the first
  64 997 samples of ``eeg_sample_closed_open_eyes.h5`` (same device, date and start time); it is never used;
* in the two-channel files ``channel_5`` is not EEG: it sits within a few counts of a constant level and steps
  between two levels (an event marker: eyes open / closed in ``closed_open_eyes``); only the EEG channel is read.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from runtime.errors import IntegrityError
from runtime.hashing import sha256_file
from runtime.readers import read_signal
from runtime.resample import StreamingResampler

PACKAGE = "biosignalsnotebooks"
PACKAGE_VERSION = "0.6.14"
SIGNAL_SAMPLES = "notebook_files/osf_files/signal_samples"
LICENCE = ("biosignalsnotebooks 0.6.14 (PyPI), MIT License, © 2018 opensignalstool developers and PLUX Wireless "
           "Biosignals; the signal samples ship inside the package and no separate data licence is stated")


@dataclass(frozen=True)
class EegRecording:
    """One EEG channel of one file and what its source says it is."""

    stem: str  # the file's name without .h5
    channel: int  # channel_N of the HDF5 file: the EEG channel
    sha256: str  # of the file as installed
    device: str  # the biosignalsplux MAC address in the file
    date: str  # acquisition date in the file
    source_says: str  # the file's own description (signal_samples.py / _info.json)

    @property
    def file_name(self) -> str:
        return f"{self.stem}.h5"


_A, _B, _C = "00:07:80:3B:46:58", "00:07:80:D8:A8:82", "00:07:80:4D:2D:76"
_DISTANCE = "occipital EEG, exploratory electrodes {} the O1–O2 line, {} cm apart"
RECORDINGS: tuple[EegRecording, ...] = (
    EegRecording("eeg_sample_closed_open_eyes", 1,
                 "090cde13e3d194e9a2524f9fa7266af57f9a7e05339fa8880e247f06cde54429", _A, "2019-03-28",
                 "alpha waves with eyes opened and closed (242 s)"),
    EegRecording("eeg_sample_o", 1, "7e76405979cc4dd6b4b7c97d45b2f4b15f01f6cd68319e928884fde48c94e657", _A,
                 "2019-03-28", "electrodes at O1 and O2"),
    *(EegRecording(f"eeg_sample_{distance}cm_h", 1, digest, _B, "2019-03-18", _DISTANCE.format("on", distance))
      for distance, digest in (
          ("0", "3e405ad45f68e6a3ce63b622b4de513580b3d5c2d97d6a2e0f992bf38e786c35"),
          ("1", "3cf6613de0f876a0c6ce438417c0f58fac1e134c5a0ef4b921675a490ac0ed0c"),
          ("2", "15f2885dd85a7d9394f3124858356b69231bdbda9ba2d23530951f4d16d639d9"))),
    *(EegRecording(f"eeg_sample_{distance}cm_v", 2, digest, _C, "2019-03-14",
                   _DISTANCE.format("perpendicular to", distance))
      for distance, digest in (
          ("0", "ca4a834302ce0eaea51c35e5f59a55263755d05552e326983d652d85688852db"),
          ("1", "55e1ed332b2062a39744c4624e085fbc43509050ae4537e1c6cccf13ca8880e0"),
          ("2", "21dadf4762b54793918cc407f520d0142e169da70d5d10b222212c2bc629225f"))),
    EegRecording("eeg_sample_artefacts_seg1", 2, "da8d81919dc5027e9f310f1774c2ba0c660b9c7f490626a923b6656066abaf89",
                 _C, "2019-02-22", "an EEG acquisition which contains movement artefacts [segment 1]"),
    EegRecording("eeg_sample_artefacts_seg2", 2, "f97201f19d0325dedd2cffac70f0d6a497f06bff8b9521571d02b5412b4e53f3",
                 _C, "2019-02-22", "an EEG acquisition which contains movement artefacts [segment 2]"),
    EegRecording("eeg_sample_artefacts_seg3", 1, "8997f6e4a88f78c08d09cec49bdc3faa667ff96c38b5c5d7f8078547d587238d",
                 _C, "2019-04-26", "noisy data with electromagnetic origin [segment 3]"),
)
# A real EEG recording nothing says the condition of ("Observations" is empty) and that holds saturating
# excursions: never trained or gated on; the device demonstration runs on it.
UNLABELLED = EegRecording("signal_sample_single_hub_EEG_2018_7_4", 1,
                          "fc7999b2a425202317bfbe78200ec843a2ed744a5434a2d24329a9c7268de03a", "00:07:80:79:6F:DB",
                          "2018-07-04", "EEG signal sample, condition not stated (28 s)")
EXCLUDED_FILES = {
    "eeg_sample_p.h5": "identical samples to the first 65 s of eeg_sample_closed_open_eyes.h5 (a duplicate, not P3/P4)",
    "channel_5 of the two-channel files": "an event-marker channel (a constant level that steps), not EEG",
    "signal_sample_single_hub_EEG_2018_7_4.h5": "condition not stated, saturating excursions: the unlabelled "
                                                "device demonstration only",
    "eeg_acoustic.h5, eeg_acoustic_a.h5": "auditory-stimulus paradigm (microphone + EEG, saturating); not part of "
                                          "the clean/artefact sets",
}


def recording(stem: str) -> EegRecording:
    for item in (*RECORDINGS, UNLABELLED):
        if item.stem == stem:
            return item
    raise DataError(f"no EEG recording '{stem}'", expected=f"one of {', '.join(item.stem for item in RECORDINGS)}",
                    fix="name a catalogued recording (pipeline/scenarios/eeg_artifact/recordings.py)")


def signal_samples_folder() -> Path:
    """biosignalsnotebooks' signal_samples folder (found without importing the package)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"{PACKAGE} is not installed", expected=f"{PACKAGE} {PACKAGE_VERSION} installed as data",
                        fix=f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}")
    return Path(next(iter(spec.submodule_search_locations))) / SIGNAL_SAMPLES


def recording_path(item: EegRecording) -> Path:
    """The installed file, after checking its sha256 (the data's version is part of the scenario's cache key)."""
    path = signal_samples_folder() / item.file_name
    if not path.is_file():
        raise DataError(f"{item.file_name} is missing from {path.parent}",
                        expected=f"the files {PACKAGE} {PACKAGE_VERSION} installs",
                        fix=f"reinstall: pip install --no-deps --force-reinstall {PACKAGE}=={PACKAGE_VERSION}")
    digest = sha256_file(path)
    if digest != item.sha256:
        raise IntegrityError(f"{item.file_name} has sha256 {digest[:16]}…", expected=f"{item.sha256[:16]}…",
                             fix=f"reinstall {PACKAGE}=={PACKAGE_VERSION}; never edit the installed files")
    return path


def at_model_rate(item: EegRecording, rate_hz: float) -> np.ndarray:
    """The recording's raw counts (float64) at ``rate_hz``, resampled in one pass as the device stream does."""
    signal = read_signal(recording_path(item), channel=item.channel)
    resampler = StreamingResampler(float(signal.sample_rate_hz), rate_hz)
    return np.concatenate([resampler.process(signal.samples), resampler.flush()])
