"""Time one ONNX model on one execution provider (runs inside a benchmark worker process).

Session settings are explicit (``SessionTuning``): intra-op threads, spinning, graph
optimization level, and how inputs/outputs are passed — plain ``session.run`` with a feed
dict, or I/O binding with a pre-allocated output (CPU) / device-resident output (CUDA,
TensorRT), which saves an allocation and a copy per call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from exporters.inputs import ModelInputs, feeds, sample_count, select
from pipeline.benchmark.errors import BatchSizeError, BenchmarkError
from pipeline.benchmark.sample_files import tiled
from pipeline.benchmark.statistics import StabilityConfig, measure, throughput_config
from runtime.session import GPU_PROVIDERS
from runtime.session import open_session as open_onnxruntime_session


class OptimizationLevel(StrEnum):
    BASIC = "basic"
    EXTENDED = "extended"
    ALL = "all"


class Binding(StrEnum):
    RUN = "run"  # session.run(None, {name: array}): ORT allocates the output every call
    IO_BINDING = "io-binding"  # outputs pre-allocated (CPU) or kept on the device (GPU)


@dataclass(frozen=True)
class SessionTuning:
    """How the benchmark opens and drives an ONNX Runtime session."""

    optimization_level: OptimizationLevel = OptimizationLevel.ALL  # the device runtime applies every fusion
    spinning: bool = True  # busy-wait between ops in the intra-op pool: lower latency, more CPU
    inter_op_threads: int = 1  # the models are sequential graphs
    binding: Binding = Binding.IO_BINDING  # pre-allocated outputs; GPUs keep outputs on the device

    def to_dict(self) -> dict:
        return {key: str(getattr(self, key)) if isinstance(getattr(self, key), StrEnum) else getattr(self, key)
                for key in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, values: dict) -> SessionTuning:
        return cls(
            optimization_level=OptimizationLevel(values.get("optimization_level", OptimizationLevel.ALL)),
            spinning=bool(values.get("spinning", True)),
            inter_op_threads=int(values.get("inter_op_threads", 1)),
            binding=Binding(values.get("binding", Binding.IO_BINDING)),
        )


def session_options(threads: int, tuning: SessionTuning, profile_prefix: str | None = None):
    import onnxruntime

    levels = {
        OptimizationLevel.BASIC: onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        OptimizationLevel.EXTENDED: onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        OptimizationLevel.ALL: onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = levels[tuning.optimization_level]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = tuning.inter_op_threads
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if tuning.spinning else "0")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def fixed_batch_size(model_path: Path) -> int | None:
    """The input's batch dimension when the model fixes it, None when it is dynamic."""
    import onnx

    model = onnx.load_model(str(model_path), load_external_data=False)
    initializers = {initializer.name for initializer in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    dimension = inputs[0].type.tensor_type.shape.dim[0]
    return int(dimension.dim_value) if dimension.HasField("dim_value") and dimension.dim_value > 0 else None


def check_batch_size(model_path: Path, batch_size: int) -> None:
    """``BatchSizeError`` when the model cannot take ``batch_size``."""
    fixed = fixed_batch_size(model_path)
    if batch_size < 1 or (fixed is not None and batch_size != fixed):
        raise BatchSizeError(
            f"{Path(model_path).name} cannot run at batch size {batch_size}"
            + (f" (its batch axis is fixed at {fixed})" if fixed is not None else ""),
            expected="a positive batch size" + (f" equal to {fixed}" if fixed is not None else ""),
            fix="re-export with a dynamic batch axis, or pass --batch-sizes with sizes the model accepts",
        )


def open_session(model_path: Path, provider: str, threads: int, tuning: SessionTuning,
                 profile_prefix: str | None = None):
    """An ``InferenceSession`` on ``provider`` (CPU as the fallback for GPU providers) with ``tuning``."""
    return open_onnxruntime_session(model_path, provider, session_options(threads, tuning, profile_prefix))


class BoundRunner:
    """One batch's feed (every graph input, by name) and, with I/O binding, its bound output."""

    def __init__(self, session, batch: ModelInputs, provider: str, binding: Binding) -> None:
        import onnxruntime

        self.session = session
        self.output_names = [output.name for output in session.get_outputs()]
        named = feeds(batch, [value.name for value in session.get_inputs()], BenchmarkError)
        self.feed = {name: np.ascontiguousarray(values, dtype=np.float32) for name, values in named.items()}
        self.binding = None
        if binding is Binding.IO_BINDING:
            device = "cuda" if provider in GPU_PROVIDERS else "cpu"
            self.binding = session.io_binding()
            for name, values in self.feed.items():
                self.binding.bind_cpu_input(name, values)
            for name in self.output_names:
                if device == "cpu":
                    probe = session.run([name], self.feed)[0]
                    value = onnxruntime.OrtValue.ortvalue_from_numpy(np.empty_like(probe), "cpu", 0)
                    self.binding.bind_ortvalue_output(name, value)
                else:
                    self.binding.bind_output(name, device)
        self.gpu = provider in GPU_PROVIDERS

    def __call__(self) -> None:
        if self.binding is None:
            self.session.run(self.output_names, self.feed)
            return
        if self.gpu:
            self.binding.synchronize_inputs()
        self.session.run_with_iobinding(self.binding)
        if self.gpu:
            self.binding.synchronize_outputs()


def run_onnx(spec: dict, samples: ModelInputs, stability: StabilityConfig) -> dict:
    """Session creation, first inference, batch-1 latency and throughput of one ONNX model."""
    import onnxruntime

    model_path, provider, threads = Path(spec["model"]), spec["provider"], int(spec["threads"])
    tuning = SessionTuning.from_dict(spec.get("session", {}))
    for batch_size in spec["batch_sizes"]:
        check_batch_size(model_path, int(batch_size))
    started = time.perf_counter()
    session = open_session(model_path, provider, threads, tuning, spec.get("profile_prefix"))
    creation_ms = (time.perf_counter() - started) * 1000.0
    first = BoundRunner(session, select(samples, slice(0, 1)), provider, Binding.RUN)
    started = time.perf_counter()
    first()
    first_inference_us = (time.perf_counter() - started) * 1e6

    singles = [BoundRunner(session, select(samples, slice(index, index + 1)), provider, tuning.binding)
               for index in range(sample_count(samples))]
    position = [0]

    def run_single() -> None:
        singles[position[0] % len(singles)]()
        position[0] += 1

    latency = measure(run_single, stability)
    throughput = {}
    for batch_size in spec["batch_sizes"]:
        runner = BoundRunner(session, tiled(samples, int(batch_size)), provider, tuning.binding)
        statistics = measure(runner, throughput_config(stability))
        throughput[str(batch_size)] = {
            "samples_per_second": int(batch_size) / (statistics.median_of_windows_us / 1e6),
            "batch_latency": statistics.to_dict(),
        }
    profile_file = session.end_profiling() if spec.get("profile_prefix") else None
    return {
        "session_creation_ms": creation_ms,
        "first_inference_us": first_inference_us,
        "latency": latency.to_dict(),
        "throughput": throughput,
        "runtime": {
            "engine": "onnxruntime",
            "version": onnxruntime.__version__,
            "providers_used": session.get_providers(),
            "session": tuning.to_dict(),
            "intra_op_threads": threads,
            "profile_file": profile_file,
        },
    }

