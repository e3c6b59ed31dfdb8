"""Load a device bundle, verifying it completely before any ONNX Runtime session exists.

Checks, in order, each with its own error: the manifest exists and parses; its
schema version is supported; its structure is what this runtime reads; every
listed file is present, has the recorded size and sha256; no unlisted model
file sits beside them; the model's opset is one the installed onnxruntime runs.
Only then is a session created (explicit provider, or the best available one).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime import session as session_module
from runtime.errors import EdgemedError, IntegrityError
from runtime.features import FeatureKind
from runtime.hashing import sha256_file
from runtime.readers import InputError
from runtime.session import onnxruntime_max_opset

logger = logging.getLogger(__name__)

SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
MANIFEST_NAME = "manifest.json"
MODEL_NAME = "model.onnx"
MODEL_SUFFIXES = (".onnx", ".ort", ".onnx_data", ".data", ".pb", ".tflite")  # never accepted unlisted


class BundleError(EdgemedError):
    """The bundle cannot be used; nothing was run."""


class ManifestError(BundleError):
    """manifest.json is unreadable or lacks what the runtime needs."""


class UnsupportedSchemaError(BundleError):
    """The manifest's schema version is not one this runtime reads."""


class MissingFileError(BundleError):
    """A file the manifest lists (or the manifest itself, or the folder) is missing."""


class TruncatedFileError(BundleError):
    """A file's size differs from the size the manifest records (usually a cut-off copy)."""


class TamperedFileError(BundleError, IntegrityError):
    """A file's sha256 differs from the one the manifest records."""


class UnlistedModelFileError(BundleError):
    """A model file is in the bundle folder without being listed (and hashed) in the manifest."""


class UnsupportedOpsetError(BundleError):
    """The model needs a newer ONNX opset than the installed onnxruntime runs."""


class ModelLoadError(BundleError):
    """onnxruntime cannot load model.onnx although its hash matches (a broken build)."""


class ModelContractError(BundleError):
    """The model's inputs/outputs differ from what the manifest declares."""


class InputShapeError(InputError):
    """A batch does not have the shape the bundle's model takes."""


@dataclass(frozen=True)
class InputSpec:
    """The model input contract from the manifest."""

    name: str
    shape: tuple[int | None, ...]  # batch axis first (None)
    dtype: str
    feature_kind: FeatureKind
    sample_rate_hz: float | None
    window_before_s: float | None
    window_after_s: float | None
    feature_names: tuple[str, ...]

    @property
    def r_peak_index(self) -> int:
        """Index of the R-peak in a beat window: round(before × rate), as in training."""
        return round(float(self.window_before_s) * float(self.sample_rate_hz))

    @property
    def window_samples(self) -> int:
        return self.r_peak_index + round(float(self.window_after_s) * float(self.sample_rate_hz))


def _manifest_error(what: str, fix: str = "rebuild the bundle with 'edgemed build'") -> ManifestError:
    return ManifestError(what, expected="a manifest.json written by edgemed's bundle stage", fix=fix)


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise _manifest_error(f"manifest.json: {what}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_number(value: object) -> bool:
    """A positive, finite number below 1e6 (rates in Hz, windows in seconds)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and 0 < value < 1e6


def _read_manifest(folder: Path) -> tuple[dict, bytes]:
    if not folder.is_dir():
        raise MissingFileError(
            f"bundle folder {folder} does not exist",
            expected="a folder holding manifest.json and model.onnx",
            fix="pass the path of a published bundle (bundles/<name>)",
        )
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise MissingFileError(
            f"{path} is missing", expected="manifest.json in the bundle folder", fix="copy the complete bundle folder"
        )
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise _manifest_error(f"manifest.json does not parse as JSON ({type(error).__name__})") from error
    _require(isinstance(manifest, dict), "the top level is not a JSON object")
    version = manifest.get("schema_version")
    if not _is_int(version) or version not in SUPPORTED_SCHEMA_VERSIONS:
        raise UnsupportedSchemaError(
            f"manifest schema version {version!r} is not supported by this runtime",
            expected=f"schema_version in {sorted(SUPPORTED_SCHEMA_VERSIONS)}",
            fix="update the device runtime, or rebuild the bundle with a matching edgemed version",
        )
    return manifest, raw


def _validate_files(manifest: dict) -> dict[str, dict]:
    files = manifest.get("files")
    _require(isinstance(files, dict) and MODEL_NAME in files, f"'files' does not list {MODEL_NAME}")
    for name, entry in files.items():
        _require(
            isinstance(name, str) and name not in ("", ".", "..", MANIFEST_NAME) and not {"/", "\\"} & set(name),
            f"file name {name!r} is not a plain file name",
        )
        _require(
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
            and _is_int(entry.get("bytes"))
            and entry["bytes"] >= 0,
            f"files[{name!r}] is not {{'sha256': <64 hex>, 'bytes': <int>}}",
        )
    return files


def _input_spec(manifest: dict) -> InputSpec:
    spec = manifest.get("input")
    _require(isinstance(spec, dict), "'input' is missing")
    shape = spec.get("shape")
    _require(
        isinstance(shape, list)
        and len(shape) >= 2
        and shape[0] is None
        and all(_is_int(d) and 0 < d < 1 << 24 for d in shape[1:]),
        f"input shape {shape!r} is not [null, positive ints...]",
    )
    _require(isinstance(spec.get("name"), str) and spec.get("dtype") == "float32", "input name/dtype (float32)")
    kind = spec.get("feature_kind")
    _require(isinstance(kind, str) and kind in {item.value for item in FeatureKind}, "input feature_kind")
    names = spec.get("feature_names") or []
    _require(isinstance(names, list) and all(isinstance(n, str) for n in names), "input feature_names")
    result = InputSpec(
        spec["name"],
        (None, *shape[1:]),
        "float32",
        FeatureKind(spec["feature_kind"]),
        spec.get("sample_rate_hz"),
        spec.get("window_before_s"),
        spec.get("window_after_s"),
        tuple(names),
    )
    if result.feature_kind is FeatureKind.WAVEFORM:
        _require(
            all(_is_positive_number(v) for v in (result.sample_rate_hz, result.window_before_s, result.window_after_s)),
            "a waveform input needs positive sample_rate_hz, window_before_s and window_after_s",
        )
        _require(result.window_samples == shape[1], f"window of {result.window_samples} samples vs shape {shape}")
    else:
        _require(len(names) == shape[-1] and len(shape) == 2, "tabular feature_names must match the input width")
    return result


def _check_contents(folder: Path, files: dict[str, dict]) -> None:
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            raise MissingFileError(
                f"bundle file {name} is missing from {folder}",
                expected=f"every file listed in {MANIFEST_NAME}",
                fix="copy the complete bundle folder again",
            )
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise TruncatedFileError(
                f"bundle file {name} is {size} bytes but the manifest records {entry['bytes']} bytes",
                expected=f"exactly {entry['bytes']} bytes",
                fix="the copy is incomplete or altered: copy the bundle again from its source",
            )
        digest = sha256_file(path)
        if digest != entry["sha256"].lower():
            raise TamperedFileError(
                f"bundle file {name} has sha256 {digest[:16]}… but the manifest records {entry['sha256'][:16]}…",
                expected="the content the bundle was built with",
                fix="do not use this bundle; copy it again from a trusted source",
            )
    for path in sorted(folder.iterdir()):
        if path.name in files or path.name == MANIFEST_NAME:
            continue
        if path.name.lower().endswith(MODEL_SUFFIXES):
            raise UnlistedModelFileError(
                f"{path.name} is in the bundle but not listed in the manifest",
                expected="only the files the manifest lists and hashes",
                fix=f"remove {path.name} from the bundle folder",
            )
        logger.warning("ignoring unlisted file %s in bundle %s", path.name, folder)


def _check_opset(manifest: dict) -> None:
    import onnxruntime

    opset = manifest.get("export", {}).get("opset") if isinstance(manifest.get("export"), dict) else None
    _require(_is_int(opset) and opset > 0, "export.opset is not a positive integer")
    supported = onnxruntime_max_opset(onnxruntime.__version__)
    if opset > supported:
        raise UnsupportedOpsetError(
            f"the model uses ONNX opset {opset} but onnxruntime {onnxruntime.__version__} runs at most opset "
            f"{supported}",
            expected=f"opset <= {supported}",
            fix=f"rebuild the bundle with '--opset {supported}', or install a newer onnxruntime on the device",
        )


def _open_session(model_path: Path, settings: session_module.SessionSettings):
    try:
        return session_module.create_session(model_path, settings)
    except session_module.onnxruntime_errors() as error:
        raise ModelLoadError(
            f"onnxruntime cannot load {model_path.name}: {error}",
            expected="a model onnxruntime can run",
            fix="rebuild the bundle; its model was broken when it was built",
        ) from error


class Bundle:
    """A verified bundle with its inference session."""

    def __init__(self, path: Path, manifest: dict, manifest_bytes: bytes, spec: InputSpec, session) -> None:
        self.path = path
        self.manifest = manifest
        self.input_spec = spec
        self.labels: tuple[str, ...] = tuple(manifest["labels"])
        self.thresholds: dict = manifest.get("thresholds") or {}
        self.variant: str = str(manifest.get("variant", "unknown"))
        self.output_name: str = manifest["output"]["name"]
        self.manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
        lineage = manifest.get("lineage") if isinstance(manifest.get("lineage"), dict) else {}
        self.bundle_id: str = str(lineage.get("bundle") or self.manifest_sha256[:12])
        self.model_sha256: str = manifest["files"][MODEL_NAME]["sha256"].lower()
        self.session = session
        self.provider: str = session.get_providers()[0]

    @property
    def feature_kind(self) -> FeatureKind:
        return self.input_spec.feature_kind

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, labels), for a batch shaped like the model input."""
        values = np.asarray(batch, dtype=np.float32)
        expected = self.input_spec.shape[1:]
        if values.ndim == len(expected) and values.shape[1:] == expected[:-1] and expected[-1] == 1:
            values = values[..., None]  # (n, samples) for a (n, samples, 1) model
        if values.ndim != len(expected) + 1 or values.shape[1:] != expected:
            raise InputShapeError(
                f"batch of shape {values.shape} does not fit the model",
                expected=f"(n, {', '.join(map(str, expected))})",
                fix="cut windows / rows exactly as the manifest's input section describes",
            )
        if values.shape[0] == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        outputs = self.session.run([self.output_name], {self.input_spec.name: np.ascontiguousarray(values)})
        return np.asarray(outputs[0], dtype=np.float32)

    def reference_profile(self) -> dict | None:
        """The bundle's reference_profile.json (feature and prediction distributions), if listed."""
        path = self.path / "reference_profile.json"
        return json.loads(path.read_text()) if "reference_profile.json" in self.manifest["files"] else None


def load_bundle(path: Path | str, provider: str | None = None, threads: int = 0) -> Bundle:
    """Verify the bundle at ``path`` and open its model; ``BundleError`` subclasses say what is wrong."""
    folder = Path(path)
    manifest, raw = _read_manifest(folder)
    files = _validate_files(manifest)
    spec = _input_spec(manifest)
    labels = manifest.get("labels")
    _require(isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels), "'labels'")
    _require(isinstance(manifest.get("output"), dict) and isinstance(manifest["output"].get("name"), str), "'output'")
    _require(isinstance(manifest.get("thresholds", {}), dict), "'thresholds' is not an object")
    _check_opset(manifest)
    _check_contents(folder, files)
    settings = session_module.SessionSettings(provider=provider, intra_op_threads=threads)
    session = _open_session(folder / MODEL_NAME, settings)
    inputs, outputs = session.get_inputs(), [output.name for output in session.get_outputs()]
    if len(inputs) != 1 or inputs[0].name != spec.name or manifest["output"]["name"] not in outputs:
        raise ModelContractError(
            f"the model takes {[i.name for i in inputs]} and gives {outputs}",
            expected=f"one input '{spec.name}' and an output '{manifest['output']['name']}'",
            fix="rebuild the bundle; the manifest and model.onnx come from different builds",
        )
    bundle = Bundle(folder, manifest, raw, spec, session)
    logger.info(
        "bundle %s (%s, variant %s, model sha256 %s…) runs on %s",
        folder.name,
        bundle.bundle_id,
        bundle.variant,
        bundle.model_sha256[:12],
        bundle.provider,
    )
    return bundle
