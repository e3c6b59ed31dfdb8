"""``optimize_for_speed``: run the graph passes, prove parity and portability, write atomically."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from exporters._files import atomic_destination, load_onnx_model
from exporters._graph import non_standard_op_types
from exporters._onnxruntime import run_in_batches
from exporters.errors import ExportError, ParityError
from exporters.parity import PARITY_BATCH_SIZES, PARITY_SAMPLES, PARITY_TOLERANCE, compare_outputs
from exporters.passes import DEFAULT_PASSES, PassName, run_passes

logger = logging.getLogger(__name__)


def _outputs(model_path: Path, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    return run_in_batches(model_path, inputs, batch_size, ParityError)


def optimize_for_speed(
    source: Path,
    destination: Path,
    inputs: np.ndarray,
    passes: Sequence[PassName | str] = DEFAULT_PASSES,
    tolerance: float = PARITY_TOLERANCE,
) -> dict:
    """Write ``source`` rewritten by ``passes`` to ``destination``; return what changed.

    ``inputs`` are real model inputs (e.g. the calibration split). The result must match
    ``source`` within ``tolerance`` with the same predicted class at batch sizes 1 and 32,
    use standard ONNX ops only, and keep the input/output signature.

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
    samples = np.asarray(inputs, dtype=np.float32)[:PARITY_SAMPLES]
    worst = 0.0
    with atomic_destination(destination) as temporary:
        onnx.checker.check_model(model)
        onnx.save_model(model, str(temporary))
        for batch_size in PARITY_BATCH_SIZES:
            difference, agreement = compare_outputs(
                _outputs(source, samples, batch_size), _outputs(temporary, samples, batch_size), tolerance
            )
            worst = max(worst, difference)
            if difference > tolerance or agreement < 1.0:
                raise ParityError(
                    f"the speed passes changed {source.name}'s outputs at batch size {batch_size}: "
                    f"max |Δ| = {difference:.3g}, argmax agreement {agreement:.4f}",
                    expected=f"max |Δ| ≤ {tolerance:g} and identical predicted classes",
                    fix="run without the pass that changed the outputs (passes=...) and report the model",
                )
    report = {"passes": counts, "nodes_before": nodes_before, "nodes_after": len(model.graph.node),
              "max_abs_diff": worst, "samples": len(samples)}
    logger.info("speed passes on %s: %s", source.name, report)
    return report
