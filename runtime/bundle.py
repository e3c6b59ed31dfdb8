"""Load a device bundle, verifying it completely before any ONNX Runtime session exists.

Checks, in order, each refusal with its own error (``runtime.trust`` and the contract):

1. the folder is opened once (a published ``bundles/<name>`` may be a link; nothing inside may be);
   manifest.json and manifest.sig are read as plain files (a symlink is refused);
2. trust: the Ed25519 signature over manifest.json's exact bytes by a key of the device's trust store
   (unsigned, a bad signature and an unknown key are refused; unsigned only runs under the explicit
   development allowance, with a WARNING each time);
3. the manifest parses into a complete ``runtime.contract.BundleManifest`` of a supported schema
   (types, ranges, thresholds, windows within the input, labels against the task kind);
4. rollback: its ``release.bundle_version`` is not older than the newest this device has run;
5. the model's opset is one the installed onnxruntime runs;
6. the tree: no links or special files anywhere, no unlisted model file anywhere (subfolders too);
   every listed file is read once, with the recorded size and sha256.

Only then is a session created — from the very bytes that were hashed, never the file again — and its
inputs (names, shapes, dtypes) and outputs (names, total width = the label count) are checked against
the manifest's before any inference. A verified bundle's version is then recorded as run.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
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
    InputSpec,
    ManifestError,
    OutputSpec,
    Release,
    UnsupportedBundleError,
    UnsupportedSchemaError,
    manifest_sha256,
    parse_manifest,
)
from runtime.cpu import kernel_differences
from runtime.decide import Decision, decide
from runtime.features import FeatureKind
from runtime.readers import InputError
from runtime.session import onnxruntime_max_opset
from runtime.trust import (
    MODEL_SUFFIXES,
    BadSignatureError,
    BundleFolder,
    LinkInBundleError,
    MissingFileError,
    RollbackError,
    TamperedFileError,
    TruncatedFileError,
    TrustPolicy,
    UnknownKeyError,
    UnlistedModelFileError,
    UnreadableFileError,
    UnsignedBundleError,
    Verdict,
    check_release,
    check_signature,
    record_run,
)

logger = logging.getLogger(__name__)

READ_ATTEMPTS = 3  # a bundle republished while it is read is read again from its new folder, at most this often
# What the manifest's dtype means in ONNX Runtime's type names; outputs may be any float (predict casts).
ONNX_INPUT_TYPES = {"float32": "tensor(float)"}
FLOAT_OUTPUT_TYPES = frozenset({"tensor(float)", "tensor(float16)", "tensor(double)"})

__all__ = [
    "MANIFEST_NAME",
    "MODEL_NAME",
    "MODEL_SUFFIXES",
    "SUPPORTED_SCHEMA_VERSIONS",
    "BadSignatureError",
    "Bundle",
    "BundleError",
    "InputShapeError",
    "LinkInBundleError",
    "ManifestError",
    "MissingFileError",
    "ModelContractError",
    "ModelLoadError",
    "RollbackError",
    "TamperedFileError",
    "TruncatedFileError",
    "TrustPolicy",
    "UnknownKeyError",
    "UnlistedModelFileError",
    "UnreadableFileError",
    "UnsignedBundleError",
    "UnsupportedBundleError",
    "UnsupportedOpsetError",
    "UnsupportedSchemaError",
    "load_bundle",
    "onnxruntime_max_opset",
]


class UnsupportedOpsetError(BundleError):
    """The model needs a newer ONNX opset than the installed onnxruntime runs."""


class ModelLoadError(BundleError):
    """onnxruntime cannot load model.onnx although its hash matches (a broken build)."""


class ModelContractError(BundleError):
    """The model's inputs/outputs differ from what the manifest declares."""


class InputShapeError(InputError):
    """A batch does not have the shape the bundle's model takes."""


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


def _open_session(model: bytes, settings: session_module.SessionSettings):
    """A session on exactly these (verified) bytes."""
    try:
        return session_module.create_session(model, settings)
    except session_module.onnxruntime_errors() as error:
        raise ModelLoadError(
            f"onnxruntime cannot load {MODEL_NAME}: {error}",
            expected="a model onnxruntime can run",
            fix="rebuild the bundle; its model was broken when it was built",
        ) from error


def _fixed(dimensions) -> tuple[int | None, ...]:
    """A graph shape with symbolic or unknown axes as None."""
    return tuple(d if isinstance(d, int) and not isinstance(d, bool) else None for d in dimensions or ())


def _widths(session, manifest: BundleManifest) -> dict[str, int]:
    """Columns each declared output gives per sample: from the graph's shapes where fixed, else from one
    probe run on zeros of the declared input shapes (a model whose exporter left the width symbolic)."""
    names = manifest.output.names
    shapes = {item.name: _fixed(item.shape) for item in session.get_outputs()}
    if all(len(shapes[name]) >= 1 and None not in shapes[name][1:] for name in names):
        return {name: math.prod(shapes[name][1:]) for name in names}
    feed = {spec.name: np.zeros((1, *spec.sample_shape), dtype=np.float32) for spec in manifest.inputs}
    try:
        outputs = session.run(list(names), feed)
    except session_module.onnxruntime_errors() as error:
        raise ModelContractError(
            f"the model's output width is not fixed in the graph and a probe run on zeros failed: {error}",
            expected=f"outputs {list(names)} with {manifest.output.columns} columns for inputs shaped as declared",
            fix="rebuild the bundle; the manifest and model.onnx do not fit together",
        ) from error
    return {name: int(np.asarray(values).size) for name, values in zip(names, outputs, strict=True)}


def _check_model_contract(session, manifest: BundleManifest) -> None:
    """Before any inference: the graph takes exactly the manifest's inputs (names, dtypes, shapes where fixed)
    and gives its outputs as floats whose widths add up to the output's columns (one per label)."""
    graph_inputs = {item.name: item for item in session.get_inputs()}
    graph_outputs = {item.name: item for item in session.get_outputs()}
    problems = []
    if set(graph_inputs) != {spec.name for spec in manifest.inputs}:
        problems.append(f"the model takes {sorted(graph_inputs)}")
    for spec in manifest.inputs:
        item = graph_inputs.get(spec.name)
        if item is None:
            continue
        shape = _fixed(item.shape)
        if len(shape) != len(spec.shape) or any(
            have is not None and have != want for have, want in zip(shape[1:], spec.shape[1:], strict=False)
        ):
            problems.append(f"input '{spec.name}' is {list(shape)}, the manifest says {list(spec.shape)}")
        if item.type != ONNX_INPUT_TYPES[spec.dtype]:
            problems.append(f"input '{spec.name}' is a {item.type}, the manifest says {spec.dtype}")
    missing = [name for name in manifest.output.names if name not in graph_outputs]
    if missing:
        problems.append(f"the model gives {sorted(graph_outputs)}, not {missing}")
    else:
        problems += [f"output '{name}' is a {graph_outputs[name].type}, not a float tensor"
                     for name in manifest.output.names if graph_outputs[name].type not in FLOAT_OUTPUT_TYPES]
        if not problems:
            widths = _widths(session, manifest)
            if sum(widths.values()) != manifest.output.columns:
                problems.append(f"outputs {list(manifest.output.names)} have {sum(widths.values())} columns, the "
                                f"{manifest.output.task} output declares {manifest.output.columns} "
                                f"(labels {list(manifest.output.labels)})")
    if problems:
        raise ModelContractError(
            "; ".join(problems),
            expected=f"inputs {[spec.name for spec in manifest.inputs]} and outputs {list(manifest.output.names)} "
            "as the manifest declares them",
            fix="rebuild the bundle; the manifest and model.onnx come from different builds",
        )


class Bundle:
    """A verified bundle with its inference session; ``manifest`` is the typed contract."""

    def __init__(
        self,
        path: Path,
        manifest: BundleManifest,
        manifest_bytes: bytes,
        session,
        contents: Mapping[str, bytes] | None = None,
        signed_by: str | None = None,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.manifest_sha256 = manifest_sha256(manifest_bytes)
        self.bundle_id: str = manifest.bundle_id(self.manifest_sha256)
        self.model_sha256: str = manifest.model_sha256
        self.session = session
        self.provider: str = session.get_providers()[0]
        self.signed_by = signed_by  # the verifying key's id; None: loaded unverified (development allowance)
        self._contents = dict(contents or {})  # the verified bytes of the listed files besides the model

    @property
    def release(self) -> Release | None:
        """Version and signing key stamped at publish (None for a bundle taken from the build's cache)."""
        return self.manifest.release

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
        if PROFILE_NAME not in self.manifest.files:
            return None
        verified = self._contents.get(PROFILE_NAME)  # the bytes hashed at load, not the file again
        return json.loads(verified if verified is not None else (self.path / PROFILE_NAME).read_bytes())


@dataclass(frozen=True)
class _Verified:
    """What the checks before any session established."""

    manifest: BundleManifest
    manifest_bytes: bytes
    contents: dict[str, bytes]  # every listed file's bytes, size and sha256 checked
    verdict: Verdict


def _verify(folder: BundleFolder, policy: TrustPolicy) -> _Verified:
    name = str(folder.path)
    raw = folder.read(MANIFEST_NAME)
    verdict = check_signature(policy, raw, folder.read_signature(), name)
    manifest = parse_manifest(raw)
    check_release(policy, verdict, manifest, name)
    _check_opset(manifest.export.opset)
    folder.check_tree(manifest.files)
    return _Verified(manifest, raw, folder.read_listed(manifest.files), verdict)


def _read_verified(path: Path, policy: TrustPolicy) -> _Verified:
    """``_verify`` on one opened folder; again on the new one if a publish swapped the link meanwhile."""
    attempt = 1
    while True:
        folder = BundleFolder(path)
        try:
            with folder:
                return _verify(folder, policy)
        except BundleError:  # read from a folder a publish replaced meanwhile: any refusal may be that
            if attempt >= READ_ATTEMPTS or not folder.moved():
                raise
        logger.info("bundle %s was republished while it was read; reading the new one", path)
        attempt += 1


def load_bundle(
    path: Path | str, provider: str | None = None, threads: int = 0, *, trust: TrustPolicy | None = None
) -> Bundle:
    """Verify the bundle at ``path`` under ``trust`` and open its model; ``BundleError`` subclasses say what is wrong.

    ``trust`` defaults to ``TrustPolicy()``, which trusts no key and refuses unsigned bundles: a device passes
    ``TrustPolicy.from_store(folder)``; build-machine tools and tests may pass ``TrustPolicy.development()``.
    """
    folder = Path(path)
    policy = TrustPolicy() if trust is None else trust
    verified = _read_verified(folder, policy)
    manifest = verified.manifest
    settings = session_module.SessionSettings(provider=provider, intra_op_threads=threads)
    session = _open_session(verified.contents.pop(MODEL_NAME), settings)
    _check_model_contract(session, manifest)
    bundle = Bundle(folder, manifest, verified.manifest_bytes, session, verified.contents, verified.verdict.key_id)
    record_run(policy, verified.verdict, manifest, bundle.manifest_sha256)
    logger.info(
        "bundle %s (%s, variant %s, %s, model sha256 %s…, %s) runs on %s",
        folder.name,
        bundle.bundle_id,
        bundle.variant,
        manifest.output.task,
        bundle.model_sha256[:12],
        f"signed by {bundle.signed_by}" if bundle.signed_by else "NOT VERIFIED",
        bundle.provider,
    )
    measured_on = manifest.selection.measured_on
    differences = kernel_differences(bundle.variant, measured_on)
    if differences is not None:  # reduced precision: other kernels on another CPU give other answers (runtime.cpu)
        logger.warning(
            "bundle %s ships the %s variant, validated on %s: %s, so ONNX Runtime runs other %s kernels here, whose "
            "answers can differ from the validated ones, decisions included; validate this bundle on this CPU class "
            "(make cpu-check, or build it there) before clinical use",
            folder.name, bundle.variant, measured_on.get("cpu_model", "another CPU"), differences, bundle.variant)
    return bundle
