"""Operator census of an ONNX file: which ops it uses, and which of them hurt on edge runtimes."""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from exporters._files import load_onnx_model
from exporters._graph import DEFAULT_DOMAINS, default_opset, iterate_nodes
from exporters.errors import ExportError

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

# Control-flow ops that hold a subgraph: each is a warning, with its usual origin and advice.
_CONTROL_FLOW_ADVICE = {
    "Loop": (
        "from a recurrent layer",
        "slower and less portable on edge runtimes; an LSTM exports as one fused LSTM op, "
        "and a temporal convolution (Conv1D) avoids recurrence altogether",
    ),
    "Scan": (
        "from a recurrent layer",
        "slower and less portable on edge runtimes; prefer an LSTM or Conv1D layer",
    ),
    "If": (
        "from data-dependent control flow",
        "many edge runtimes and accelerators cannot run it; remove Python/tf.cond branches from call()",
    ),
}


@dataclass(frozen=True)
class OpCensus:
    """How often each operator appears in a model, and the portability warnings it implies."""

    counts: dict[str, int]  # op_type → count ("domain.op_type" outside the default ONNX domain)
    warnings: list[str]  # one human-readable sentence per portability concern
    opset: int  # the model's default-domain (ai.onnx) opset version

    def to_dict(self) -> dict:
        """A JSON-serializable copy."""
        return {"counts": dict(self.counts), "warnings": list(self.warnings), "opset": self.opset}


def op_census(onnx_path: Path) -> OpCensus:
    """Count the operators of the ONNX model at ``onnx_path``, including nodes inside subgraphs.

    Ops outside the default ONNX domain are counted as ``"<domain>.<op_type>"`` (e.g.
    ``"com.microsoft.FusedConv"``) and produce a warning, as do Loop, Scan and If.
    """
    model = load_onnx_model(Path(onnx_path), ExportError)
    counts: collections.Counter[str] = collections.Counter(
        _qualified_op_type(node) for node in iterate_nodes(model.graph)
    )
    warnings = _warnings(counts)
    census = OpCensus(counts=dict(sorted(counts.items())), warnings=warnings, opset=_required_opset(model))
    for warning in warnings:
        logger.warning("%s: %s", Path(onnx_path).name, warning)
    return census


def _qualified_op_type(node: onnx.NodeProto) -> str:
    if node.domain in DEFAULT_DOMAINS:
        return node.op_type
    return f"{node.domain}.{node.op_type}"


def _warnings(counts: collections.Counter[str]) -> list[str]:
    warnings = []
    for op_type, (origin, advice) in _CONTROL_FLOW_ADVICE.items():
        if counts.get(op_type):
            warnings.append(f"graph contains {counts[op_type]} {op_type} op(s) ({origin}): {advice}")
    custom_ops = sorted(op_type for op_type in counts if "." in op_type)
    if custom_ops:
        total = sum(counts[op_type] for op_type in custom_ops)
        warnings.append(
            f"graph contains {total} op(s) outside the standard ONNX domain ({', '.join(custom_ops)}): "
            "they need ONNX Runtime contrib kernels and do not run on other runtimes; "
            "save a portable model (exporters.optimization.portable.optimize_portable) instead"
        )
    return warnings


def _required_opset(model: onnx.ModelProto) -> int:
    opset = default_opset(model)
    if opset is None:
        raise ExportError(
            "the ONNX model imports no default-domain (ai.onnx) opset",
            expected="an opset_import entry for the ai.onnx domain",
            fix="re-export the model with exporters.keras_to_onnx.export_keras_to_onnx",
        )
    return opset
