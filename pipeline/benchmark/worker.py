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

from pipeline.benchmark.head_to_head import HEAD_TO_HEAD_ENGINE, run_head_to_head
from pipeline.benchmark.memory import peak_rss_bytes
from pipeline.benchmark.sample_files import load_inputs
from pipeline.benchmark.statistics import StabilityConfig
from runtime.errors import EdgemedError


def measure_spec(spec: dict) -> dict:
    samples = load_inputs(spec["inputs"])  # one array, or input name → array (.npz)
    stability = StabilityConfig(**spec["stability"])
    if spec["engine"] == HEAD_TO_HEAD_ENGINE:
        result = run_head_to_head(spec, samples)
    elif spec["engine"] == "onnxruntime":
        from pipeline.benchmark.onnx_runner import run_onnx

        result = run_onnx(spec, samples, stability)
    elif spec["engine"] == "litert":
        from pipeline.benchmark.peers import run_litert

        result = run_litert(spec, samples, stability)
    else:
        from pipeline.benchmark.peers import run_keras

        result = run_keras(spec, samples, stability)
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
