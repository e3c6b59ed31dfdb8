"""Read device recordings: signal CSV, ``.npy`` and PLUX / biosignalsnotebooks HDF5.

Every reader returns a :class:`Recording`; nothing here knows about bundles. Every reader checks
before it computes, and refuses with an ``InputError`` (never a traceback, never a silent guess):

* text: UTF-8 only (a byte-order mark is allowed), no NUL bytes, no cell over ``MAX_CELL_CHARS``;
* ``.npy`` (and every array of an ``.npz``): the header is read and checked *before* any
  allocation — numeric dtype (no object, string or complex values), at least one value, and the
  bytes it claims must really be in the file and under ``MAX_ARRAY_BYTES``, so memory stays
  bounded by the input's size; integer values must be exact in float64 (|v| ≤ 2**53);
* HDF5: the structure (``<device>/raw/channel_N`` datasets), the attributes' types and ranges
  (``sampling rate``, ``resolution``, ``sensor``) and the dataset's dtype and shape are checked from
  metadata before a sample is read, and only the chosen channel is read;
* several channels or leads are refused unless ``channel`` picks one (never interleaved, never a
  guess; a file whose channels are labelled with sensors uses its single ECG channel — for ECG only);
* ``read_channels`` reads every channel of a file for a multi-channel model (the windowed stream):
  exactly as many as the model takes, each a column (``(samples, channels)``), never transposed by guess;
* the sample rate must lie within ``SAMPLE_RATE_RANGE_HZ`` (50–10 000 Hz: below, a QRS complex is
  not resolved; above, no ECG front end samples — and a resampling kernel would grow with the ratio);
  waveforms of the windowed stream (EEG, PPG, vital-sign series) within ``SIGNAL_RATE_RANGE_HZ``
  (0.01–10 000 Hz: a trend sampled every minute up to an ADC), and the stream checks the rate against
  its model's.

HDF5 needs ``h5py``, imported only inside :func:`read_h5` so the device install stays numpy + onnxruntime.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import numbers
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from runtime.errors import EdgemedError
from runtime.leads import recorded_channel

logger = logging.getLogger(__name__)

SIGNAL_COLUMN_NAMES = ("ecg", "signal", "value", "mv")  # header names accepted for a signal CSV's column
SAMPLE_RATE_RANGE_HZ = (50.0, 10_000.0)  # ECG front ends sample at 125–2 000 Hz; outside this range is an error
SIGNAL_RATE_RANGE_HZ = (0.01, 10_000.0)  # any waveform of the windowed stream: a per-minute trend up to an ADC
MAX_CELL_CHARS = 1_000  # a number never needs more characters; longer cells are refused, not parsed
MAX_H5_EXPANSION = 1_000  # an HDF5 channel may decode to at most this many times the bytes it stores
MAX_CSV_BYTES = 256 * 1024**2  # a CSV is parsed in memory (~15× its size): 24 h at 360 Hz is ~220 MB of text
MAX_ARRAY_BYTES = 2 * 1024**3  # an array may decode to at most 2 GiB (a 10-day 1 kHz float64 recording is 7 GB)
MAX_EXACT_INTEGER = 2**53  # integers beyond this are not exact in float64
NUMERIC_DTYPE_KINDS = "biuf"  # bool, signed and unsigned integers, floating point
MAX_RESOLUTION_BITS = 32  # an ADC's resolution attribute above this is not an ADC


class InputError(EdgemedError):
    """The input data cannot be used as it is (wrong format, shape, column or value)."""


@dataclass(frozen=True)
class Recording:
    """One single-lead signal with what the file says about it."""

    samples: np.ndarray  # float64: (samples,) from read_signal; (samples, channels) from read_channels
    sample_rate_hz: float | None  # None when the file does not record it
    adc_range: tuple[float, float] | None = None  # converter limits (e.g. 0..65535), when known
    source: str = ""  # file name, for logs
    lead: str | None = None  # the lead's standard name (``recorded_channel``) when the file names it, else None


def check_sample_rate(rate: object, source: str = "the sample rate",
                      rate_range: tuple[float, float] = SAMPLE_RATE_RANGE_HZ) -> float:
    """``rate`` as a float within ``rate_range`` (default ``SAMPLE_RATE_RANGE_HZ``), or ``InputError``."""
    low, high = rate_range
    value = float(rate) if isinstance(rate, numbers.Real) and not isinstance(rate, bool) else math.nan
    if not math.isfinite(value) or not low <= value <= high:
        what = "ECG front ends and ADCs" if rate_range == SAMPLE_RATE_RANGE_HZ else "device signals"
        raise InputError(
            f"{source} is {rate!r} Hz, outside the range this runtime accepts",
            expected=f"a sample rate from {low:g} to {high:g} Hz ({what})",
            fix="pass the recording's real rate with --sample-rate",
        )
    return value


def describe_non_number(text: str) -> str:
    """What a cell that should hold a number holds instead, never its content: a file may carry a patient's name
    or record number where a number belongs, and refusals go to logs, reports and other people's screens."""
    text = text.strip()
    if not text:
        return "is empty"
    return f"holds text ({len(text)} characters), not a number"


def _existing(path: Path, sample_rate_hz: float | None, rate_range: tuple[float, float]) -> str:
    """The suffix of an existing input file (``--sample-rate`` checked first), or ``InputError``."""
    if sample_rate_hz is not None:
        check_sample_rate(sample_rate_hz, "--sample-rate", rate_range)
    if not path.is_file():
        what = ("is a folder, not a file" if path.is_dir() else "does not exist" if not path.exists()
                else "is not a regular file (a pipe, socket or device)")
        raise InputError(f"input file {path} {what}", expected="a readable .csv, .npy or .h5 file",
                         fix="check the path; write a stream to a file first")
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".csv", ".h5", ".hdf5"):
        raise InputError(
            f"cannot read a signal from '{path.name}' (suffix '{suffix}')",
            expected="a .csv, .npy or .h5 file",
            fix="convert the recording to one of those formats",
        )
    return suffix


def read_signal(path: Path, sample_rate_hz: float | None = None, channel: int | None = None, *,
                rate_range: tuple[float, float] = SAMPLE_RATE_RANGE_HZ, sensor: str | None = "ECG") -> Recording:
    """A single-lead recording from ``.npy``, ``.csv`` or ``.h5``; ``sample_rate_hz`` is the rate of a file that does
    not record one (one that contradicts the file's is refused).

    ``channel`` picks one channel of a multi-channel file (HDF5: ``channel_N``; ``.npy``/``.csv``: column N,
    counted from 0); without it such a file is refused — except an HDF5 file with one channel labelled
    ``sensor`` (the ECG stream's; None for other signals: nothing is picked by its label). The rate must lie
    within ``rate_range`` (``SIGNAL_RATE_RANGE_HZ`` for the windowed stream).
    """
    path = Path(path)
    suffix = _existing(path, sample_rate_hz, rate_range)
    if suffix == ".npy":
        recording = Recording(_single_lead(load_npy(path), path, channel), None, None, path.name)
    elif suffix == ".csv":
        samples, lead = _signal_csv(path, channel)
        recording = Recording(samples, None, None, path.name, lead)
    else:
        recording = read_h5(path, channel, sensor=sensor)
    return _with_rate(recording, path, sample_rate_hz, rate_range)


def read_channels(path: Path, channels: int, sample_rate_hz: float | None = None, *,
                  rate_range: tuple[float, float] = SIGNAL_RATE_RANGE_HZ) -> Recording:
    """Every channel of a recording as ``(samples, channels)`` for a model that takes ``channels`` of them.

    ``.npy``: a ``(samples, channels)`` array; ``.csv``: that many numeric columns (a header row is skipped);
    ``.h5``: that many ``channel_N`` datasets of one length, in N order. Any other count is refused — a
    ``(channels, samples)`` array too (never transposed by guess).
    """
    path = Path(path)
    suffix = _existing(path, sample_rate_hz, rate_range)
    if suffix == ".npy":
        samples = _all_channels(load_npy(path), path.name, channels)
        recording = Recording(samples, None, None, path.name)
    elif suffix == ".csv":
        recording = Recording(_csv_columns(path, channels), None, None, path.name)
    else:
        recording = read_h5(path, channels=channels)
    return _with_rate(recording, path, sample_rate_hz, rate_range)


def _with_rate(recording: Recording, path: Path, sample_rate_hz: float | None,
               rate_range: tuple[float, float]) -> Recording:
    """The recording with its checked rate (``sample_rate_hz`` where the file records none, or the same), or
    ``InputError``."""
    if recording.samples.size == 0:
        raise InputError(f"{path.name} holds no samples", expected="a recording of at least one sample",
                         fix="check the export")
    if sample_rate_hz is not None:
        if recording.sample_rate_hz is not None and abs(recording.sample_rate_hz - sample_rate_hz) > 1e-9:
            # one of the two is wrong, and a wrong rate gives confident classes at a wrong heart rate: refused
            raise InputError(f"--sample-rate {sample_rate_hz:g} Hz contradicts the {recording.sample_rate_hz:g} Hz "
                             f"{path.name} records", expected="no --sample-rate for a file that records its rate, or "
                             "the same rate", fix="leave --sample-rate out to use the file's rate; if the file's rate "
                             "is wrong, correct it in the file")
        recording = replace(recording, sample_rate_hz=float(sample_rate_hz))  # the lead and the rest kept
    if recording.sample_rate_hz is None:
        raise InputError(
            f"{path.name} does not record its sample rate",
            expected="the sample rate of the recording",
            fix="pass --sample-rate HZ",
        )
    check_sample_rate(recording.sample_rate_hz, f"{path.name}'s sample rate", rate_range)
    return recording


def _channel_refusal(name: str, found: str, channels: int) -> InputError:
    return InputError(
        f"{name} holds {found}, but the model takes {channels} channels",
        expected=f"the {channels} channels the model was trained on, one column each: (samples, {channels})",
        fix=f"save exactly those {channels} channels as columns, in the order the model's scenario documents",
    )


def _all_channels(array: np.ndarray, name: str, channels: int) -> np.ndarray:
    values = np.asarray(array)
    if values.ndim == 1 and channels == 1:
        values = values[:, None]
    if values.ndim == 2 and values.shape[1] == channels:
        return values.astype(np.float64)
    if values.ndim == 2 and values.shape[0] == channels:
        raise _channel_refusal(name, f"an array of shape {values.shape} ((channels, samples)?)", channels)
    found = f"{values.shape[1]} channels" if values.ndim == 2 else f"an array of shape {values.shape}"
    raise _channel_refusal(name, found, channels)


# -- .npy ------------------------------------------------------------------------------------------


def _npy_refusal(name: str, problem: str) -> InputError:
    return InputError(
        f"{name} is not a usable .npy array ({problem})",
        expected=f"a non-empty numeric array (bool, integer or float; no complex, object or text) saved with "
        f"numpy.save, at most {MAX_ARRAY_BYTES // 1024**3} GiB",
        fix="re-save the recording with numpy.save(path, samples)",
    )


def read_npy_stream(handle: BinaryIO, available_bytes: int, name: str) -> np.ndarray:
    """A checked numeric array from an open ``.npy`` stream holding ``available_bytes`` bytes in all.

    The header is parsed and checked first; nothing is allocated for a header that claims more bytes
    than the stream holds, an empty array, or a non-numeric dtype.
    """
    shape, fortran_order, dtype = read_npy_header(handle, name)
    count = math.prod(shape)
    claimed = count * dtype.itemsize
    data_bytes = available_bytes - handle.tell()
    if claimed > data_bytes:
        raise _npy_refusal(name, f"its header claims {claimed} bytes but the file holds {max(data_bytes, 0)}")
    array = np.empty(count, dtype=dtype)
    try:
        received = handle.readinto(memoryview(array.reshape(-1).view(np.uint8)))
    except (OSError, EOFError, ValueError) as error:
        raise _npy_refusal(name, f"unreadable data: {type(error).__name__}") from None
    if received != claimed:
        raise _npy_refusal(name, "it is truncated")
    array = array.reshape(shape, order="F" if fortran_order else "C")
    exact = dtype.kind not in "iu" or dtype.itemsize < 8
    if not exact and (int(array.max()) > MAX_EXACT_INTEGER or int(array.min()) < -MAX_EXACT_INTEGER):
        raise _npy_refusal(name, "its integers reach beyond ±2**53, which float64 cannot hold exactly")
    return array


def parse_npy_header(handle: BinaryIO, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) of an open ``.npy`` stream's header, any dtype, its shape a tuple of sizes ≥ 0
    (``InputError`` otherwise); the stream is left at the start of the data. Nothing is allocated."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise _npy_refusal(name, f"unknown format version {version}")
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, OverflowError) as error:
        raise _npy_refusal(name, f"unreadable header: {type(error).__name__}") from None
    if not isinstance(shape, tuple) or not all(type(size) is int and size >= 0 for size in shape):
        raise _npy_refusal(name, f"its header's shape {shape} is not a tuple of sizes ≥ 0")
    return shape, bool(fortran_order), dtype


def read_npy_header(handle: BinaryIO, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``parse_npy_header``, and the array must be numeric, non-empty and at most ``MAX_ARRAY_BYTES``."""
    shape, fortran_order, dtype = parse_npy_header(handle, name)
    if dtype.hasobject or dtype.kind not in NUMERIC_DTYPE_KINDS or dtype.fields is not None or dtype.subdtype:
        raise InputError(f"{name} holds {dtype} values", expected="numbers (bool, integer or floating point; "
                         "no complex, object or text values)", fix="save the samples as a numeric array")
    count = math.prod(shape)
    if count == 0:
        raise _npy_refusal(name, f"it is empty (shape {shape})")
    if count * dtype.itemsize > MAX_ARRAY_BYTES:
        raise _npy_refusal(name, f"its header claims {count * dtype.itemsize} bytes, over the limit")
    return shape, fortran_order, dtype


def load_npy(path: Path) -> np.ndarray:
    """A numeric array from ``.npy`` (no pickles; header checked before allocation), or ``InputError``."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO or device would block the open, a folder cannot be read
        raise _npy_refusal(path.name, "it is not a regular file")
    try:
        with path.open("rb") as handle:
            return read_npy_stream(handle, path.stat().st_size, path.name)
    except OSError as error:
        raise _npy_refusal(path.name, f"cannot be read: {error.strerror or type(error).__name__}") from None


def _pick_column(values: np.ndarray, name: str, channel: int | None, columns: int) -> np.ndarray:
    if channel is None:
        raise InputError(
            f"{name} holds {columns} channels",
            expected="one lead, or --channel N to pick one (columns counted from 0)",
            fix="pass --channel N for the ECG lead, or save that lead alone",
        )
    if not 0 <= channel < columns:
        raise InputError(f"{name} has no channel {channel}", expected=f"--channel from 0 to {columns - 1}",
                         fix="pick an existing channel")
    return values[:, channel]


def _single_lead(array: np.ndarray, path: Path, channel: int | None = None) -> np.ndarray:
    values = np.asarray(array)
    if channel not in (None, 0) and (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise InputError(f"{path.name} holds one channel; --channel {channel} picks none",
                         expected="--channel 0, or none, for a one-lead recording", fix="leave out --channel")
    if (values.ndim == 2 and values.shape[1] == 1) or (values.ndim == 2 and values.shape[0] == 1 and channel is None):
        values = values.reshape(-1)
    elif values.ndim == 2:
        values = _pick_column(values, path.name, channel, values.shape[1])
    if values.ndim != 1:
        raise InputError(
            f"{path.name} has shape {values.shape}",
            expected="one lead: shape (samples,) or (samples, 1), or (samples, channels) with --channel",
            fix="save a single lead",
        )
    return values.astype(np.float64)


# -- CSV -------------------------------------------------------------------------------------------


def read_text(path: Path) -> str:
    """The whole file as text: UTF-8 (a BOM is dropped), no NUL bytes, or ``InputError``."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CSV_BYTES:
            raise InputError(f"{path.name} is {size / 1024**2:.0f} MiB of text",
                             expected=f"a CSV of at most {MAX_CSV_BYTES // 1024**2} MiB (it is parsed in memory)",
                             fix="split the recording, or save it as .npy (numpy.save), which is read in bounded "
                                 "memory")
        data = path.read_bytes()
    except OSError as error:  # unreadable (permissions), a folder, gone: one line, as the other formats say it
        raise InputError(f"{path.name} cannot be read ({error.strerror or type(error).__name__})",
                         expected="a readable CSV file", fix="check the path and the file's permissions") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{path.name} is not UTF-8 text (byte {error.start} cannot be decoded)",
            expected="a UTF-8 encoded CSV",
            fix="re-export the file as UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet)",
        ) from None
    if "\x00" in text:
        raise InputError(f"{path.name} contains NUL bytes", expected="a text CSV",
                         fix="re-export the file as UTF-8 CSV")
    return text


def read_csv_rows(path: Path) -> list[list[str]]:
    """Every row of a UTF-8 CSV, each cell at most ``MAX_CELL_CHARS`` characters, or ``InputError``."""
    path = Path(path)
    previous = csv.field_size_limit()
    try:
        csv.field_size_limit(MAX_CELL_CHARS)
        rows = list(csv.reader(io.StringIO(read_text(path), newline="")))
    except csv.Error as error:
        raise InputError(
            f"{path.name} is not a usable CSV ({error})",
            expected=f"comma-separated cells of at most {MAX_CELL_CHARS} characters",
            fix="check the export: one value per cell, quotes closed",
        ) from None
    finally:
        csv.field_size_limit(previous)
    return rows


def read_signal_csv(path: Path, channel: int | None = None) -> np.ndarray:
    """One column of numbers, or the ``ecg`` (signal/value/mv) column of a CSV with a header."""
    return _signal_csv(path, channel)[0]


def _signal_csv(path: Path, channel: int | None) -> tuple[np.ndarray, str | None]:
    """``read_signal_csv``'s samples and the standard lead name of the column's header (None without one)."""
    rows = _signal_rows(path)
    if not rows:
        raise InputError(f"{Path(path).name} is empty", expected="one sample per row", fix="check the export")
    first = [cell.strip() for cell in rows[0]]
    has_header = not all(is_number(cell) for cell in first)
    named = [index for index, name in enumerate(first) if name.lower() in SIGNAL_COLUMN_NAMES] if has_header else []
    if channel is not None:
        if not 0 <= channel < len(first):
            raise InputError(f"{Path(path).name} has no column {channel}",
                             expected=f"--channel from 0 to {len(first) - 1}", fix="pick an existing column")
        column = channel
    elif len(named) == 1 or len(first) == 1:
        column = named[0] if named else 0
    else:
        raise _unnamed_signal(Path(path).name, len(first), first if has_header else [], several=bool(named))
    if has_header:
        rows = rows[1:]
    values = np.empty(len(rows))
    for index, row in enumerate(rows):
        cell = row[column].strip() if column < len(row) else ""
        try:
            values[index] = float(cell)
        except ValueError:
            raise InputError(
                f"{Path(path).name} row {index + 1}: {describe_non_number(cell)}",
                expected="one number per row in the signal column",
                fix="remove or repair that row (write nan for a missing sample)",
            ) from None
    return values, recorded_channel(first[column]) if has_header else None


def _blank(row: list[str]) -> bool:
    return not any(cell.strip() for cell in row)


def _signal_rows(path: Path) -> list[list[str]]:
    """The rows of a signal CSV, blank lines before and after the samples left out. A blank line between samples,
    or a line with another number of cells than the first, is refused: a dropped sample shifts every later beat, and
    a ';'-separated export with decimal commas splits into other cells (read as numbers, they are wrong ones)."""
    rows = read_csv_rows(path)
    first = next((index for index, row in enumerate(rows) if not _blank(row)), len(rows))
    last = next((index for index in range(len(rows) - 1, -1, -1) if not _blank(rows[index])), -1)
    name = Path(path).name
    width = len(rows[first]) if first <= last else 0
    for number in range(first, last + 1):
        row = rows[number]
        if _blank(row):
            raise InputError(f"{name} line {number + 1} is blank, between samples",
                             expected="one sample on every line (a missing sample written as nan)",
                             fix="write nan where a sample is missing, or delete the blank line if none is")
        if len(row) != width:
            raise InputError(f"{name} line {number + 1} has {len(row)} cells and line {first + 1} has {width}",
                             expected="the same number of comma-separated cells on every line, '.' as the decimal "
                                      "point",
                             fix="export with ',' between cells and '.' in numbers (a ';'-separated export with "
                                 "decimal commas splits into other cells)")
    return rows[first : last + 1]


def _unnamed_signal(name: str, columns: int, header: list[str], several: bool) -> InputError:
    """A signal CSV of several columns of which not exactly one is named as the signal: the refusal lists the columns
    whose header is a lead or electrode name, so the fix can say which ``--channel`` picks which lead."""
    leads = [(index, found) for index, cell in enumerate(header) if (found := recorded_channel(cell))]
    listed = ", ".join(f"column {index} is {lead}" for index, lead in leads)
    example = f"e.g. --channel {leads[0][0]} for {leads[0][1]}" if leads else "from 0"
    return InputError(
        f"{name} has {columns} columns and "
        + ("several are named as the signal" if several else "none is named as the signal")
        + (f" ({listed})" if listed else ""),
        expected=f"one column, or a header with one column named one of {', '.join(SIGNAL_COLUMN_NAMES)}",
        fix=f"pass --channel N for the lead the bundle was developed on ({example}; the bundle's manifest names it "
            "under data), keep only that column, or name it 'ecg' in the header row",
    )


def _csv_columns(path: Path, channels: int) -> np.ndarray:
    """Every column of a numeric CSV (a header row is skipped) as ``(samples, channels)``."""
    name = Path(path).name
    rows = _signal_rows(path)
    if not rows:
        raise InputError(f"{name} is empty", expected="one sample per row", fix="check the export")
    if not all(is_number(cell.strip()) for cell in rows[0]):
        rows = rows[1:]
    width = len(rows[0]) if rows else 0
    if width != channels:
        raise _channel_refusal(name, f"{width} columns", channels)
    values = np.empty((len(rows), channels))
    for index, row in enumerate(rows):
        try:
            if len(row) != channels:
                raise ValueError
            values[index] = [float(cell) for cell in row]
        except ValueError:
            raise InputError(
                f"{name} row {index + 1}: not {channels} numbers",
                expected=f"{channels} numbers per row, one per channel",
                fix="remove or repair that row (write nan for a missing sample)",
            ) from None
    return values


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- HDF5 ------------------------------------------------------------------------------------------

H5_ERRORS = (OSError, KeyError, TypeError, ValueError, RuntimeError, OverflowError, AttributeError, IndexError)


def _h5_refusal(path: Path, problem: str) -> InputError:
    return InputError(
        f"{path.name} is not a usable OpenSignals recording ({problem})",
        expected="an OpenSignals .h5 file: <device>/raw/channel_N numeric 1-D datasets, the device's "
        "'sampling rate' and 'resolution' attributes",
        fix="export the recording from OpenSignals as .h5, or convert it to .npy and pass --sample-rate",
    )


def read_h5(path: Path, channel: int | None = None, *, sensor: str | None = "ECG",
            channels: int | None = None) -> Recording:
    """One channel of a PLUX OpenSignals / biosignalsnotebooks HDF5 file (raw ADC counts); with ``channels``,
    that many channels (all the file holds) as ``(samples, channels)``."""
    path = Path(path)
    try:
        import h5py
    except ImportError as error:
        raise InputError(
            f"reading {path.name} needs h5py, which is not installed",
            expected="h5py for .h5 recordings",
            fix="pip install h5py, or convert the recording to .npy",
        ) from error
    try:
        with h5py.File(path, "r") as handle:
            return _read_plux(h5py, handle, path, channel, sensor, channels)
    except InputError:
        raise
    except H5_ERRORS as error:
        raise _h5_refusal(path, f"{type(error).__name__}: {str(error)[:120]}") from None


def _text_attribute(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text_attribute(value.reshape(-1)[0])
    return value if isinstance(value, str) else ""


def _scalar_attribute(value: object) -> object:
    if isinstance(value, np.ndarray):
        return value.reshape(-1)[0].item() if value.size == 1 and value.dtype.kind in "iuf" else None
    return value.item() if isinstance(value, np.generic) else value


def _resolution_range(path: Path, attrs, dataset: str | None = None) -> tuple[float, float] | None:
    """The ADC range of ``dataset`` (``channel_N``; None: the first listed channel) from the device's attributes.

    OpenSignals writes one ``resolution`` entry per stored column: a BITalino file lists the sequence counter
    and digital inputs first (``[4, 1, 1, 1, 1, 10]``), so the analogue channels' entries are the last
    ``len(channels)`` ones, in the order of the ``channels`` attribute.
    """
    if "resolution" not in attrs:
        return None
    bits = np.asarray(attrs["resolution"]).reshape(-1)
    if bits.size == 0 or bits.dtype.kind not in "iuf":
        raise _h5_refusal(path, "the 'resolution' attribute is not a number of bits")
    listed = np.asarray(attrs["channels"]).reshape(-1).tolist() if "channels" in attrs else []
    if listed and bits.size >= len(listed):
        bits = bits[-len(listed):]
        suffix = (dataset or "").removeprefix("channel_")
        number = int(suffix) if suffix.isdigit() else None
        index = listed.index(number) if number in listed else 0
    else:
        index = 0
    chosen = float(bits[index])
    if not (math.isfinite(chosen) and chosen == int(chosen) and 1 <= chosen <= MAX_RESOLUTION_BITS):
        raise _h5_refusal(path, f"the 'resolution' attribute is not 1–{MAX_RESOLUTION_BITS} bits")
    return 0.0, float(2 ** int(chosen) - 1)


def _checked_range(adc_range: tuple[float, float] | None, samples: np.ndarray, path: Path):
    """``adc_range``, or None (unknown) when the samples fall outside it: a range that does not hold the data
    would flag every sample as clipped."""
    if adc_range is None or samples.size == 0:
        return adc_range
    finite = samples[np.isfinite(samples)]
    if finite.size and (finite.min() < adc_range[0] or finite.max() > adc_range[1]):
        logger.warning("the input's samples span %g–%g, outside the file's stated ADC range %g–%g: the range is "
                       "ignored (no rail-based clipping checks)", finite.min(), finite.max(), *adc_range)
        return None
    return adc_range


def _datasets(h5py, raw, path: Path) -> list[str]:
    channels = sorted((name for name in raw if name.startswith("channel_")), key=lambda name: (len(name), name))
    # only the file's own datasets: an external or soft link would open another file (or path) on the device
    datasets = [name for name in channels if isinstance(raw.get(name, getlink=True), h5py.HardLink)
                and isinstance(raw[name], h5py.Dataset)]
    if not datasets:
        raise _h5_refusal(path, "its raw group holds no channel_N datasets")
    return datasets


def _choose_channel(h5py, raw, path: Path, channel: int | None, sensor: str | None) -> str:
    datasets = _datasets(h5py, raw, path)
    if channel is not None:
        name = f"channel_{channel}"
        if name not in datasets:
            raise InputError(f"{path.name} has no dataset {name}", expected=f"one of {', '.join(datasets)}",
                             fix="pick an existing channel with --channel N")
        return name
    sensors = {name: _text_attribute(raw[name].attrs.get("sensor", "")).upper() for name in datasets}
    if sensor is None:  # a signal the stream does not recognise by its label: only a file's one channel is taken
        if len(datasets) == 1:
            return datasets[0]
        labels = ", ".join(f"{name} ({sensors[name] or 'unlabelled'})" for name in datasets)
        raise InputError(f"{path.name} holds {len(datasets)} channels: {labels}",
                         expected="one channel, or --channel N naming the one the model takes",
                         fix="pass --channel N (channel_N in the file)")
    ecg = [name for name, label in sensors.items() if label == sensor]
    if len(ecg) == 1 or (len(datasets) == 1 and not sensors[datasets[0]]):
        return (ecg or datasets)[0]  # the one ECG channel, or the only channel when nothing says what it is
    labels = ", ".join(f"{name} ({sensors[name] or 'unlabelled'})" for name in datasets)
    raise InputError(
        f"{path.name} holds {len(datasets)} channel(s) and " + ("several are" if ecg else "none is")
        + f" labelled {sensor}: " + labels,
        expected=f"one {sensor} channel, or --channel N naming the one to use",
        fix=f"pass --channel N for the {sensor} channel (channel_N in the file)",
    )


def _read_plux(h5py, handle, path: Path, channel: int | None, sensor: str | None = "ECG",
               channels: int | None = None) -> Recording:
    devices = [name for name in handle if isinstance(handle[name], h5py.Group) and "raw" in handle[name]]
    devices = [name for name in devices if isinstance(handle[name]["raw"], h5py.Group)]
    if not devices:
        raise InputError(
            f"{path.name} has no device group with raw channels",
            expected="an OpenSignals file: <device>/raw/channel_N",
            fix="export the recording from OpenSignals as .h5, or convert it to .npy",
        )
    if len(devices) > 1:
        raise _h5_refusal(path, f"it holds {len(devices)} devices; this runtime reads one")
    device = handle[devices[0]]
    raw = device["raw"]
    rate = _scalar_attribute(device.attrs["sampling rate"]) if "sampling rate" in device.attrs else None
    if rate is not None:
        rate_range = SAMPLE_RATE_RANGE_HZ if channels is None and sensor is not None else SIGNAL_RATE_RANGE_HZ
        rate = check_sample_rate(rate, f"{path.name}'s 'sampling rate' attribute", rate_range)
    if channels is not None:
        adc_range = _resolution_range(path, device.attrs)
        datasets = _datasets(h5py, raw, path)
        if len(datasets) != channels:
            raise _channel_refusal(path.name, f"{len(datasets)} channel_N datasets", channels)
        columns = [_read_dataset(raw[name], path, name) for name in datasets]
        if len({column.size for column in columns}) != 1:
            raise _h5_refusal(path, "its channels hold different numbers of samples")
        logger.info("the input: %s (%d samples at %s Hz)", ", ".join(datasets), columns[0].size, rate)  # no
        # device address: a PLUX file names its acquisition device by its MAC, an identifier of the patient's device
        stacked = np.stack(columns, axis=1)
        return Recording(stacked, rate, _checked_range(adc_range, stacked, path), path.name)
    chosen = _choose_channel(h5py, raw, path, channel, sensor)
    samples = _read_dataset(raw[chosen], path, chosen)
    adc_range = _checked_range(_resolution_range(path, device.attrs, chosen), samples, path)
    logger.info("the input: %s (%d samples at %s Hz)", chosen, samples.size, rate)  # no device address (above)
    return Recording(samples, rate, adc_range, path.name)


def _read_dataset(dataset, path: Path, chosen: str) -> np.ndarray:
    """One ``channel_N`` dataset as float64 samples, checked from its metadata before it is read."""
    if dataset.dtype.kind not in NUMERIC_DTYPE_KINDS or dataset.dtype.fields is not None:
        raise _h5_refusal(path, f"{chosen} holds {dataset.dtype} values, not numbers")
    shape = dataset.shape
    if shape is None or len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise _h5_refusal(path, f"{chosen} has shape {shape}, not one channel (samples,) or (samples, 1)"
                          " — a multi-channel dataset is never interleaved")
    count = math.prod(shape)
    if count == 0:
        raise _h5_refusal(path, f"{chosen} holds no samples")
    if count * 8 > MAX_ARRAY_BYTES:
        raise _h5_refusal(path, f"{chosen} holds {count} samples, over the {MAX_ARRAY_BYTES // 1024**3} GiB limit")
    stored = dataset.id.get_storage_size()
    if stored * MAX_H5_EXPANSION < count * dataset.dtype.itemsize:  # unwritten chunks (a fill value) or a bomb
        raise _h5_refusal(path, f"{chosen} declares {count} samples but stores {stored} bytes of them "
                          f"(over {MAX_H5_EXPANSION}× expansion: not a recording)")
    values = dataset[()]
    if values.dtype.kind in "iu" and values.dtype.itemsize >= 8 and (
        int(values.max()) > MAX_EXACT_INTEGER or int(values.min()) < -MAX_EXACT_INTEGER
    ):
        raise _h5_refusal(path, f"{chosen} holds integers beyond ±2**53")
    return np.asarray(values, dtype=np.float64).reshape(-1)
