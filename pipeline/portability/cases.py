"""What each bundle is run on: the real recordings and rows its scenario was validated with, as the device reads
them (``.npy`` signals with their rate, ``.csv`` tables), written once into a folder all targets share.

- an ECG beat bundle (its inputs derived by the ECG stream): the ten vendored MIT-BIH records (real, annotated: EC57
  figures per target) and the healthy PLUX ECG recordings of biosignalsnotebooks (real, 1000 Hz: the resampling
  path) when installed;
- the ``breast-cancer`` bundle: the 569 rows of scikit-learn's Wisconsin Diagnostic Breast Cancer data (real);
- the ``eeg-artifact`` bundle: the PLUX EEG recordings of its test split (real).

Another bundle gets no case and is listed as not checked: there is no real input edgemed knows for it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from runtime.contract import BundleManifest
from runtime.ecg.beat_inputs import declares_stream_inputs
from runtime.readers import SIGNAL_RATE_RANGE_HZ, InputError, read_signal

MITDB_SOURCE = ("MIT-BIH Arrhythmia Database (real, annotated; the vendored 10-record subset, the ECG bundle's "
                "training records among them: its EC57 columns compare CPUs, they are not held-out figures)")
PLUX_ECG_SOURCE = "biosignalsnotebooks 0.6.14: PLUX single-lead ECG of healthy people at rest (real, no labels)"
BREAST_SOURCE = "scikit-learn: Wisconsin Diagnostic Breast Cancer, all 569 rows (real)"
EEG_SOURCE = "biosignalsnotebooks 0.6.14: PLUX EEG recordings of the scenario's test split (real)"


@dataclass(frozen=True)
class Reference:
    """A recording's annotated beats: EC57 figures can be computed from each target's events."""

    beats_s: np.ndarray
    is_v: np.ndarray


@dataclass(frozen=True)
class Case:
    """One run of one bundle: ``python -m runtime BUNDLE --input FILE ARGUMENTS``."""

    bundle: str  # the bundle folder's name
    name: str  # the recording's or table's name
    source: str  # where the data comes from (real or not, said)
    input_file: Path
    arguments: tuple[str, ...] = ()
    reference: Reference | None = field(default=None, compare=False)


def _signal_case(bundle: str, name: str, source: str, folder: Path, samples: np.ndarray, rate: float,
                 reference: Reference | None = None) -> Case:
    path = folder / f"{bundle}-{name}.npy"
    np.save(path, np.ascontiguousarray(samples))
    return Case(bundle, name, source, path, ("--sample-rate", f"{rate:g}"), reference)


def ecg_cases(bundle: str, folder: Path, seconds: float | None) -> list[Case]:
    from pipeline.scenarios.ecg_pvc.mitdb import excerpt, load_records
    from pipeline.validation.real_ecg import ecg_files, signal_samples_folder

    cases = []
    for record in load_records():
        part = excerpt(record, seconds) if seconds is not None and seconds < record.duration_s else record
        reference = Reference(part.beat_indices / part.sample_rate_hz, part.is_pvc)
        cases.append(_signal_case(bundle, part.record_id, MITDB_SOURCE, folder, part.signal_mv,
                                  part.sample_rate_hz, reference))
    samples_folder = signal_samples_folder()
    for path in ecg_files(samples_folder) if samples_folder is not None else []:
        try:
            recording = read_signal(path)
        except InputError:  # e.g. a 10 Hz file: refused by a device too (as the validate stage skips it)
            continue
        samples = recording.samples
        if seconds is not None:
            samples = samples[: round(seconds * recording.sample_rate_hz)]
        cases.append(_signal_case(bundle, path.stem, PLUX_ECG_SOURCE, folder, samples, recording.sample_rate_hz))
    return cases


def breast_cancer_cases(bundle: str, folder: Path, manifest: BundleManifest) -> list[Case]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = list(manifest.inputs[0].feature_names)
    if names != [name.replace(" ", "_") for name in data.feature_names]:
        return []  # another table than the one edgemed knows: not checked
    path = folder / f"{bundle}-rows.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        writer.writerows([repr(float(value)) for value in row] for row in data.data)
    return [Case(bundle, "all-rows", BREAST_SOURCE, path)]


def eeg_cases(bundle: str, folder: Path, manifest: dict, seconds: float | None) -> list[Case]:
    from pipeline.scenarios.eeg_artifact.recordings import signal_samples_folder

    try:
        samples_folder = signal_samples_folder()
    except DataError:  # biosignalsnotebooks is not installed: no EEG recording to run on
        return []
    parts = manifest.get("data", {}).get("provenance", {}).get("parts", [])
    cases = []
    for part in parts:
        if part.get("split") != "test" or not (samples_folder / part["file"]).is_file():
            continue
        recording = read_signal(samples_folder / part["file"], channel=part["channel"],
                                rate_range=SIGNAL_RATE_RANGE_HZ, sensor=None)
        first = round(float(part.get("from_s", 0.0)) * recording.sample_rate_hz)
        samples = recording.samples[first:]
        if seconds is not None:
            samples = samples[: round(seconds * recording.sample_rate_hz)]
        name = f"{Path(part['file']).stem}-from-{part.get('from_s', 0):g}s"
        cases.append(_signal_case(bundle, name, EEG_SOURCE, folder, samples, recording.sample_rate_hz))
    return cases


def bundle_cases(bundle_folder: Path, folder: Path, seconds: float | None = None) -> list[Case]:
    """The cases of one bundle (none: no real input known for it); ``seconds`` shortens every signal."""
    document = json.loads((bundle_folder / "manifest.json").read_text())
    manifest = BundleManifest.from_dict(document)
    name = bundle_folder.name
    builders: dict[str, Callable[[], list[Case]]] = {
        "breast-cancer": lambda: breast_cancer_cases(name, folder, manifest),
        "eeg-artifact": lambda: eeg_cases(name, folder, document, seconds),
    }
    if declares_stream_inputs(manifest.inputs):
        return ecg_cases(name, folder, seconds)
    builder = builders.get(manifest.scenario)
    return builder() if builder is not None else []
