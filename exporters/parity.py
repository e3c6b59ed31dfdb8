"""Numerical parity between a Keras model and the ONNX model made from it.

Optimum-style: every check runs, each logs one ✓/✗ line, every failure is collected,
and only then is one ``ParityError`` raised listing them all.

The Keras reference is ``model(x, training=False)`` evaluated in chunks (not
``model.predict``, which adds callbacks, distribution and its own batching). ONNX
Runtime (CPU execution provider) then runs every sample at each requested batch
size. Running a batch size other than the one used at export, and a last partial
batch, proves that the batch axis really is dynamic; a model with a fixed batch axis
fails those checks instead of silently skipping samples.

Inputs are one array, or a mapping input name → array for a model with several inputs
(every input is batched with the same rows); every output is compared, in graph order.
When the exported graph carries an in-graph head (``exporters.heads``), the reference is
the Keras output run through the same head in numpy. The decision compared depends on the
task kind (``compare_outputs``): argmax, a 0.5 threshold, or none for values-only tasks.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from exporters._onnxruntime import cpu_session, run_session_outputs_in_batches, session_feeds
from exporters.errors import ParityError
from exporters.heads import HeadKind, head_reference, parse_head_kind
from exporters.inputs import ModelInputs, as_float32, check_inputs, is_mapping, sample_count, select
from exporters.task_detection import TaskKind, parse_task_kind
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
    max_abs_diff: float  # worst max |Δ| over all batch sizes and outputs (inf if a batch size could not run)
    # Worst fraction (0..1) of samples with the same decision (argmax, or > 0.5 for binary/multilabel
    # tasks); None for tasks without a decision (regression, anomaly).
    argmax_agreement: float | None
    passed: bool  # every check passed
    failures: list[str] = field(default_factory=list)  # one sentence per failed check
    outputs: tuple[str, ...] = ()  # the ONNX outputs compared, in graph order

    def to_dict(self) -> dict:
        """A JSON-serializable copy (inf becomes None)."""
        report = asdict(self)
        report["batch_sizes"] = list(self.batch_sizes)
        report["outputs"] = list(self.outputs)
        report["max_abs_diff"] = self.max_abs_diff if np.isfinite(self.max_abs_diff) else None
        return report


def compare_outputs(
    reference: np.ndarray, candidate: np.ndarray, tolerance: float, kind: TaskKind | str | None = None
) -> tuple[float, float | None]:
    """Return (max |reference − candidate|, fraction of samples whose decision agrees).

    Outputs are flattened to ``(samples, values)``. The decision depends on ``kind``:

    * None (the default): the argmax over the values; for single-column outputs ``value > 0.5``;
    * ``multiclass``: the argmax;
    * ``binary`` / ``multilabel``: every column's ``value > 0.5`` (a sample agrees when all do);
    * ``regression`` / ``anomaly``: no decision — the agreement is None, only values count.

    A reference that no numeric comparison at ``tolerance`` can settle counts as agreeing:
    top two classes within ``tolerance`` of each other (argmax), or with ``kind`` binary/
    multilabel a value within ``tolerance`` of 0.5.

    Raises:
        ParityError: the two arrays do not have the same shape.
    """
    task = parse_task_kind(kind) if kind is not None else None
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise ParityError(
            f"output shapes differ: reference {reference.shape}, candidate {candidate.shape}",
            expected="identical output shapes",
            fix="check that the ONNX file was exported from this model",
        )
    decided = task not in (TaskKind.REGRESSION, TaskKind.ANOMALY)
    if reference.size == 0:
        return 0.0, 1.0 if decided else None
    max_abs_diff = float(np.max(np.abs(reference - candidate)))
    if np.isnan(max_abs_diff):
        max_abs_diff = float("inf")
    if not decided:
        return max_abs_diff, None
    samples = reference.shape[0]
    reference_rows = reference.reshape(samples, -1)
    candidate_rows = candidate.reshape(samples, -1)
    if task in (TaskKind.BINARY, TaskKind.MULTILABEL):
        same = (reference_rows > _DECISION_THRESHOLD) == (candidate_rows > _DECISION_THRESHOLD)
        same |= np.abs(reference_rows - _DECISION_THRESHOLD) <= tolerance  # a tie at the threshold
        return max_abs_diff, float(np.mean(np.all(same, axis=1)))
    if task is None and reference_rows.shape[1] == 1:
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


def decision_name(kind: TaskKind | str | None) -> str:
    """How ``compare_outputs`` decides for ``kind``: for messages."""
    task = parse_task_kind(kind) if kind is not None else None
    if task in (TaskKind.BINARY, TaskKind.MULTILABEL):
        return "decision (> 0.5) agreement"
    return "argmax agreement"


def check_keras_parity(
    model: keras.Model,
    onnx_path: Path,
    inputs: ModelInputs,
    batch_sizes: tuple[int, ...] = PARITY_BATCH_SIZES,
    tolerance: float = PARITY_TOLERANCE,
    raise_on_failure: bool = True,
    *,
    head: HeadKind | str | None = None,
    task: TaskKind | str | None = None,
) -> ParityReport:
    """Compare ``model`` with the ONNX model at ``onnx_path`` on every sample of ``inputs``.

    ``inputs``: one array, or a mapping from every model input name to its array. Pass = at
    every batch size and for every output, max |Δ| ≤ ``tolerance`` and the same decision on
    all samples (``compare_outputs`` with ``kind=task``; no decision for regression/anomaly).
    ``head``: the in-graph head ``exporters.heads.append_head`` added to the ONNX model; the
    Keras outputs go through the same head (in numpy) before the comparison.

    Raises:
        ParityError: bad arguments or inputs whose names do not match the model's, or (when
            ``raise_on_failure``) at least one failed check. The message lists every failure;
            the error's ``report`` attribute holds the report.
    """
    inputs = as_float32(inputs)
    batch_sizes = tuple(int(size) for size in batch_sizes)
    task = parse_task_kind(task) if task is not None else None
    head = parse_head_kind(head) if head is not None else None
    failures: list[str] = []
    _validate_arguments(inputs, batch_sizes, tolerance)
    samples = sample_count(inputs)
    if samples < PARITY_SAMPLES:
        logger.warning("parity on %d samples only; use at least %d for a meaningful claim", samples, PARITY_SAMPLES)

    session = _cpu_session(Path(onnx_path))
    session_feeds(session, inputs)  # names must match before anything runs
    reference = _keras_outputs(model, inputs)
    if head is not None:
        reference = [head_reference(head, _single(reference, model, head), inputs)]
    names = tuple(output.name for output in session.get_outputs())
    fixed_batch = _fixed_batch_size(session)

    decided = task not in (TaskKind.REGRESSION, TaskKind.ANOMALY)
    worst_difference = 0.0
    worst_agreement: float | None = 1.0 if decided else None
    for batch_size in batch_sizes:
        label = f"batch size {batch_size}"
        candidates = _run_batches(session, inputs, batch_size, fixed_batch, label, failures)
        if candidates is not None and len(candidates) != len(reference):
            _record(failures, False, f"{label}: the ONNX model has {len(candidates)} outputs, Keras {len(reference)}")
            candidates = None
        if candidates is None:
            worst_difference, worst_agreement = float("inf"), 0.0 if decided else None
            continue
        for name, expected, candidate in zip(names, reference, candidates, strict=True):
            where = label if len(names) == 1 else f"{label}, output {name!r}"
            try:
                difference, agreement = compare_outputs(expected, candidate, tolerance, task)
            except ParityError as error:
                _record(failures, False, f"{where}: {error.what}")
                worst_difference, worst_agreement = float("inf"), 0.0 if decided else None
                continue
            _record(failures, bool(np.all(np.isfinite(candidate))), f"{where}: ONNX outputs are all finite")
            _record(failures, difference <= tolerance, f"{where}: max |Δ| = {difference:.3g} ≤ {tolerance:g}")
            worst_difference = max(worst_difference, difference)
            if agreement is not None:
                _record(
                    failures,
                    agreement == 1.0,
                    f"{where}: {decision_name(task)} = {agreement:.4f} ({round(agreement * samples)}/{samples})",
                )
                worst_agreement = min(worst_agreement, agreement)

    report = ParityReport(
        batch_sizes=batch_sizes,
        samples=samples,
        max_abs_diff=worst_difference,
        argmax_agreement=worst_agreement,
        passed=not failures,
        failures=failures,
        outputs=names,
    )
    if failures and raise_on_failure:
        decision = " and the same decision" if decided else ""
        error = ParityError(
            f"{Path(onnx_path).name} does not match the Keras model on {len(failures)} check(s): "
            + "; ".join(failures),
            expected=f"max |Δ| ≤ {tolerance:g}{decision} on all {samples} samples "
            f"at batch sizes {list(batch_sizes)}",
            fix="re-export the ONNX file from this exact model; if only a few samples differ, look for "
            "layers that behave differently in inference (training=False) or ops with low precision",
        )
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report


def _validate_arguments(inputs: ModelInputs, batch_sizes: tuple[int, ...], tolerance: float) -> None:
    check_inputs(inputs, ParityError, "parity inputs",
                 fix=f"pass the held-out split's features (every model input), e.g. at least {PARITY_SAMPLES} "
                 "windows, cleaned of NaN and inf")
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


def _single(outputs: list[np.ndarray], model: keras.Model, head: HeadKind) -> np.ndarray:
    if len(outputs) != 1:
        raise ParityError(
            f"Keras model {model.name!r} returns {len(outputs)} outputs, but a {head.value} head was named",
            expected="a single-output model (a head replaces the one output)",
            fix="check parity without head=, or on a single-output model",
        )
    return outputs[0]


def _keras_call_inputs(model: keras.Model, inputs: ModelInputs) -> object:
    """``inputs`` in the structure ``model`` is called with: the array itself for one array; for a
    mapping keyed by input name, the model's own input structure (a list, or a dict whose keys may
    differ from the input names) filled by name."""
    import keras

    if not is_mapping(inputs):
        return inputs
    structure = getattr(model, "input", None) if getattr(model, "inputs", None) else None
    if structure is None:
        return dict(inputs)
    flat = keras.tree.flatten(structure)
    if len(flat) == 1 and len(inputs) == 1:
        return keras.tree.pack_sequence_as(structure, list(inputs.values()))
    missing = sorted({tensor.name for tensor in flat} - set(inputs))
    if missing:
        raise ParityError(
            f"the inputs name {sorted(inputs)}, Keras model {model.name!r} has inputs "
            f"{[tensor.name for tensor in flat]} (missing {missing})",
            expected="one array per Keras input, keyed by the keras.Input name",
            fix="key the arrays by the Keras Input names (the exported graph keeps them)",
        )
    return keras.tree.pack_sequence_as(structure, [inputs[tensor.name] for tensor in flat])


def _keras_outputs(model: keras.Model, inputs: ModelInputs) -> list[np.ndarray]:
    """Every output of ``model`` (flattened, in its output order) for ``inputs``, in chunks."""
    import keras

    chunks: list[list[np.ndarray]] = []
    for start in range(0, sample_count(inputs), _REFERENCE_CHUNK):
        chunk = select(inputs, slice(start, start + _REFERENCE_CHUNK))
        outputs = keras.tree.flatten(model(_keras_call_inputs(model, chunk), training=False))
        chunks.append([np.asarray(keras.ops.convert_to_numpy(output), dtype=np.float32) for output in outputs])
    return [np.concatenate([chunk[index] for chunk in chunks], axis=0) for index in range(len(chunks[0]))]


def _cpu_session(onnx_path: Path) -> onnxruntime.InferenceSession:
    return cpu_session(onnx_path, ParityError)


def _fixed_batch_size(session: onnxruntime.InferenceSession) -> int | None:
    """The batch dimension of the first input that fixes it to a number, None when all are dynamic."""
    for value in session.get_inputs():
        first = value.shape[0] if value.shape else None
        if isinstance(first, int) and first > 0:
            return first
    return None


def _run_batches(
    session: onnxruntime.InferenceSession,
    inputs: ModelInputs,
    batch_size: int,
    fixed_batch: int | None,
    label: str,
    failures: list[str],
) -> list[np.ndarray] | None:
    """Run all samples at ``batch_size`` (every output); record a failure and return None when impossible."""
    samples = sample_count(inputs)
    if fixed_batch is not None and batch_size != fixed_batch:
        _record(
            failures,
            False,
            f"{label}: the ONNX input has a fixed batch axis of {fixed_batch}, so batch size {batch_size} "
            "cannot run (export with a dynamic batch axis)",
        )
        return None
    if fixed_batch is not None and samples % batch_size:
        _record(
            failures,
            False,
            f"{label}: {samples} samples leave a partial last batch, which a fixed batch axis "
            f"of {fixed_batch} cannot run",
        )
        return None
    try:
        outputs = run_session_outputs_in_batches(session, inputs, batch_size)
    except onnxruntime_errors() as error:
        _record(failures, False, f"{label}: ONNX Runtime failed: {str(error).splitlines()[0]}")
        return None
    batches = -(-samples // batch_size)
    _record(failures, True, f"{label}: ONNX Runtime ran {samples} samples in {batches} batch(es)")
    return outputs
