"""``python -m pipeline.benchmark.eeg_recurrent_cells``: GRU against LSTM for eeg-artifact, composed with the build
and the timing (the comparison itself is ``pipeline.scenarios.eeg_artifact.cells``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from exporters.timing import InterleavedTiming, measure_interleaved, onnx_runner
from pipeline.build.builder import build_scenario
from pipeline.build.context import StageContext
from pipeline.config import Profile
from pipeline.scenarios.eeg_artifact.cells import ComparisonTools, run_comparison
from pipeline.scenarios.eeg_artifact.cells_report import write_results

TIMING = InterleavedTiming(rounds=21, runs_per_round=100, warmup_runs=50)  # 8 models: about a minute


def build(scenario, config, artifacts: Path, bundles: Path) -> Path:
    return build_scenario(scenario, config, StageContext(artifacts), bundles).bundle_directory


def measure(models: dict[str, Path], sample):
    return measure_interleaved({name: onnx_runner(path, sample, threads=1) for name, path in models.items()}, TIMING)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.benchmark.eeg_recurrent_cells")
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--profile", choices=[item.value for item in Profile], default=Profile.FULL.value)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    document = run_comparison(ComparisonTools(build, measure), arguments.artifacts,
                              arguments.artifacts / "eeg-recurrent-cells", Profile(arguments.profile))
    for path in write_results(document, arguments.output):
        print(path)


if __name__ == "__main__":
    main()
