"""Benchmark worker: ``python -m pipeline.benchmark.worker SPEC.json RESULT.json``.

Measures exactly one model (an ONNX file on one provider, a Keras mode or a LiteRT
model) in this fresh process and writes the measurement plus this process's peak RSS —
or, for ``"engine": "head-to-head"``, every CPU candidate of a scenario in rotating rounds
(``head_to_head``).
Expected failures are written as ``{"error": {"type": ..., "message": ...}}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from pipeline.benchmark.head_to_head import HEAD_TO_HEAD_ENGINE, run_head_to_head
from pipeline.benchmark.memory import peak_rss_bytes
from pipeline.benchmark.statistics import StabilityConfig
from runtime.errors import EdgemedError


def measure_spec(spec: dict) -> dict:
    samples = np.load(spec["inputs"]).astype(np.float32)
    evaluate = np.load(spec["evaluate_inputs"]).astype(np.float32) if spec.get("evaluate_inputs") else None
    stability = StabilityConfig(**spec["stability"])
    predictions = None
    if spec["engine"] == HEAD_TO_HEAD_ENGINE:
        result = run_head_to_head(spec, samples)
    elif spec["engine"] == "onnxruntime":
        from pipeline.benchmark.onnx_runner import run_onnx

        result = run_onnx(spec, samples, stability)
    elif spec["engine"] == "litert":
        from pipeline.benchmark.peers import run_litert

        result, predictions = run_litert(spec, samples, stability, evaluate)
    else:
        from pipeline.benchmark.peers import run_keras

        result, predictions = run_keras(spec, samples, stability, evaluate)
    if predictions is not None and spec.get("predictions_output"):
        np.save(spec["predictions_output"], np.asarray(predictions, dtype=np.float32))
    result["peak_rss_bytes"] = peak_rss_bytes()
    return result


def main(arguments: list[str]) -> int:
    spec_path, result_path = Path(arguments[0]), Path(arguments[1])
    spec = json.loads(spec_path.read_text())
    try:
        result = measure_spec(spec)
    except EdgemedError as error:
        result = {"error": {"type": type(error).__name__, "message": str(error)}}
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
