"""Peers measured from the same Keras model: Keras (``predict`` and direct call) and LiteRT.

LiteRT models are made with the TFLite converter from the Keras model (dynamic batch
axis, float32 inputs and outputs in both): ``fp32`` as is, ``int8`` fully integer
(``TFLITE_BUILTINS_INT8`` only, calibrated on the calibration split with a representative
dataset). They run in the LiteRT interpreter (``ai_edge_litert``) when installed, else
in ``tf.lite.Interpreter``, with the same thread count as ONNX Runtime and the default
XNNPACK delegate. TensorFlow and Keras are imported lazily, inside functions.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from enum import StrEnum
from pathlib import Path

import numpy as np

from pipeline.benchmark.errors import BenchmarkError
from pipeline.benchmark.statistics import StabilityConfig, measure, throughput_config

logger = logging.getLogger(__name__)

REPRESENTATIVE_SAMPLES = 256  # calibration samples fed to the TFLite converter (spread over the split)


class LiteRtVariant(StrEnum):
    FP32 = "fp32"
    INT8 = "int8"  # full integer: int8 weights and activations, float32 I/O


class KerasMode(StrEnum):
    PREDICT = "predict"  # model.predict(x): the tf.data + callbacks path most code uses
    CALL = "call"  # model(x, training=False): the direct eager call


def litert_interpreter_class() -> tuple[type, str]:
    """(Interpreter class, description): ai_edge_litert when installed, else tf.lite."""
    try:
        from importlib import metadata

        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, f"ai_edge_litert {metadata.version('ai-edge-litert')}"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, f"tf.lite.Interpreter (tensorflow {tf.__version__})"


def convert_to_litert(keras_path: Path, calibration: np.ndarray, folder: Path) -> dict[LiteRtVariant, Path]:
    """Convert ``keras_path`` to ``folder``/{fp32,int8}.tflite, reusing files already there."""
    folder = Path(folder)
    paths = {variant: folder / f"{variant.value}.tflite" for variant in LiteRtVariant}
    if all(path.is_file() for path in paths.values()):
        return paths
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from pipeline.training.keras_files import load_keras_model

    folder.mkdir(parents=True, exist_ok=True)
    model = load_keras_model(keras_path)
    saved_model = folder / "saved_model"
    shutil.rmtree(saved_model, ignore_errors=True)
    signature = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
    model.export(str(saved_model), format="tf_saved_model", input_signature=[signature], verbose=False)
    indices = np.linspace(0, len(calibration) - 1, min(REPRESENTATIVE_SAMPLES, len(calibration))).astype(int)
    representative = np.asarray(calibration, dtype=np.float32)[indices]

    def representative_dataset():
        for sample in representative:
            yield [sample[None]]

    for variant, path in paths.items():
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        if variant is LiteRtVariant.INT8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative_dataset
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            content = converter.convert()
        except (ValueError, RuntimeError, TypeError) as error:
            raise BenchmarkError(
                f"the TFLite converter could not make the {variant.value} LiteRT model of {keras_path}: {error}",
                expected="a Keras model built from TFLite builtin ops",
                fix="benchmark without LiteRT peers (--no-peers)",
            ) from error
        temporary = path.with_suffix(".partial")
        temporary.write_bytes(content)
        os.replace(temporary, path)
    shutil.rmtree(saved_model, ignore_errors=True)
    (folder / "conversion.json").write_text(
        json.dumps({"source": str(keras_path), "tensorflow": tf.__version__, "representative": len(representative)})
    )
    logger.info("LiteRT peers of %s written to %s", keras_path, folder)
    return paths


def litert_runner(interpreter_class: type, path: Path, batch: np.ndarray, threads: int):
    interpreter = interpreter_class(model_path=str(path), num_threads=threads)
    input_detail = interpreter.get_input_details()[0]
    if tuple(input_detail["shape"]) != batch.shape:
        interpreter.resize_tensor_input(input_detail["index"], list(batch.shape), strict=False)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    batch = np.ascontiguousarray(batch, dtype=np.float32)

    def run() -> np.ndarray:
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        return interpreter.get_tensor(output_index)

    return run


def run_litert(spec: dict, samples: np.ndarray, stability: StabilityConfig, evaluate: np.ndarray | None) -> dict:
    interpreter_class, description = litert_interpreter_class()
    path, threads = Path(spec["model"]), int(spec["threads"])
    started = time.perf_counter()
    first = litert_runner(interpreter_class, path, samples[:1], threads)
    creation_ms = (time.perf_counter() - started) * 1000.0
    started = time.perf_counter()
    first()
    first_inference_us = (time.perf_counter() - started) * 1e6
    single = _cycling(lambda index: litert_runner(interpreter_class, path, samples[index : index + 1], threads),
                      min(len(samples), 8))
    latency = measure(single, stability)
    throughput = {}
    for batch_size in spec["batch_sizes"]:
        runner = litert_runner(interpreter_class, path, np.resize(samples, (int(batch_size), *samples.shape[1:])),
                                threads)
        throughput[str(batch_size)] = _throughput(runner, int(batch_size), stability)
    predictions = None
    if evaluate is not None:
        runner = litert_runner(interpreter_class, path, evaluate, threads)
        predictions = runner()
    runtime = {"engine": "litert", "implementation": description, "delegate": "XNNPACK (default)",
               "threads": threads}
    return _result(creation_ms, first_inference_us, latency, throughput, runtime), predictions


def run_keras(spec: dict, samples: np.ndarray, stability: StabilityConfig, evaluate: np.ndarray | None):
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

    def runner(batch: np.ndarray):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if mode is KerasMode.PREDICT:
            return lambda: model.predict(batch, verbose=0, batch_size=len(batch))
        return lambda: keras.ops.convert_to_numpy(model(batch, training=False))

    started = time.perf_counter()
    runner(samples[:1])()
    first_inference_us = (time.perf_counter() - started) * 1e6
    latency = measure(_cycling(lambda index: runner(samples[index : index + 1]), min(len(samples), 8)), stability)
    throughput = {
        str(size): _throughput(runner(np.resize(samples, (int(size), *samples.shape[1:]))), int(size), stability)
        for size in spec["batch_sizes"]
    }
    predictions = None
    if evaluate is not None:
        predictions = np.concatenate([keras.ops.convert_to_numpy(model(evaluate[start : start + 256], training=False))
                                      for start in range(0, len(evaluate), 256)])
    runtime = {"engine": "keras", "mode": mode.value, "keras": keras.__version__, "tensorflow": tf.__version__,
               "backend": keras.backend.backend(),
               "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()}
    return _result(creation_ms, first_inference_us, latency, throughput, runtime), predictions


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
