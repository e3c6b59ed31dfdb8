"""``optimize_for_speed``: run the graph passes, prove parity and portability, write atomically."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from exporters._files import atomic_destination, load_onnx_model
from exporters._graph import non_standard_op_types
from exporters._onnxruntime import cpu_session, run_session_outputs_in_batches
from exporters.errors import ExportError, ParityError
from exporters.inputs import ModelInputs, as_float32, sample_count, select
from exporters.parity import PARITY_BATCH_SIZES, PARITY_SAMPLES, PARITY_TOLERANCE, compare_outputs, decision_name
from exporters.passes import DEFAULT_PASSES, PassName, run_passes
from exporters.task_detection import TaskKind

logger = logging.getLogger(__name__)


def _outputs(model_path: Path, inputs: ModelInputs, batch_size: int) -> list[np.ndarray]:
    return run_session_outputs_in_batches(cpu_session(model_path, ParityError), inputs, batch_size, ParityError)


def optimize_for_speed(
    source: Path,
    destination: Path,
    inputs: ModelInputs,
    passes: Sequence[PassName | str] = DEFAULT_PASSES,
    tolerance: float = PARITY_TOLERANCE,
    task: TaskKind | str | None = None,
) -> dict:
    """Write ``source`` rewritten by ``passes`` to ``destination``; return what changed.

    ``inputs`` are real model inputs (e.g. the calibration split): one array, or a mapping from
    every input name to its array. Every output of the result must match ``source``'s within
    ``tolerance`` with the same decision for ``task`` (``compare_outputs``: argmax by default,
    none for regression/anomaly) at batch sizes 1 and 32, use standard ONNX ops only, and keep
    the input/output signature.

    Raises:
        ExportError: ``source`` is missing or invalid, or a pass produced a non-portable model.
        ParityError: the rewritten model's outputs differ from ``source``'s.
    """
    import onnx

    source, destination = Path(source), Path(destination)
    model = load_onnx_model(source, ExportError)
    nodes_before = len(model.graph.node)
    signature_before = [(value.name, value.type.SerializeToString()) for value in (*model.graph.input,
                                                                                   *model.graph.output)]
    counts = run_passes(model, passes)
    signature_after = [(value.name, value.type.SerializeToString()) for value in (*model.graph.input,
                                                                                  *model.graph.output)]
    non_standard = non_standard_op_types(model)
    if non_standard or signature_before != signature_after:
        raise ExportError(
            f"the speed passes made {source.name} non-portable"
            + (f" (ops {', '.join(non_standard)})" if non_standard else " (its signature changed)"),
            expected="standard ONNX ops and the same inputs and outputs",
            fix="ship the model without the speed passes and report it to the exporters maintainers",
        )
    samples = select(as_float32(inputs), slice(0, PARITY_SAMPLES))
    worst = 0.0
    with atomic_destination(destination) as temporary:
        onnx.checker.check_model(model)
        onnx.save_model(model, str(temporary))
        for batch_size in PARITY_BATCH_SIZES:
            outputs = zip(_outputs(source, samples, batch_size), _outputs(temporary, samples, batch_size), strict=True)
            for index, (expected, rewritten) in enumerate(outputs):
                difference, agreement = compare_outputs(expected, rewritten, tolerance, task)
                worst = max(worst, difference)
                if difference > tolerance or (agreement is not None and agreement < 1.0):
                    where = f"output {model.graph.output[index].name!r} at batch size {batch_size}"
                    agreed = "" if agreement is None else f", {decision_name(task)} {agreement:.4f}"
                    raise ParityError(
                        f"the speed passes changed {source.name}'s {where}: max |Δ| = {difference:.3g}{agreed}",
                        expected=f"max |Δ| ≤ {tolerance:g} and identical decisions",
                        fix="run without the pass that changed the outputs (passes=...) and report the model",
                    )
    report = {"passes": counts, "nodes_before": nodes_before, "nodes_after": len(model.graph.node),
              "max_abs_diff": worst, "samples": sample_count(samples)}
    logger.info("speed passes on %s: %s", source.name, report)
    return report
