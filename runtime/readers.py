"""Read device recordings: signal CSV, ``.npy`` and PLUX / biosignalsnotebooks HDF5.

Every reader returns a :class:`Recording`; nothing here knows about bundles.
HDF5 needs ``h5py``, imported only inside :func:`read_h5` so the device install
stays numpy + onnxruntime.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import EdgemedError

logger = logging.getLogger(__name__)

SIGNAL_COLUMN_NAMES = ("ecg", "signal", "value", "mv")  # header names accepted for a signal CSV's column


class InputError(EdgemedError):
    """The input data cannot be used as it is (wrong format, shape, column or value)."""


@dataclass(frozen=True)
class Recording:
    """One single-lead signal with what the file says about it."""

    samples: np.ndarray  # float64, one dimension
    sample_rate_hz: float | None  # None when the file does not record it
    adc_range: tuple[float, float] | None = None  # converter limits (e.g. 0..65535), when known
    source: str = ""  # file name, for logs


def read_signal(path: Path, sample_rate_hz: float | None = None) -> Recording:
    """A single-lead recording from ``.npy``, ``.csv`` or ``.h5``; ``sample_rate_hz`` overrides the file's."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"input file {path} does not exist", expected="a readable .csv, .npy or .h5 file", fix="check the path"
        )
    suffix = path.suffix.lower()
    if suffix == ".npy":
        recording = Recording(_single_lead(load_npy(path), path), None, None, path.name)
    elif suffix == ".csv":
        recording = Recording(read_signal_csv(path), None, None, path.name)
    elif suffix in (".h5", ".hdf5"):
        recording = read_h5(path)
    else:
        raise InputError(
            f"cannot read a signal from '{path.name}' (suffix '{suffix}')",
            expected="a .csv, .npy or .h5 file",
            fix="convert the recording to one of those formats",
        )
    if sample_rate_hz is not None:
        if recording.sample_rate_hz is not None and abs(recording.sample_rate_hz - sample_rate_hz) > 1e-9:
            logger.warning(
                "%s records %s Hz; using the %s Hz given explicitly",
                path.name,
                recording.sample_rate_hz,
                sample_rate_hz,
            )
        recording = Recording(recording.samples, float(sample_rate_hz), recording.adc_range, recording.source)
    if recording.sample_rate_hz is None:
        raise InputError(
            f"{path.name} does not record its sample rate",
            expected="the sample rate of the recording",
            fix="pass --sample-rate HZ",
        )
    if not np.isfinite(recording.sample_rate_hz) or recording.sample_rate_hz <= 0:
        raise InputError(
            f"sample rate {recording.sample_rate_hz} Hz is not a positive number",
            expected="a positive sample rate in Hz",
            fix="pass the recording's real rate with --sample-rate",
        )
    return recording


def load_npy(path: Path) -> np.ndarray:
    """A numeric array from ``.npy`` (no pickles), or ``InputError``."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(
            f"{path.name} is not a readable .npy array ({error})",
            expected="a numeric array saved with numpy.save",
            fix="re-save the recording with numpy.save(path, samples)",
        ) from error
    if array.dtype.kind not in "biuf":
        raise InputError(
            f"{path.name} holds {array.dtype} values",
            expected="numbers (integer or floating point)",
            fix="save the samples as a numeric array",
        )
    return array


def _single_lead(array: np.ndarray, path: Path) -> np.ndarray:
    values = np.asarray(array)
    if values.ndim == 2 and 1 in values.shape:
        values = values.reshape(-1)
    if values.ndim != 1:
        raise InputError(
            f"{path.name} has shape {values.shape}",
            expected="one lead: shape (samples,) or (samples, 1)",
            fix="save a single lead",
        )
    return values.astype(np.float64)


def read_signal_csv(path: Path) -> np.ndarray:
    """One column of numbers, or the ``ecg`` (signal/value/mv) column of a CSV with a header."""
    with Path(path).open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise InputError(f"{Path(path).name} is empty", expected="one sample per row", fix="check the export")
    first = [cell.strip() for cell in rows[0]]
    has_header = not all(_is_number(cell) for cell in first)
    named = [index for index, name in enumerate(first) if name.lower() in SIGNAL_COLUMN_NAMES] if has_header else []
    if named or len(first) == 1:
        column = named[0] if named else 0
    else:
        raise InputError(
            f"{Path(path).name} has {len(first)} columns and none is named as the signal",
            expected=f"one column, or a header with a column named one of {', '.join(SIGNAL_COLUMN_NAMES)}",
            fix="keep only the ECG column, or name it 'ecg' in a header row",
        )
    if has_header:
        rows = rows[1:]
    values = np.empty(len(rows))
    for index, row in enumerate(rows):
        cell = row[column].strip() if column < len(row) else ""
        try:
            values[index] = float(cell)
        except ValueError as error:
            raise InputError(
                f"{Path(path).name} row {index + 1}: '{cell}' is not a number",
                expected="one number per row in the signal column",
                fix="remove or repair that row (write nan for a missing sample)",
            ) from error
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_h5(path: Path) -> Recording:
    """The ECG channel of a PLUX OpenSignals / biosignalsnotebooks HDF5 file (raw ADC counts)."""
    try:
        import h5py
    except ImportError as error:
        raise InputError(
            f"reading {Path(path).name} needs h5py, which is not installed",
            expected="h5py for .h5 recordings",
            fix="pip install h5py, or convert the recording to .npy",
        ) from error
    try:
        with h5py.File(path, "r") as handle:
            return _read_plux(handle, Path(path))
    except OSError as error:
        raise InputError(
            f"{Path(path).name} is not a readable HDF5 file ({error})",
            expected="an OpenSignals .h5 recording",
            fix="check the file",
        ) from error


def _read_plux(handle, path: Path) -> Recording:
    for device_name in handle:
        device = handle[device_name]
        if not hasattr(device, "keys") or "raw" not in device:
            continue
        raw = device["raw"]
        channels = sorted(name for name in raw if name.startswith("channel_"))
        ecg = [name for name in channels if str(raw[name].attrs.get("sensor", "")).upper() == "ECG"]
        chosen = (ecg or channels or [None])[0]
        if chosen is None:
            continue
        rate = device.attrs.get("sampling rate")
        bits = np.asarray(device.attrs.get("resolution", [])).reshape(-1)
        adc_range = (0.0, float(2 ** int(bits[0]) - 1)) if bits.size else None
        samples = np.asarray(raw[chosen][()], dtype=np.float64).reshape(-1)
        logger.info("%s: device %s, %s (%d samples at %s Hz)", path.name, device_name, chosen, samples.size, rate)
        return Recording(samples, float(rate) if rate is not None else None, adc_range, path.name)
    raise InputError(
        f"{path.name} has no device group with raw channels",
        expected="an OpenSignals file: <device>/raw/channel_N",
        fix="export the recording from OpenSignals as .h5, or convert it to .npy",
    )
