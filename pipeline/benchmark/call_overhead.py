"""The fixed cost of one inference call, without a model: ONNX Runtime against LiteRT on an empty (Identity) graph.

``benchmarks/README.md`` explains why ORT loses the batch-1 head-to-head on the smallest models with this cost: a call
that does no work still pays for crossing from Python into the runtime, binding its inputs and outputs and returning.
This measures it the way ``edgemed bench`` drives each runtime (``onnx_runner.BoundRunner``, I/O binding and plain
``run``; ``litert_models.LiteRtModel``: set every input, invoke, read the output), one thread, batch 1, on a graph
whose only node copies its input ``(1, width)`` to its output, so everything timed is the per-call overhead.

Run ``python -m pipeline.benchmark.call_overhead [--width 30]``; it writes ``benchmarks/results/call_overhead.json``
(the statistics of each, machine and versions) and prints one line per runtime.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.benchmark.errors import BenchmarkError
from pipeline.benchmark.onnx_runner import Binding, BoundRunner, SessionTuning, open_session
from pipeline.benchmark.statistics import StabilityConfig, measure
from pipeline.benchmark.window_stream_speed import machine
from pipeline.build.artifacts import write_json_atomic
from runtime.errors import EdgemedError

DEFAULT_OUTPUT = Path("benchmarks/results/call_overhead.json")
THREADS = 1  # bundles run with one intra-op thread at batch 1 (benchmarks/README.md)


def identity_onnx(path: Path, width: int) -> Path:
    """An ONNX model with one input ``features`` ``(1, width)`` float32 and one Identity node."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["features"], ["copied"])], "call_overhead",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("copied", TensorProto.FLOAT, [1, width])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def identity_tflite(path: Path, width: int) -> Path:
    """The same graph as a ``.tflite`` (a TensorFlow function converted by TFLiteConverter)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, width], tf.float32, name="features")])
    def copied(features):
        return tf.identity(features)

    holder = tf.Module()
    holder.copied = copied
    converter = tf.lite.TFLiteConverter.from_concrete_functions([copied.get_concrete_function()], holder)
    path.write_bytes(converter.convert())
    return path


def measure_call_overhead(width: int, stability: StabilityConfig) -> dict:
    """Median-of-windows µs per call: ORT with I/O binding and with ``run``, LiteRT set-invoke-get."""
    from pipeline.benchmark.litert_models import litert_interpreter_class, litert_runner

    features = np.random.default_rng(0).standard_normal((1, width)).astype(np.float32)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = identity_onnx(Path(folder) / "identity.onnx", width)
        for binding in (Binding.IO_BINDING, Binding.RUN):
            session = open_session(onnx_path, "cpu", THREADS, SessionTuning(binding=binding))
            runner = BoundRunner(session, {"features": features}, "cpu", binding)
            results[f"onnxruntime {binding.value}"] = measure(runner, stability).to_dict()
        interpreter_class, interpreter = litert_interpreter_class()
        litert_call = litert_runner(interpreter_class, identity_tflite(Path(folder) / "identity.tflite", width),
                                    {"features": features}, THREADS)
        if not np.array_equal(litert_call().reshape(features.shape), features):
            raise BenchmarkError("the LiteRT identity model did not return its input",
                                 expected="its input, unchanged (the graph only copies it)",
                                 fix="check the LiteRT / TensorFlow installation (the converter or interpreter)")
        results[f"litert ({interpreter})"] = measure(litert_call, stability).to_dict()
    import onnxruntime

    return {
        "what": f"per-call cost of an empty (Identity) graph, input (1, {width}) float32, {THREADS} thread, batch 1",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "onnxruntime": onnxruntime.__version__,
        "microseconds_per_call": {name: round(stats["median_of_windows_us"], 2) for name, stats in results.items()},
        "statistics": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=30, help="input features (30: breast-cancer's)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    options = parser.parse_args(argv)
    if options.width < 1:
        parser.error(f"--width {options.width}: expected a positive number of features")
    try:
        report = measure_call_overhead(options.width, StabilityConfig())
    except EdgemedError as error:
        print(f"call_overhead: {error}", file=sys.stderr)
        return 1
    options.output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(options.output, report)
    for name, microseconds in report["microseconds_per_call"].items():
        print(f"{name}: {microseconds} µs per call ({report['what']})")
    print(f"written to {options.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
