"""Peers measured from the same Keras model: Keras (``predict`` and direct call) and LiteRT.

The LiteRT models are made by ``litert_conversion`` (fp32, dynamic-range, full int8) and run by
``litert_models`` (inputs by name; ``ai_edge_litert`` when installed, else ``tf.lite.Interpreter``)
with the same thread count as ONNX Runtime and the default XNNPACK delegate. Inputs are one array
or, for a model with several, input name → array (the Keras ``Input`` names). TensorFlow and Keras
are imported lazily, inside functions.
"""

from __future__ import annotations

import logging
import os
import time
from enum import StrEnum
from pathlib import Path

import numpy as np

from exporters.inputs import ModelInputs, feeds, sample_count, select
from pipeline.benchmark.errors import BenchmarkError
from pipeline.benchmark.litert_models import litert_interpreter_class, litert_runner
from pipeline.benchmark.sample_files import tiled
from pipeline.benchmark.statistics import StabilityConfig, measure, throughput_config

logger = logging.getLogger(__name__)


class KerasMode(StrEnum):
    PREDICT = "predict"  # model.predict(x): the tf.data + callbacks path most code uses
    CALL = "call"  # model(x, training=False): the direct eager call


def keras_arguments(model, batch: ModelInputs):
    """``batch`` as the Keras model takes it: one array, or one array per ``model.inputs`` in order."""
    names = [tensor.name for tensor in model.inputs]
    named = feeds(batch, names, BenchmarkError)
    arrays = [np.ascontiguousarray(named[name], dtype=np.float32) for name in names]
    return arrays[0] if len(arrays) == 1 else arrays


def keras_outputs(model, inputs: ModelInputs, batch_size: int = 256) -> np.ndarray:
    """``model(x, training=False)`` over every row of ``inputs``, ``batch_size`` rows at a time: ``(n, columns)``."""
    import keras

    parts = []
    for start in range(0, sample_count(inputs), batch_size):
        batch = keras_arguments(model, select(inputs, slice(start, start + batch_size)))
        values = np.asarray(keras.ops.convert_to_numpy(model(batch, training=False)), dtype=np.float32)
        parts.append(values.reshape(len(values), -1))
    return np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)


def run_litert(spec: dict, samples: ModelInputs, stability: StabilityConfig) -> dict:
    """Interpreter creation, first inference, batch-1 latency and throughput of one LiteRT model."""
    interpreter_class, description = litert_interpreter_class()
    path, threads = Path(spec["model"]), int(spec["threads"])
    started = time.perf_counter()
    first = litert_runner(interpreter_class, path, select(samples, slice(0, 1)), threads)
    creation_ms = (time.perf_counter() - started) * 1000.0
    started = time.perf_counter()
    first()
    first_inference_us = (time.perf_counter() - started) * 1e6
    single = _cycling(lambda index: litert_runner(interpreter_class, path, select(samples, slice(index, index + 1)),
                                                  threads), min(sample_count(samples), 8))
    latency = measure(single, stability)
    throughput = {}
    for batch_size in spec["batch_sizes"]:
        runner = litert_runner(interpreter_class, path, tiled(samples, int(batch_size)), threads)
        throughput[str(batch_size)] = _throughput(runner, int(batch_size), stability)
    runtime = {"engine": "litert", "implementation": description, "delegate": "XNNPACK (default)",
               "threads": threads}
    return _result(creation_ms, first_inference_us, latency, throughput, runtime)


def run_keras(spec: dict, samples: ModelInputs, stability: StabilityConfig) -> dict:
    """Model load, first inference, batch-1 latency and throughput of the Keras model in one mode."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    threads = int(spec["threads"])
    try:  # only possible before TensorFlow initializes (always true in a fresh worker process)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        logger.warning("TensorFlow is already initialized; its thread settings stay as they are")
    import keras

    from pipeline.training.keras_files import load_keras_model

    mode = KerasMode(spec["mode"])
    started = time.perf_counter()
    model = load_keras_model(Path(spec["model"]))
    creation_ms = (time.perf_counter() - started) * 1000.0

    def runner(batch: ModelInputs):
        arguments, rows = keras_arguments(model, batch), sample_count(batch)
        if mode is KerasMode.PREDICT:
            return lambda: model.predict(arguments, verbose=0, batch_size=rows)
        return lambda: keras.ops.convert_to_numpy(model(arguments, training=False))

    started = time.perf_counter()
    runner(select(samples, slice(0, 1)))()
    first_inference_us = (time.perf_counter() - started) * 1e6
    latency = measure(_cycling(lambda index: runner(select(samples, slice(index, index + 1))),
                               min(sample_count(samples), 8)), stability)
    throughput = {str(size): _throughput(runner(tiled(samples, int(size))), int(size), stability)
                  for size in spec["batch_sizes"]}
    runtime = {"engine": "keras", "mode": mode.value, "keras": keras.__version__, "tensorflow": tf.__version__,
               "backend": keras.backend.backend(),
               "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()}
    return _result(creation_ms, first_inference_us, latency, throughput, runtime)


def _cycling(make_runner, count: int):
    runners = [make_runner(index) for index in range(count)]
    position = [0]

    def run() -> None:
        runners[position[0] % count]()
        position[0] += 1

    return run


def _throughput(runner, batch_size: int, stability: StabilityConfig) -> dict:
    statistics = measure(runner, throughput_config(stability))
    return {"samples_per_second": batch_size / (statistics.median_of_windows_us / 1e6),
            "batch_latency": statistics.to_dict()}


def _result(creation_ms: float, first_us: float, latency, throughput: dict, runtime: dict) -> dict:
    return {"session_creation_ms": creation_ms, "first_inference_us": first_us, "latency": latency.to_dict(),
            "throughput": throughput, "runtime": runtime}
