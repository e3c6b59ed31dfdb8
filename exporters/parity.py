"""Numerical parity between a Keras model and the ONNX model made from it.

Optimum-style: every check runs, each logs one ✓/✗ line, every failure is collected,
and only then is one ``ParityError`` raised listing them all.

The Keras reference is ``model(x, training=False)`` evaluated in chunks (not
``model.predict``, which adds callbacks, distribution and its own batching). ONNX
Runtime (CPU execution provider) then runs every sample at each requested batch
size. Running a batch size other than the one used at export, and a last partial
batch, proves that the batch axis really is dynamic; a model with a fixed batch axis
fails those checks instead of silently skipping samples.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from exporters._onnxruntime import cpu_session, run_session_in_batches
from exporters.errors import ParityError
from runtime.session import onnxruntime_errors

if TYPE_CHECKING:
    import keras
    import onnxruntime

logger = logging.getLogger(__name__)

# Parity settings, written once: the export stage (``pipeline.config.ParityConfig``) and the graph
# passes (``exporters.optimization.graph_passes``) use these.
PARITY_TOLERANCE = 1e-4  # max |Δ| between a model's outputs and the outputs of the model it was made from
PARITY_BATCH_SIZES = (1, 32)  # batch 1 (the device case) and a batch: two sizes prove the dynamic batch axis
PARITY_SAMPLES = 256  # real inputs compared (all when fewer); fewer gives a weak claim (logged as a warning)
_REFERENCE_CHUNK = 256  # samples per eager Keras call when computing the reference outputs
_DECISION_THRESHOLD = 0.5  # single-column (sigmoid) outputs: the decision is output > 0.5


@dataclass(frozen=True)
class ParityReport:
    """Outcome of comparing ONNX Runtime outputs with Keras outputs."""

    batch_sizes: tuple[int, ...]  # ONNX Runtime batch sizes that were run
    samples: int  # samples compared at each batch size
    max_abs_diff: float  # worst max |Δ| over all batch sizes (inf if a batch size could not run)
    argmax_agreement: float  # worst fraction (0..1) of samples with the same predicted class
    passed: bool  # every check passed
    failures: list[str] = field(default_factory=list)  # one sentence per failed check

    def to_dict(self) -> dict:
        """A JSON-serializable copy (inf becomes None)."""
        report = asdict(self)
        report["batch_sizes"] = list(self.batch_sizes)
        report["max_abs_diff"] = self.max_abs_diff if np.isfinite(self.max_abs_diff) else None
        return report


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, tolerance: float) -> tuple[float, float]:
    """Return (max |reference − candidate|, fraction of samples whose predicted class agrees).

    Outputs are flattened to ``(samples, values)``. The predicted class is the argmax
    over the values; for single-column outputs it is ``value > 0.5`` (a sigmoid decision).
    A sample whose reference top two classes lie within ``tolerance`` of each other is a
    tie that no numeric comparison at that tolerance can settle: it counts as agreeing
    when the candidate picks either of them.

    Raises:
        ParityError: the two arrays do not have the same shape.
    """
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise ParityError(
            f"output shapes differ: reference {reference.shape}, candidate {candidate.shape}",
            expected="identical output shapes",
            fix="check that the ONNX file was exported from this model",
        )
    if reference.size == 0:
        return 0.0, 1.0
    max_abs_diff = float(np.max(np.abs(reference - candidate)))
    if np.isnan(max_abs_diff):
        max_abs_diff = float("inf")
    samples = reference.shape[0]
    reference_rows = reference.reshape(samples, -1)
    candidate_rows = candidate.reshape(samples, -1)
    if reference_rows.shape[1] == 1:
        agreeing = (reference_rows[:, 0] > _DECISION_THRESHOLD) == (candidate_rows[:, 0] > _DECISION_THRESHOLD)
        return max_abs_diff, float(np.mean(agreeing))
    reference_classes = np.argmax(reference_rows, axis=1)
    candidate_classes = np.argmax(candidate_rows, axis=1)
    agreeing = reference_classes == candidate_classes
    # Tie rule: the candidate's pick is within `tolerance` of the reference's best value.
    reference_best = reference_rows[np.arange(samples), reference_classes]
    reference_at_candidate_pick = reference_rows[np.arange(samples), candidate_classes]
    agreeing |= (reference_best - reference_at_candidate_pick) <= tolerance
    return max_abs_diff, float(np.mean(agreeing))


def check_keras_parity(
    model: keras.Model,
    onnx_path: Path,
    inputs: np.ndarray,
    batch_sizes: tuple[int, ...] = PARITY_BATCH_SIZES,
    tolerance: float = PARITY_TOLERANCE,
    raise_on_failure: bool = True,
) -> ParityReport:
    """Compare ``model`` with the ONNX model at ``onnx_path`` on every sample of ``inputs``.

    Pass = at every batch size, max |Δ| ≤ ``tolerance`` and the predicted class is
    identical on all samples (see ``compare_outputs`` for ties and single-column outputs).

    Raises:
        ParityError: at least one check failed and ``raise_on_failure`` is true. The
            message lists every failure; the error's ``report`` attribute holds the report.
    """
    inputs = np.asarray(inputs, dtype=np.float32)
    batch_sizes = tuple(int(size) for size in batch_sizes)
    failures: list[str] = []
    _validate_arguments(inputs, batch_sizes, tolerance)
    if len(inputs) < PARITY_SAMPLES:
        logger.warning(
            "parity on %d samples only; use at least %d for a meaningful claim", len(inputs), PARITY_SAMPLES
        )

    reference = _keras_outputs(model, inputs)
    session = _cpu_session(Path(onnx_path))
    fixed_batch = _fixed_batch_size(session)

    worst_difference = 0.0
    worst_agreement = 1.0
    for batch_size in batch_sizes:
        label = f"batch size {batch_size}"
        candidate = _run_batches(session, inputs, batch_size, fixed_batch, label, failures)
        if candidate is None:
            worst_difference, worst_agreement = float("inf"), 0.0
            continue
        try:
            difference, agreement = compare_outputs(reference, candidate, tolerance)
        except ParityError as error:
            _record(failures, False, f"{label}: {error.what}")
            worst_difference, worst_agreement = float("inf"), 0.0
            continue
        _record(failures, bool(np.all(np.isfinite(candidate))), f"{label}: ONNX outputs are all finite")
        _record(failures, difference <= tolerance, f"{label}: max |Δ| = {difference:.3g} ≤ {tolerance:g}")
        _record(
            failures,
            agreement == 1.0,
            f"{label}: argmax agreement = {agreement:.4f} ({round(agreement * len(inputs))}/{len(inputs)})",
        )
        worst_difference = max(worst_difference, difference)
        worst_agreement = min(worst_agreement, agreement)

    report = ParityReport(
        batch_sizes=batch_sizes,
        samples=len(inputs),
        max_abs_diff=worst_difference,
        argmax_agreement=worst_agreement,
        passed=not failures,
        failures=failures,
    )
    if failures and raise_on_failure:
        error = ParityError(
            f"{Path(onnx_path).name} does not match the Keras model on {len(failures)} check(s): "
            + "; ".join(failures),
            expected=f"max |Δ| ≤ {tolerance:g} and the same predicted class on all {len(inputs)} samples "
            f"at batch sizes {list(batch_sizes)}",
            fix="re-export the ONNX file from this exact model; if only a few samples differ, look for "
            "layers that behave differently in inference (training=False) or ops with low precision",
        )
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report


def _validate_arguments(inputs: np.ndarray, batch_sizes: tuple[int, ...], tolerance: float) -> None:
    if inputs.ndim < 2 or len(inputs) == 0:
        raise ParityError(
            f"parity inputs have shape {inputs.shape}",
            expected="a non-empty array of shape (samples, *input_shape)",
            fix=f"pass the held-out split's features, e.g. at least {PARITY_SAMPLES} windows",
        )
    if not np.all(np.isfinite(inputs)):
        raise ParityError(
            "parity inputs contain NaN or inf",
            expected="finite inputs",
            fix="clean the data before the parity check",
        )
    if not batch_sizes or min(batch_sizes) < 1:
        raise ParityError(
            f"invalid batch sizes {list(batch_sizes)}",
            expected=f"one or more positive batch sizes, e.g. {PARITY_BATCH_SIZES}",
            fix=f"pass batch_sizes={PARITY_BATCH_SIZES}",
        )
    if not tolerance >= 0:
        raise ParityError(
            f"invalid tolerance {tolerance}",
            expected=f"a non-negative tolerance such as {PARITY_TOLERANCE:g}",
            fix=f"pass tolerance={PARITY_TOLERANCE:g} for fp32 models",
        )


def _record(failures: list[str], passed: bool, description: str) -> None:
    """Log one ✓/✗ line; remember the description when the check failed."""
    if passed:
        logger.info("✓ %s", description)
    else:
        logger.error("✗ %s", description)
        failures.append(description)


def _keras_outputs(model: keras.Model, inputs: np.ndarray) -> np.ndarray:
    import keras

    chunks = []
    for start in range(0, len(inputs), _REFERENCE_CHUNK):
        outputs = model(inputs[start : start + _REFERENCE_CHUNK], training=False)
        if isinstance(outputs, (list, tuple, dict)):
            raise ParityError(
                f"Keras model {model.name!r} returns {len(outputs)} outputs",
                expected="a single output tensor",
                fix="check parity on a single-output model",
            )
        chunks.append(np.asarray(keras.ops.convert_to_numpy(outputs), dtype=np.float32))
    return np.concatenate(chunks, axis=0)


def _cpu_session(onnx_path: Path) -> onnxruntime.InferenceSession:
    session = cpu_session(onnx_path, ParityError)
    if len(session.get_inputs()) != 1:
        raise ParityError(
            f"{onnx_path.name} has {len(session.get_inputs())} inputs",
            expected="a single-input model",
            fix="export a single-input model",
        )
    return session


def _fixed_batch_size(session: onnxruntime.InferenceSession) -> int | None:
    """The input's batch dimension when it is a fixed number, None when it is dynamic."""
    shape = session.get_inputs()[0].shape
    first = shape[0] if shape else None
    return first if isinstance(first, int) and first > 0 else None


def _run_batches(
    session: onnxruntime.InferenceSession,
    inputs: np.ndarray,
    batch_size: int,
    fixed_batch: int | None,
    label: str,
    failures: list[str],
) -> np.ndarray | None:
    """Run all samples at ``batch_size``; record a failure and return None when that is impossible."""
    if fixed_batch is not None and batch_size != fixed_batch:
        _record(
            failures,
            False,
            f"{label}: the ONNX input has a fixed batch axis of {fixed_batch}, so batch size {batch_size} "
            "cannot run (export with a dynamic batch axis)",
        )
        return None
    if fixed_batch is not None and len(inputs) % batch_size:
        _record(
            failures,
            False,
            f"{label}: {len(inputs)} samples leave a partial last batch, which a fixed batch axis "
            f"of {fixed_batch} cannot run",
        )
        return None
    try:
        outputs = run_session_in_batches(session, inputs, batch_size)
    except onnxruntime_errors() as error:
        _record(failures, False, f"{label}: ONNX Runtime failed: {str(error).splitlines()[0]}")
        return None
    batches = -(-len(inputs) // batch_size)
    _record(failures, True, f"{label}: ONNX Runtime ran {len(inputs)} samples in {batches} batch(es)")
    return outputs
