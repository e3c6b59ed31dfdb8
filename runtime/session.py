"""ONNX Runtime sessions with an explicit or best-available execution provider."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import EdgemedError

logger = logging.getLogger(__name__)

# Best first. TensorRT and CUDA exist only with the onnxruntime-gpu package.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_SHORT_NAMES = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


# Highest ai.onnx opset each onnxruntime (major, minor) runs; newer releases get the last row (conservative).
MAX_OPSET_BY_ONNXRUNTIME = (
    ((1, 10), 15), ((1, 11), 16), ((1, 12), 17), ((1, 14), 18), ((1, 15), 19), ((1, 17), 20),
    ((1, 18), 21), ((1, 21), 22), ((1, 23), 23),
)  # fmt: skip
CONSERVATIVE_MAX_OPSET = 15  # an onnxruntime older than the table, or one whose version cannot be read


class ProviderError(EdgemedError):
    """The requested execution provider is not installed."""


@dataclass(frozen=True)
class SessionSettings:
    provider: str | None = None  # "cpu", "cuda", "tensorrt" or a full EP name; None = best available
    intra_op_threads: int = 0  # 0 = ONNX Runtime decides (all cores)
    inter_op_threads: int = 1  # models here are sequential graphs
    spin: bool = True  # busy-wait between ops: lower latency, more CPU


def onnxruntime_max_opset(version: str) -> int:
    """The highest ai.onnx opset the given onnxruntime version runs (conservative when unknown)."""
    try:
        installed = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return CONSERVATIVE_MAX_OPSET
    supported = [opset for release, opset in MAX_OPSET_BY_ONNXRUNTIME if release <= installed]
    return supported[-1] if supported else CONSERVATIVE_MAX_OPSET


def available_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def resolve_provider(requested: str | None) -> str:
    """The full EP name to use, or ``ProviderError`` naming the installed ones."""
    available = available_providers()
    if requested is None:
        return next(name for name in PREFERRED_PROVIDERS + tuple(available) if name in available)
    name = _SHORT_NAMES.get(requested.lower(), requested)
    if name not in available:
        raise ProviderError(
            f"execution provider '{requested}' is not available in this onnxruntime",
            expected=f"one of {', '.join(available)}",
            fix="pick an installed provider, or install onnxruntime-gpu (never together with onnxruntime) "
            "for CUDA/TensorRT",
        )
    return name


def create_session(model_path: Path, settings: SessionSettings = SessionSettings()):
    """An ``InferenceSession`` on the chosen provider, falling back to CPU for unsupported nodes."""
    import onnxruntime

    provider = resolve_provider(settings.provider)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.spin else "0")
    providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    session = onnxruntime.InferenceSession(str(model_path), options, providers=providers)
    logger.info("onnxruntime session for %s runs on %s", Path(model_path).name, session.get_providers()[0])
    return session
