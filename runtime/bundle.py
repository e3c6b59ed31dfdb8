"""Load a device bundle, verifying it completely before any ONNX Runtime session exists.

Checks, in order, each with its own error: the manifest exists and parses; its schema version
is supported; it is a complete ``runtime.contract.BundleManifest`` (every refused field named);
every listed file is present, has the recorded size and sha256; no unlisted model file sits
beside them; the model's opset is one the installed onnxruntime runs. Only then is a session
created (explicit provider, or the best available one), and its inputs and outputs are checked
against the manifest's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from runtime import session as session_module
from runtime.contract import (
    MANIFEST_NAME,
    MODEL_NAME,
    PROFILE_NAME,
    SUPPORTED_SCHEMA_VERSIONS,
    BundleError,
    BundleManifest,
    FileEntry,
    InputSpec,
    ManifestError,
    OutputSpec,
    UnsupportedBundleError,
    UnsupportedSchemaError,
    manifest_sha256,
    parse_manifest,
)
from runtime.decide import Decision, decide
from runtime.errors import IntegrityError
from runtime.features import FeatureKind
from runtime.hashing import sha256_file
from runtime.readers import InputError
from runtime.session import onnxruntime_max_opset

logger = logging.getLogger(__name__)

MODEL_SUFFIXES = (".onnx", ".ort", ".onnx_data", ".data", ".pb", ".tflite")  # never accepted unlisted

__all__ = [
    "MANIFEST_NAME",
    "MODEL_NAME",
    "SUPPORTED_SCHEMA_VERSIONS",
    "Bundle",
    "BundleError",
    "InputShapeError",
    "ManifestError",
    "MissingFileError",
    "ModelContractError",
    "ModelLoadError",
    "TamperedFileError",
    "TruncatedFileError",
    "UnlistedModelFileError",
    "UnsupportedBundleError",
    "UnsupportedOpsetError",
    "UnsupportedSchemaError",
    "load_bundle",
    "onnxruntime_max_opset",
]


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


def _read_manifest(folder: Path) -> bytes:
    if not folder.is_dir():
        raise MissingFileError(
            f"bundle folder {folder} does not exist",
            expected=f"a folder holding {MANIFEST_NAME} and {MODEL_NAME}",
            fix="pass the path of a published bundle (bundles/<name>)",
        )
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise MissingFileError(
            f"{path} is missing",
            expected=f"{MANIFEST_NAME} in the bundle folder",
            fix="copy the complete bundle folder",
        )
    return path.read_bytes()


def _check_contents(folder: Path, files: Mapping[str, FileEntry]) -> None:
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            raise MissingFileError(
                f"bundle file {name} is missing from {folder}",
                expected=f"every file listed in {MANIFEST_NAME}",
                fix="copy the complete bundle folder again",
            )
        size = path.stat().st_size
        if size != entry.bytes:
            raise TruncatedFileError(
                f"bundle file {name} is {size} bytes but the manifest records {entry.bytes} bytes",
                expected=f"exactly {entry.bytes} bytes",
                fix="the copy is incomplete or altered: copy the bundle again from its source",
            )
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise TamperedFileError(
                f"bundle file {name} has sha256 {digest[:16]}… but the manifest records {entry.sha256[:16]}…",
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


def _check_opset(opset: int) -> None:
    import onnxruntime

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


def _fixed(dimensions) -> tuple[int | None, ...]:
    """A graph shape with symbolic or unknown axes as None."""
    return tuple(d if isinstance(d, int) and not isinstance(d, bool) else None for d in dimensions)


def _check_model_contract(session, manifest: BundleManifest) -> None:
    """The graph takes exactly the manifest's inputs (shapes agreeing where fixed) and gives its outputs."""
    graph_inputs = {item.name: _fixed(item.shape) for item in session.get_inputs()}
    graph_outputs = {item.name: _fixed(item.shape) for item in session.get_outputs()}
    problems = []
    if set(graph_inputs) != {spec.name for spec in manifest.inputs}:
        problems.append(f"the model takes {sorted(graph_inputs)}")
    for spec in manifest.inputs:
        shape = graph_inputs.get(spec.name)
        if shape is not None and (len(shape) != len(spec.shape) or any(
            have is not None and have != want for have, want in zip(shape[1:], spec.shape[1:], strict=False)
        )):
            problems.append(f"input '{spec.name}' is {list(shape)}, the manifest says {list(spec.shape)}")
    missing = [name for name in manifest.output.names if name not in graph_outputs]
    if missing:
        problems.append(f"the model gives {sorted(graph_outputs)}, not {missing}")
    else:
        widths = [graph_outputs[name][-1] if graph_outputs[name] else None for name in manifest.output.names]
        if None not in widths and sum(widths) != manifest.output.columns:
            problems.append(f"outputs {list(manifest.output.names)} have {sum(widths)} columns, the "
                            f"{manifest.output.task} output declares {manifest.output.columns}")
    if problems:
        raise ModelContractError(
            "; ".join(problems),
            expected=f"inputs {[spec.name for spec in manifest.inputs]} and outputs {list(manifest.output.names)} "
            "as the manifest declares them",
            fix="rebuild the bundle; the manifest and model.onnx come from different builds",
        )


class Bundle:
    """A verified bundle with its inference session; ``manifest`` is the typed contract."""

    def __init__(self, path: Path, manifest: BundleManifest, manifest_bytes: bytes, session) -> None:
        self.path = path
        self.manifest = manifest
        self.manifest_sha256 = manifest_sha256(manifest_bytes)
        self.bundle_id: str = manifest.bundle_id(self.manifest_sha256)
        self.model_sha256: str = manifest.model_sha256
        self.session = session
        self.provider: str = session.get_providers()[0]

    @property
    def inputs(self) -> tuple[InputSpec, ...]:
        return self.manifest.inputs

    @property
    def output(self) -> OutputSpec:
        return self.manifest.output

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.output.labels

    @property
    def variant(self) -> str:
        return self.manifest.variant

    @property
    def input_spec(self) -> InputSpec:
        """The model's only input; ``UnsupportedBundleError`` for a model with several (feed ``predict`` a dict)."""
        if len(self.manifest.inputs) != 1:
            names = [spec.name for spec in self.manifest.inputs]
            raise UnsupportedBundleError(
                f"this bundle's model takes {len(names)} inputs ({', '.join(names)})",
                expected="a single-input bundle for the ECG stream and the tabular runner",
                fix="call bundle.predict({name: batch, …}) with one batch per input",
            )
        return self.manifest.inputs[0]

    @property
    def feature_kind(self) -> FeatureKind:
        return self.input_spec.feature_kind

    def _feed(self, spec: InputSpec, batch: np.ndarray) -> np.ndarray:
        values = np.asarray(batch, dtype=np.float32)
        expected = spec.sample_shape
        if values.ndim == len(expected) and values.shape[1:] == expected[:-1] and expected[-1] == 1:
            values = values[..., None]  # (n, samples) for a (n, samples, 1) model
        if values.ndim != len(expected) + 1 or values.shape[1:] != expected:
            raise InputShapeError(
                f"batch of shape {values.shape} for input '{spec.name}' does not fit the model",
                expected=f"(n, {', '.join(map(str, expected))})",
                fix="cut windows / rows exactly as the manifest's inputs section describes",
            )
        return np.ascontiguousarray(values)

    def predict(self, batch: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        """The model's outputs, shape (n, output.columns): one array for a single-input model, or
        ``{input name: array}``. Probabilities when the graph applies its activation (see ``output``)."""
        batches = batch if isinstance(batch, Mapping) else {self.input_spec.name: batch}
        specs = {spec.name: spec for spec in self.manifest.inputs}
        if set(batches) != set(specs):
            raise InputShapeError(
                f"batches for {sorted(batches)}",
                expected=f"one batch for each of the model's inputs {sorted(specs)}",
                fix="pass {input name: batch} for every input the manifest lists",
            )
        feed = {name: self._feed(specs[name], values) for name, values in batches.items()}
        rows = {values.shape[0] for values in feed.values()}
        if len(rows) != 1:
            raise InputShapeError(f"batches of {sorted(rows)} rows", expected="the same rows for every input",
                                  fix="pass one row per sample to every input")
        if rows == {0}:
            return np.zeros((0, self.output.columns), dtype=np.float32)
        outputs = self.session.run(list(self.output.names), feed)
        arrays = [np.asarray(values, dtype=np.float32).reshape(len(values), -1) for values in outputs]
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=1)

    def decide(self, batch: np.ndarray | Mapping[str, np.ndarray]) -> list[Decision]:
        """One decision per sample, by the output's task kind and decision rule."""
        return decide(self.output, self.predict(batch))

    def reference_profile(self) -> dict | None:
        """The bundle's reference_profile.json (feature and prediction distributions), if listed."""
        path = self.path / PROFILE_NAME
        return json.loads(path.read_text()) if PROFILE_NAME in self.manifest.files else None


def load_bundle(path: Path | str, provider: str | None = None, threads: int = 0) -> Bundle:
    """Verify the bundle at ``path`` and open its model; ``BundleError`` subclasses say what is wrong."""
    folder = Path(path)
    raw = _read_manifest(folder)
    manifest = parse_manifest(raw)
    _check_opset(manifest.export.opset)
    _check_contents(folder, manifest.files)
    settings = session_module.SessionSettings(provider=provider, intra_op_threads=threads)
    session = _open_session(folder / MODEL_NAME, settings)
    _check_model_contract(session, manifest)
    bundle = Bundle(folder, manifest, raw, session)
    logger.info(
        "bundle %s (%s, variant %s, %s, model sha256 %s…) runs on %s",
        folder.name,
        bundle.bundle_id,
        bundle.variant,
        manifest.output.task,
        bundle.model_sha256[:12],
        bundle.provider,
    )
    return bundle
