"""The vendored MIT-BIH Arrhythmia Database subset: real ECG with expert beat and PVC annotations.

``load_records()`` reads ``data/mitdb_subset.npz`` (no pickle), refuses it unless its sha256 is the
one recorded here and in ``data/README.md``, converts the raw ADC counts to millivolts and checks
every annotation array (sorted, unique, inside the signal, PVCs a subset of the beats). The
attribution that the ODC-By 1.0 licence asks for is ``provenance()``; keep it with anything derived.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from runtime.errors import IntegrityError
from runtime.hashing import sha256_file

logger = logging.getLogger(__name__)

DATA_FILE = Path(__file__).parent / "data" / "mitdb_subset.npz"
EXPECTED_SHA256 = "2b950977b53fa0ccb6eb0ca43f2a12ee59bd8a941fcdbb1750e17f3a9d7711bf"
SAMPLE_RATE_HZ = 360.0  # every MIT-BIH record
ADC_ZERO = 1024  # ADC count of 0 mV
ADC_COUNTS_PER_MV = 200.0  # ADC gain
RECORD_IDS = ("100", "105", "106", "108", "114", "116", "119", "121", "123", "200")
# The lead of each record's first signal (the vendored file's "lead" array, checked on load): the device contract
# declares the leads of the held-out records as the ones the bundle was validated on.
RECORD_LEADS = {record: "V5" if record == "114" else "MLII" for record in RECORD_IDS}


@dataclass(frozen=True)
class MitBihRecord:
    """One record: the first signal in mV and its reference beat annotations (sample indices)."""

    record_id: str
    lead: str  # "MLII", or "V5" for record 114 (its leads are swapped in the database)
    signal_mv: np.ndarray  # float32, (samples,)
    sample_rate_hz: float
    beat_indices: np.ndarray  # int64, sorted: every annotated beat
    pvc_indices: np.ndarray  # int64, sorted: the beats annotated V (a subset of beat_indices)
    is_pvc: np.ndarray  # bool, one per beat_indices entry: True where the beat is annotated V

    @property
    def duration_s(self) -> float:
        return self.signal_mv.size / self.sample_rate_hz


def excerpt(record: MitBihRecord, seconds: float | None, start_s: float = 0.0) -> MitBihRecord:
    """``seconds`` of ``record`` from ``start_s`` on (the whole rest when None), its annotations shifted to match."""
    first = round(start_s * record.sample_rate_hz)
    last = record.signal_mv.size if seconds is None else first + round(seconds * record.sample_rate_hz)
    if not 0 <= first < last <= record.signal_mv.size:
        raise DataError(
            f"an excerpt of record {record.record_id} from {start_s} s " + (
                f"lasting {seconds} s" if seconds is not None else "to its end"),
            expected=f"a stretch inside the record's {record.duration_s:.1f} s",
            fix="ask for a shorter excerpt or an earlier start",
        )
    inside = (record.beat_indices >= first) & (record.beat_indices < last)
    beats = record.beat_indices[inside] - first
    pvcs = record.pvc_indices[(record.pvc_indices >= first) & (record.pvc_indices < last)] - first
    return replace(record, signal_mv=record.signal_mv[first:last], beat_indices=beats, pvc_indices=pvcs,
                   is_pvc=record.is_pvc[inside])


def provenance() -> dict:
    """Attribution and description of the vendored data (JSON-serialisable)."""
    return {
        "name": "MIT-BIH Arrhythmia Database v1.0.0, 10-record subset",
        "synthetic": False,
        "licence": "Open Data Commons Attribution License v1.0 (ODC-By 1.0)",
        "distributor": "PhysioNet, https://physionet.org/content/mitdb/1.0.0/",
        "citation": [
            "Moody GB, Mark RG. The impact of the MIT-BIH Arrhythmia Database. "
            "IEEE Eng Med Biol 20(3):45-50, 2001.",
            "Goldberger AL et al. PhysioBank, PhysioToolkit, and PhysioNet: Components of a new research "
            "resource for complex physiologic signals. Circulation 101(23):e215-e220, 2000.",
        ],
        "conversion": (
            "converted from the tpcp project's example data (mad-lab-fau/tpcp, example_data/ecg_mit_bih_arrhythmia/), "
            "itself read from PhysioNet with wfdb; the signal is stored as the database's exact ADC integers"
        ),
        "sha256": EXPECTED_SHA256,
        "records": list(RECORD_IDS),
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "units": f"mV = (adc - {ADC_ZERO}) / {ADC_COUNTS_PER_MV:g}",
        "lead_notes": "first signal of each record: MLII, except record 114 (V5; its leads are swapped)",
        "labels": "V (PVC, AAMI class V) vs non-V; N, S, F and Q beats are all non-V",
    }


def load_records(
    records: Sequence[str] | None = None, path: Path = DATA_FILE, expected_sha256: str | None = EXPECTED_SHA256
) -> list[MitBihRecord]:
    """The records (all ten by default, in file order), checked; ``expected_sha256=None`` skips the hash."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"MIT-BIH subset not found at {path}",
            expected="the vendored pipeline/scenarios/ecg_pvc/data/mitdb_subset.npz",
            fix="restore the file from the repository (git checkout -- pipeline/scenarios/ecg_pvc/data)",
        )
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise IntegrityError(
                f"{path.name} has sha256 {actual}",
                expected=f"sha256 {expected_sha256} (data/README.md)",
                fix="restore the vendored file unchanged; a new data version needs a new hash in mitdb.py and README",
            )
    with np.load(path, allow_pickle=False) as archive:
        available = [str(name) for name in archive["records"]]
        leads = dict(zip(available, (str(lead) for lead in archive["lead"])))
        wanted = list(records) if records is not None else available
        unknown = [name for name in wanted if name not in available]
        if unknown:
            raise DataError(
                f"unknown MIT-BIH record(s) {', '.join(unknown)}",
                expected=f"some of {', '.join(available)}",
                fix="ask for records that are in the vendored subset",
            )
        stated = {name: leads[name] for name in wanted if leads[name] != RECORD_LEADS.get(name, leads[name])}
        if stated:
            raise DataError(
                "the vendored file names other leads than edgemed records for "
                + ", ".join(f"{name} ({lead})" for name, lead in stated.items()),
                expected=", ".join(f"{name} {RECORD_LEADS[name]}" for name in stated),
                fix="restore the vendored file; a new data version needs RECORD_LEADS in mitdb.py updated",
            )
        loaded = [_record(archive, name, leads[name]) for name in wanted]
    logger.info("loaded %d MIT-BIH records from %s", len(loaded), path.name)
    return loaded


def _record(archive, name: str, lead: str) -> MitBihRecord:
    keys = (f"ecg_{name}", f"beats_{name}", f"pvc_{name}")
    missing = [key for key in keys if key not in archive.files]
    if missing:
        raise DataError(f"record {name} lacks {', '.join(missing)}", expected="ecg_, beats_ and pvc_ arrays",
                        fix="restore the vendored file")
    adc, beats, pvcs = (archive[key] for key in keys)
    if adc.ndim != 1 or adc.dtype.kind not in "iu":
        raise DataError(f"record {name} signal is {adc.dtype} {adc.shape}", expected="1-D integer ADC counts",
                        fix="restore the vendored file")
    beats = _checked_indices(name, "beats", beats, adc.size)
    pvcs = _checked_indices(name, "pvc", pvcs, adc.size)
    is_pvc = np.isin(beats, pvcs)
    if int(is_pvc.sum()) != pvcs.size:
        raise DataError(
            f"record {name}: {pvcs.size - int(is_pvc.sum())} PVC position(s) are not annotated beats",
            expected="pvc_<record> a subset of beats_<record>",
            fix="restore the vendored file",
        )
    signal_mv = ((adc.astype(np.float32) - ADC_ZERO) / np.float32(ADC_COUNTS_PER_MV)).astype(np.float32)
    return MitBihRecord(name, lead, signal_mv, SAMPLE_RATE_HZ, beats, pvcs, is_pvc)


def _checked_indices(name: str, kind: str, values: np.ndarray, length: int) -> np.ndarray:
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise DataError(f"record {name} {kind} indices are {values.dtype} {values.shape}",
                        expected="1-D integer sample indices", fix="restore the vendored file")
    indices = values.astype(np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= length):
        raise DataError(f"record {name} has {kind} indices outside the signal",
                        expected=f"0 ≤ index < {length}", fix="restore the vendored file")
    if np.any(np.diff(indices) <= 0):
        raise DataError(f"record {name} {kind} indices are not strictly increasing",
                        expected="sorted, unique sample indices", fix="restore the vendored file")
    return indices
