"""The archive format: a folder of recordings, optional reference-beat sidecars, and an index.

```
ARCHIVE/
  archive.json                    the index (optional: without it, every .npy/.csv/.h5/.hea of the folder, by name)
  <name>.npy | .csv | .h5         one recording each, read by ``runtime.readers.read_signal`` as ``edgemed run`` does
  <name>.hea + its signal files   or a WFDB record (PhysioNet's format, ``wfdb_records.py``): one lead in mV
  <name>.annotations.json         optional: that recording's reference beats
  <name>.atr                      or, for a WFDB record without a sidecar, its WFDB beat annotations
```

``archive.json``::

    {"format": "edgemed-archive", "version": 1, "description": "…", "source": {… provenance, free-form …},
     "recordings": [{"name": "mitdb-119-0000", "file": "mitdb-119-0000.npy", "sample_rate_hz": 360.0,
                     "annotations": "mitdb-119-0000.annotations.json", "group": "119", "lead": "MLII"}, …]}

``sample_rate_hz`` is needed for ``.npy`` and ``.csv`` (an ``.h5`` and a WFDB header record their own; null keeps the
file's; a WFDB record's must be its header's); an index names a WFDB record by its ``.hea`` and its annotations by
their file (``"annotations": "119.atr"``);
``annotations`` and ``group`` (what pools recordings in the report, e.g. a patient or a source record) may be null;
``lead`` (optional) names the recording's ECG lead, a standard name (``MLII``, ``II``, ``V5``…; see
``runtime.leads.RECORDED_CHANNEL_NAMES``): the report counts and scores recordings per lead, since a model is
validated only on the leads it was developed on. A file that names its own lead (a WFDB header, a CSV header such as
``MLII``) must name the same one.

``<name>.annotations.json``::

    {"format": "edgemed-beat-annotations", "version": 1, "sample_rate_hz": 360.0,
     "beat_samples": [77, 370, …], "labels": ["non-V", "V", …]}

every reference beat as a sample index at the sidecar's own rate (from the recording's first sample), and one
label per beat, ``"V"`` (a PVC) or ``"non-V"``: any other label is refused (the file is reported and skipped), never
read as non-V. JSON only, never pickle.

The index is read and checked by the driver (``read_archive``: a missing folder, an empty archive or a bad index is
an ``ArchiveError``, and nothing runs). A sidecar is read by the worker that runs its recording
(``read_annotations``): a bad one fails that recording alone, like a bad signal file.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runtime.errors import EdgemedError
from runtime.leads import recorded_channel
from runtime.readers import InputError, check_sample_rate

INDEX_NAME = "archive.json"
INDEX_FORMAT = "edgemed-archive"
ANNOTATIONS_SUFFIX = ".annotations.json"
ANNOTATIONS_FORMAT = "edgemed-beat-annotations"
FORMAT_VERSION = 1
RECORDING_SUFFIXES = (".npy", ".csv", ".h5", ".hdf5", ".hea")  # runtime.readers.read_signal's, and WFDB headers
WFDB_HEADER_SUFFIX = ".hea"  # a WFDB record (pipeline/archive/wfdb_records.py), its beats in RECORD.atr
WFDB_ANNOTATIONS_SUFFIX = ".atr"
MAX_JSON_BYTES = 64 * 1024**2  # an index or sidecar larger than this is refused before it is parsed
POSITIVE_LABEL = "V"  # the label of a PVC in a sidecar (AAMI class V)
NEGATIVE_LABEL = "non-V"  # what the generator writes for every other beat
SIDECAR_LABELS = frozenset({POSITIVE_LABEL, NEGATIVE_LABEL})  # a sidecar's whole vocabulary: anything else is refused


class ArchiveError(EdgemedError):
    """The archive as a whole cannot be used (no folder, no recording, a bad index): nothing was run."""


class AnnotationError(InputError):
    """A recording's annotation sidecar cannot be used: that recording fails, the others run."""


@dataclass(frozen=True)
class ArchiveEntry:
    """One recording of an archive, as the index (or the folder) lists it; paths are absolute."""

    name: str
    file: str
    sample_rate_hz: float | None = None  # None: the rate the file records (HDF5)
    annotations: str | None = None  # the sidecar, or None
    group: str | None = None  # pools recordings in the report (a patient, a source record), or None
    lead: str | None = None  # the index's standard lead name (``runtime.leads.recorded_channel``), or None

    def to_row(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Archive:
    folder: Path
    entries: tuple[ArchiveEntry, ...]
    indexed: bool  # True: listed by archive.json; False: found by scanning the folder
    description: str = ""
    source: dict | None = None  # the index's free-form provenance


@dataclass(frozen=True)
class BeatAnnotations:
    sample_rate_hz: float
    beat_samples: np.ndarray  # int64, strictly increasing, ≥ 0
    labels: tuple[str, ...]  # one per beat

    def beats_s(self) -> np.ndarray:
        return self.beat_samples / self.sample_rate_hz

    def is_positive(self, positive_label: str = POSITIVE_LABEL) -> np.ndarray:
        return np.asarray([label == positive_label for label in self.labels], dtype=bool)


# -- reading ---------------------------------------------------------------------------------------------------------


def _read_json(path: Path, error: type[EdgemedError], what: str) -> object:
    """The parsed JSON of ``path``, refused (as ``error``) when too large, not UTF-8 or not JSON."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_JSON_BYTES + 1)
    except OSError as problem:
        raise error(f"{what} {path.name} cannot be read ({problem.strerror or problem})",
                    expected="a readable JSON file", fix="check the file and its permissions") from None
    if len(data) > MAX_JSON_BYTES:
        raise error(f"{what} {path.name} is over {MAX_JSON_BYTES // 1024**2} MiB",
                    expected="a JSON file of at most that size", fix="split the archive")
    try:
        return json.loads(data.decode("utf-8-sig"), parse_constant=_not_json)
    except RecursionError:
        raise error(f"{what} {path.name} nests deeper than Python can read",
                    expected="the flat JSON layout pipeline/archive/layout.py describes",
                    fix="rewrite the file (edgemed make-archive writes the format)") from None
    except (UnicodeDecodeError, ValueError) as problem:  # json.JSONDecodeError is a ValueError
        raise error(f"{what} {path.name} is not valid JSON ({type(problem).__name__}: {problem})",
                    expected="UTF-8 JSON as pipeline/archive/layout.py describes",
                    fix="rewrite the file (edgemed make-archive writes the format)") from None


def _not_json(constant: str) -> None:
    """NaN and ±Infinity are not JSON: refused on reading (a report written from them could not be)."""
    raise ValueError(f"{constant} is not a JSON number")


def _inside(folder: Path, name: object, field: str, entry: int) -> str:
    """``folder / name`` as an absolute path, refused when ``name`` is not a relative path inside the folder."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ArchiveError(f"recording {entry} of the index has {field} {name!r}",
                           expected="a file name relative to the archive folder, without '..'",
                           fix="list files by their names inside the archive")
    return str((folder / name).absolute())


def _optional_rate(value: object, entry: str) -> float | None:
    if value is None:
        return None
    try:
        return check_sample_rate(value, f"{entry}: sample_rate_hz")
    except InputError as error:
        raise ArchiveError(error.what, expected=error.expected,
                           fix="correct that entry of the index (or leave its sample_rate_hz out and pass "
                               "--sample-rate)") from None


def _index_entries(folder: Path, index: object) -> tuple[ArchiveEntry, ...]:
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or index.get("version") != FORMAT_VERSION:
        raise ArchiveError(f"{folder / INDEX_NAME} is not an edgemed archive index",
                           expected=f'a JSON object with "format": "{INDEX_FORMAT}", "version": {FORMAT_VERSION}',
                           fix="rewrite the index as pipeline/archive/layout.py describes, or remove it to scan "
                               "the folder")
    listed = index.get("recordings")
    if not isinstance(listed, list):
        raise ArchiveError(f"{folder / INDEX_NAME} has no 'recordings' list", expected="a list of recordings",
                           fix="list the recordings in the index")
    entries: list[ArchiveEntry] = []
    seen: dict[str, int] = {}  # name or file → the entry that has it: a recording listed twice is scored twice
    for number, item in enumerate(listed, start=1):  # numbered from 1, as people count the entries
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ArchiveError(f"recording {number} of the index is {str(item)[:80]!r}",
                               expected='an object with a "name" and a "file"', fix="correct the index")
        group = item.get("group")
        entries.append(ArchiveEntry(
            name=item["name"],
            file=_inside(folder, item.get("file"), "file", number),
            sample_rate_hz=_optional_rate(item.get("sample_rate_hz"), f"recording {number} of the index "
                                          f"({item['name'][:80]!r})"),
            annotations=None if item.get("annotations") is None
            else _inside(folder, item["annotations"], "annotations", number),
            group=None if group is None else str(group),
            lead=_optional_lead(item.get("lead"), number),
        ))
        # one file may be listed once per lead (a two-channel WFDB record), never twice for the same one
        for what, key in ((f"name {item['name'][:80]!r}", f"name:{item['name']}"),
                          (f"file {item.get('file')!r} and lead", f"file:{entries[-1].file}:{entries[-1].lead}")):
            earlier = seen.setdefault(key, number)
            if earlier != number:
                raise ArchiveError(f"recordings {earlier} and {number} of the index have the same {what}",
                                   expected="every recording listed once, under its own name (a file once per lead)",
                                   fix="remove the repeated entry, or name the recordings apart")
    return tuple(entries)


def _optional_lead(value: object, number: int) -> str | None:
    """An index entry's ``lead`` as its standard name, or ``ArchiveError`` (the value is shown only when it is a
    lead name: an index is written by people, and a wrong cell may hold anything)."""
    if value is None:
        return None
    lead = recorded_channel(value) if isinstance(value, str) else None
    if lead is None:
        raise ArchiveError(f"recording {number} of the index has a 'lead' that is no standard lead name",
                           expected="null, or a lead such as MLII, II, V1 … V6, I, III, aVR, aVL, aVF",
                           fix="name the lead the recording was taken from, or leave 'lead' out")
    return lead


def _scanned_entries(folder: Path, sample_rate_hz: float | None) -> tuple[ArchiveEntry, ...]:
    entries = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in RECORDING_SUFFIXES or path.name.startswith("."):
            continue
        sidecar = path.with_name(path.stem + ANNOTATIONS_SUFFIX)
        if not sidecar.is_file() and path.suffix.lower() == WFDB_HEADER_SUFFIX:
            sidecar = path.with_suffix(WFDB_ANNOTATIONS_SUFFIX)  # a WFDB record's reference beats
        entries.append(ArchiveEntry(path.stem, str(path.absolute()), sample_rate_hz,
                                    str(sidecar.absolute()) if sidecar.is_file() else None))
    return tuple(entries)


def read_archive(folder: Path | str, sample_rate_hz: float | None = None) -> Archive:
    """The archive's recordings: from ``archive.json`` when there is one, else every recording file of the folder.

    ``sample_rate_hz`` is the rate of the recordings that do not state one (index entries without a rate, every file
    of an unindexed folder); a rate in the index wins.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ArchiveError(f"archive folder {folder} does not exist" if not folder.exists()
                           else f"archive {folder} is not a folder",
                           expected=f"a folder of recordings ({', '.join(RECORDING_SUFFIXES)}), optionally with "
                                    f"{INDEX_NAME}",
                           fix="pass the archive folder with --archive (edgemed make-archive writes one)")
    index_path = folder / INDEX_NAME
    if index_path.is_file():
        index = _read_json(index_path, ArchiveError, "archive index")
        entries = _index_entries(folder, index)
        if sample_rate_hz is not None:
            # only the rate is filled in: the entry's lead (and every other field) stays as the index gives it
            entries = tuple(entry if entry.sample_rate_hz is not None
                            else dataclasses.replace(entry, sample_rate_hz=sample_rate_hz) for entry in entries)
        archive = Archive(folder, entries, True, str(index.get("description", "")),
                          index.get("source") if isinstance(index.get("source"), dict) else None)
    else:
        archive = Archive(folder, _scanned_entries(folder, sample_rate_hz), False)
    if not archive.entries:
        raise ArchiveError(f"archive {folder} holds no recording",
                           expected=f"recordings listed in {INDEX_NAME}, or {', '.join(RECORDING_SUFFIXES)} files "
                                    "in the folder",
                           fix="point --archive at a folder of recordings (edgemed make-archive writes one)")
    repeated = sorted(name for name, count in Counter(entry.name for entry in archive.entries).items() if count > 1)
    if repeated:
        raise ArchiveError(f"archive {folder} lists {', '.join(repeated[:5])} more than once",
                           expected="one entry per recording name",
                           fix="give every recording its own name" if archive.indexed else
                           "rename one of the files that share a name (a recording is named by its file name "
                           "without the suffix: rec1.npy and rec1.csv are both 'rec1')")
    return archive


def read_annotations(path: Path | str) -> BeatAnnotations:
    """A checked annotation sidecar, or ``AnnotationError``."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"annotation file {path.name} does not exist", expected="the sidecar the index names",
                              fix="restore it, or drop 'annotations' from the recording's index entry")
    data = _read_json(path, AnnotationError, "annotation file")
    if not isinstance(data, dict) or data.get("format") != ANNOTATIONS_FORMAT or data.get("version") != FORMAT_VERSION:
        raise AnnotationError(f"{path.name} is not an edgemed beat-annotation file",
                              expected=f'a JSON object with "format": "{ANNOTATIONS_FORMAT}", '
                                       f'"version": {FORMAT_VERSION}',
                              fix="rewrite it as pipeline/archive/layout.py describes")
    try:
        rate = check_sample_rate(data.get("sample_rate_hz"), f"{path.name}'s sample_rate_hz")
    except InputError as error:
        raise AnnotationError(error.what, expected=error.expected,
                              fix="write the rate the beat positions count at") from None
    samples, labels = data.get("beat_samples"), data.get("labels")
    if (not isinstance(samples, list) or not isinstance(labels, list) or len(samples) != len(labels)
            or not all(isinstance(value, int) and not isinstance(value, bool) for value in samples)
            or not all(isinstance(label, str) for label in labels)):
        raise AnnotationError(f"{path.name}: beat_samples and labels are not two aligned lists",
                              expected="integer sample indices and one string label per beat",
                              fix="write one label per beat position")
    if samples and not -(2**63) <= min(samples) <= max(samples) < 2**63:
        raise AnnotationError(f"{path.name}: a beat position is beyond any recording's length",
                              expected="sample indices from 0 that fit a 64-bit integer",
                              fix="write beat positions in samples at the file's sample_rate_hz")
    unknown = sorted(set(labels) - SIDECAR_LABELS)
    if unknown:  # "PVC", "v" or an MIT-BIH symbol would be read as non-V and turn every true PVC into a false alarm
        shown = [label for label in unknown if label.isascii() and len(label) <= 8 and label.isprintable()][:3]
        raise AnnotationError(f"{path.name}: {len(unknown)} label(s) are neither {POSITIVE_LABEL!r} nor "
                              f"{NEGATIVE_LABEL!r}" + (f" (e.g. {', '.join(map(repr, shown))})" if shown else ""),
                              expected=f"one of {POSITIVE_LABEL!r} (a PVC, AAMI class V) or {NEGATIVE_LABEL!r} (every "
                                       "other beat) per beat",
                              fix="map the annotation's own classes onto V and non-V (MIT-BIH: V → V, every other "
                                  "beat symbol → non-V) and write the sidecar again")
    positions = np.asarray(samples, dtype=np.int64) if samples else np.zeros(0, np.int64)
    if positions.size and (positions[0] < 0 or np.any(np.diff(positions) <= 0)):
        raise AnnotationError(f"{path.name}: beat positions are negative, unsorted or repeated",
                              expected="strictly increasing sample indices from 0",
                              fix="sort the beats and drop duplicates")
    return BeatAnnotations(rate, positions, tuple(labels))


# -- writing ---------------------------------------------------------------------------------------------------------


def write_annotations(path: Path, sample_rate_hz: float, beat_samples: np.ndarray, labels: Sequence[str]) -> None:
    positions = [int(value) for value in np.asarray(beat_samples).tolist()]
    if len(positions) != len(labels) or not math.isfinite(sample_rate_hz):
        raise ArchiveError(f"{path.name}: {len(positions)} beats and {len(labels)} labels at {sample_rate_hz} Hz",
                           expected="one label per beat and a finite rate", fix="pass aligned annotations")
    document = {"format": ANNOTATIONS_FORMAT, "version": FORMAT_VERSION, "sample_rate_hz": float(sample_rate_hz),
                "beat_samples": positions, "labels": list(labels)}
    path.write_text(json.dumps(document, separators=(",", ":")) + "\n")


def write_index(folder: Path, entries: Sequence[dict], description: str, source: dict | None = None) -> Path:
    """``archive.json`` listing ``entries`` (index entries as the module docstring shows; file names relative)."""
    document = {"format": INDEX_FORMAT, "version": FORMAT_VERSION, "description": description, "source": source or {},
                "recordings": list(entries)}
    path = folder / INDEX_NAME
    path.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
    return path
