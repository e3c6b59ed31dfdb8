"""WFDB records in an archive: PhysioNet's format (``.hea`` header, signal files, ``.atr`` beat annotations).

A hospital's or a database's ECG archive is most often WFDB (the MIT-BIH Arrhythmia Database, INCART, the Long-Term
ST database…), so ``validate-archive`` reads it as it is, with the ``wfdb`` package (local files only: ``pn_dir`` is
never given, nothing is downloaded):

* the signal: one lead, in mV (``uV`` and ``V`` converted; any other unit refused), at the header's rate — the lead
  named ``MLII``, else ``II``, else the record's first signal (MIT-BIH's record 114 stores V5 first and MLII second);
  the converter's limits in mV from the header's gain, baseline, ADC zero and resolution, so clipping is flagged as
  for a device's own ADC; the lead's standard name (``runtime.leads.recorded_channel``; None for a name such as
  ``ECG1`` that is no standard lead), which the archive report counts and scores per lead;
* the reference beats: every annotation ``wfdb`` counts as a QRS (``is_qrs``), labelled ``V`` when its symbol is
  ``V`` (premature ventricular contraction, the PVC class the ECG bundles are validated on) and ``non-V`` otherwise;
  rhythm, noise and comment annotations are not beats.

A header whose samples would decode past ``MAX_ARRAY_BYTES`` is refused before anything is read. Every problem is an
``InputError`` (``AnnotationError`` for the annotations) naming the file: that recording fails, the others run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.archive.layout import (
    NEGATIVE_LABEL,
    POSITIVE_LABEL,
    WFDB_HEADER_SUFFIX,
    AnnotationError,
    BeatAnnotations,
)
from runtime.leads import recorded_channel
from runtime.readers import MAX_ARRAY_BYTES, InputError, Recording, check_sample_rate

PREFERRED_LEADS = ("MLII", "II")  # the lead the ECG bundles are developed on, then its standard-limb equivalent
TO_MILLIVOLTS = {"mv": 1.0, "uv": 1e-3, "μv": 1e-3, "µv": 1e-3, "v": 1e3}
PVC_SYMBOL = "V"
# what wfdb's parsers raise on a malformed or truncated file (anything else fails the recording at the worker's
# isolation boundary, as "unexpected error")
READ_ERRORS = (OSError, EOFError, ValueError, IndexError, KeyError, TypeError, AttributeError, ZeroDivisionError)


def _wfdb():
    try:
        import wfdb
    except ImportError:
        raise InputError("WFDB records need the wfdb package, which is not installed",
                         expected="wfdb installed beside edgemed", fix="pip install 'edgemed[fleet]' (or pip install "
                         "wfdb)") from None
    return wfdb


def _base(header: Path) -> str:
    """The record name wfdb wants: the header's path without ``.hea``."""
    return str(Path(header).with_suffix(""))


def _refused(header: Path, problem: Exception) -> InputError:
    return InputError(f"WFDB record {Path(header).name} cannot be read ({type(problem).__name__}: {problem})",
                      expected="a WFDB header (.hea) with its signal file(s) beside it",
                      fix="check that the record's files are complete and named as its header says")


def lead_index(names: list[str] | None) -> int:
    """The signal to read: the first preferred lead present (``PREFERRED_LEADS``, case and spaces ignored), else 0."""
    cleaned = [str(name).replace(" ", "").upper() for name in names or []]
    for lead in PREFERRED_LEADS:
        if lead.upper() in cleaned:
            return cleaned.index(lead.upper())
    return 0


def read_wfdb_signal(header: Path | str, sample_rate_hz: float | None = None) -> Recording:
    """One lead of the WFDB record ``header`` in mV (see the module docstring); ``sample_rate_hz``, when given (an
    index entry's rate), must be the header's."""
    wfdb, header = _wfdb(), Path(header)
    if not header.is_file():
        raise InputError(f"WFDB header {header.name} does not exist", expected="the .hea file the archive lists",
                         fix="restore it, or remove the recording from the archive")
    try:
        described = wfdb.rdheader(_base(header))
    except READ_ERRORS as problem:
        raise _refused(header, problem) from None
    rate = check_sample_rate(described.fs, f"{header.name}'s sampling frequency")
    if sample_rate_hz is not None and abs(float(sample_rate_hz) - rate) > 1e-6 * rate:
        raise InputError(f"{header.name} is sampled at {rate:g} Hz, but the archive says {sample_rate_hz:g} Hz",
                         expected="the header's own rate", fix="drop sample_rate_hz from the index entry")
    length, signals = int(described.sig_len or 0), int(described.n_sig or 0)
    if signals < 1 or length < 1:
        raise InputError(f"WFDB record {header.name} holds no samples", expected="at least one signal with samples",
                         fix="check the record")
    if length * 8 > MAX_ARRAY_BYTES:
        raise InputError(f"WFDB record {header.name} holds {length} samples per signal, over the "
                         f"{MAX_ARRAY_BYTES // 1024**3} GiB limit", expected="a recording that fits in memory",
                         fix="split the record into shorter ones")
    chosen = lead_index(described.sig_name)
    try:
        record = wfdb.rdrecord(_base(header), channels=[chosen], physical=True)
    except READ_ERRORS as problem:
        raise _refused(header, problem) from None
    unit = str((record.units or ["mV"])[0]).strip().lower()
    if unit not in TO_MILLIVOLTS:
        raise InputError(f"{header.name}'s lead {record.sig_name[0]} is in {record.units[0]!r}",
                         expected="mV, uV or V", fix="convert the record's signal to millivolts")
    scale = TO_MILLIVOLTS[unit]
    samples = np.asarray(record.p_signal[:, 0], dtype=np.float64) * scale
    return Recording(samples, rate, _adc_range(record, scale), header.name, recorded_channel(record.sig_name[0]))


def _adc_range(record, scale: float) -> tuple[float, float] | None:
    """The converter's limits in mV (the physical values of its lowest and highest codes), or None when the header
    does not give its resolution and gain."""
    try:
        gain, bits = float(record.adc_gain[0]), int(record.adc_res[0])
        zero, baseline = int(record.adc_zero[0]), int(record.baseline[0])
    except (TypeError, IndexError, ValueError):
        return None
    if gain <= 0 or bits <= 0:
        return None
    low, high = zero - 2 ** (bits - 1), zero + 2 ** (bits - 1) - 1
    return ((low - baseline) / gain * scale, (high - baseline) / gain * scale)


def read_wfdb_annotations(path: Path | str) -> BeatAnnotations:
    """The reference beats of a WFDB annotation file (``record.atr``: any extension), as the module docstring says."""
    wfdb, path = _wfdb(), Path(path)
    if not path.is_file():
        raise AnnotationError(f"annotation file {path.name} does not exist", expected="the annotations the archive "
                              "lists", fix="restore it, or drop the recording's annotations")
    base, extension = str(path.with_suffix("")), path.suffix.removeprefix(".")
    try:
        annotation = wfdb.rdann(base, extension, return_label_elements=["symbol", "label_store"])
        rate = annotation.fs  # the header's is read only when the annotation file does not carry its own
        if not rate and Path(base + WFDB_HEADER_SUFFIX).is_file():
            rate = wfdb.rdheader(base).fs
    except READ_ERRORS as problem:
        raise AnnotationError(f"WFDB annotations {path.name} cannot be read ({type(problem).__name__}: {problem})",
                              expected="a WFDB annotation file (e.g. MIT format .atr)",
                              fix="check the file, or drop the recording's annotations") from None
    rate = rate or None
    if rate is None:
        raise AnnotationError(f"{path.name} does not say its sampling frequency, and no header beside it does",
                              expected="the record's .hea beside its annotations", fix="put the header beside it")
    from wfdb.io.annotation import is_qrs

    stores = np.asarray(annotation.label_store, dtype=np.int64)
    beats = np.asarray([0 <= store < len(is_qrs) and is_qrs[store] for store in stores.tolist()], dtype=bool)
    samples = np.asarray(annotation.sample, dtype=np.int64)[beats]
    symbols = [symbol for symbol, beat in zip(annotation.symbol, beats.tolist(), strict=True) if beat]
    if samples.size and (samples[0] < 0 or np.any(np.diff(samples) <= 0)):
        raise AnnotationError(f"{path.name}: beat positions are negative, unsorted or repeated",
                              expected="strictly increasing beat annotations", fix="check the annotation file")
    labels = tuple(POSITIVE_LABEL if symbol == PVC_SYMBOL else NEGATIVE_LABEL for symbol in symbols)
    return BeatAnnotations(check_sample_rate(float(rate), f"{path.name}'s sampling frequency"), samples, labels)
