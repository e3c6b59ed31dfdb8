"""ONNX Runtime sessions with an explicit or best-available execution provider.

The one place edgemed opens an ``InferenceSession``, names execution providers (short ↔ full) and
lists the exception types ONNX Runtime raises: the device runtime, the exporters and the benchmark
all come here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.errors import EdgemedError

if TYPE_CHECKING:
    import onnxruntime

logger = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
# Short name → full name; this order is the benchmark's default provider order.
PROVIDER_NAMES = {"cpu": CPU_PROVIDER, "cuda": CUDA_PROVIDER, "tensorrt": TENSORRT_PROVIDER}
GPU_PROVIDERS = (CUDA_PROVIDER, TENSORRT_PROVIDER)  # outputs can stay on the device (I/O binding)
# Best first. TensorRT and CUDA exist only with the onnxruntime-gpu package.
PREFERRED_PROVIDERS = (TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER)
# ONNX Runtime's pybind11 exception classes, looked up by name (older releases lack some).
ONNXRUNTIME_ERROR_NAMES = (
    "Fail",
    "InvalidArgument",
    "NoSuchFile",
    "NoModel",
    "EngineError",
    "RuntimeException",
    "InvalidProtobuf",
    "ModelLoaded",
    "NotImplemented",
    "InvalidGraph",
    "EPFail",
)


# Highest ai.onnx opset each onnxruntime (major, minor) runs; newer releases get the last row (conservative).
MAX_OPSET_BY_ONNXRUNTIME = (
    ((1, 10), 15), ((1, 11), 16), ((1, 12), 17), ((1, 14), 18), ((1, 15), 19), ((1, 17), 20),
    ((1, 18), 21), ((1, 21), 22), ((1, 23), 23),
)  # fmt: skip
CONSERVATIVE_MAX_OPSET = 15  # an onnxruntime older than the table, or one whose version cannot be read


class ProviderError(EdgemedError):
    """The requested execution provider is not installed."""


class SessionSettingsError(EdgemedError):
    """A thread count ONNX Runtime cannot be given (negative, not an integer, or more than ``MAX_THREADS``)."""


MAX_THREADS = 256  # ONNX Runtime starts every thread it is asked for: far more than cores only stalls the device


@dataclass(frozen=True)
class SessionSettings:
    provider: str | None = None  # "cpu", "cuda", "tensorrt" or a full EP name; None = best available
    intra_op_threads: int = 0  # 0 = ONNX Runtime decides (all cores)
    inter_op_threads: int = 1  # models here are sequential graphs
    spin: bool = True  # busy-wait between ops: lower latency, more CPU

    def __post_init__(self) -> None:
        for name in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_THREADS:
                raise SessionSettingsError(
                    f"{name} is {value!r}", expected=f"an integer from 0 (ONNX Runtime decides) to {MAX_THREADS}",
                    fix="pass the number of cores to use, or 0",
                )


def onnxruntime_max_opset(version: str) -> int:
    """The highest ai.onnx opset the given onnxruntime version runs (conservative when unknown)."""
    try:
        installed = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return CONSERVATIVE_MAX_OPSET
    supported = [opset for release, opset in MAX_OPSET_BY_ONNXRUNTIME if release <= installed]
    return supported[-1] if supported else CONSERVATIVE_MAX_OPSET


def full_provider_name(name: str) -> str:
    """``cpu`` → ``CPUExecutionProvider`` (also cuda, tensorrt); any other name is returned as it is."""
    return PROVIDER_NAMES.get(name.lower(), name)


def short_provider_name(name: str) -> str:
    """``CPUExecutionProvider`` → ``CPU``: the full name without its ``ExecutionProvider`` suffix, for tables."""
    return name.replace("ExecutionProvider", "")


def onnxruntime_errors() -> tuple[type[BaseException], ...]:
    """Exception types ONNX Runtime raises when loading or running a model.

    Its pybind11 exceptions (Fail, InvalidArgument, ...) derive from ``Exception`` only,
    not from ``RuntimeError``, so they have to be named one by one.
    """
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    errors = tuple(getattr(state, name) for name in ONNXRUNTIME_ERROR_NAMES if hasattr(state, name))
    return (*errors, RuntimeError, ValueError)


def available_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def resolve_provider(requested: str | None) -> str:
    """The full EP name to use, or ``ProviderError`` naming the installed ones."""
    available = available_providers()
    if requested is None:
        return next(name for name in PREFERRED_PROVIDERS + tuple(available) if name in available)
    name = full_provider_name(requested)
    if name not in available:
        raise ProviderError(
            f"execution provider '{requested}' is not available in this onnxruntime",
            expected=f"one of {', '.join(available)}",
            fix="pick an installed provider, or install onnxruntime-gpu (never together with onnxruntime) "
            "for CUDA/TensorRT",
        )
    return name


def session_options(settings: SessionSettings) -> onnxruntime.SessionOptions:
    """The ``SessionOptions`` the device runtime uses: every graph optimization, ``settings``' threads and spinning."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.spin else "0")
    return options


def open_session(
    model_path: Path | str | bytes, provider: str = CPU_PROVIDER, options: onnxruntime.SessionOptions | None = None
) -> onnxruntime.InferenceSession:
    """An ``InferenceSession`` on ``provider`` (short or full name), falling back to CPU for unsupported nodes.

    ``model_path`` may be the model's bytes: the device runtime passes the bytes it has hashed, so what
    runs is exactly what was verified (never the file again, which could have changed since).

    ``options`` as given (None: ONNX Runtime's defaults). The provider is not checked here: callers that
    take it from a user resolve it first (``resolve_provider``, ``create_session``). Failures raise one of
    ``onnxruntime_errors()``.
    """
    import onnxruntime

    provider = full_provider_name(provider)
    providers = [provider] if provider == CPU_PROVIDER else [provider, CPU_PROVIDER]
    model = model_path if isinstance(model_path, bytes) else str(model_path)
    return onnxruntime.InferenceSession(model, sess_options=options, providers=providers)


def create_session(model_path: Path | str | bytes, settings: SessionSettings = SessionSettings()):
    """An ``InferenceSession`` on the provider ``settings`` ask for (best available by default) with its options."""
    session = open_session(model_path, resolve_provider(settings.provider), session_options(settings))
    name = f"a {len(model_path)}-byte model" if isinstance(model_path, bytes) else Path(model_path).name
    logger.info("onnxruntime session for %s runs on %s", name, session.get_providers()[0])
    return session
