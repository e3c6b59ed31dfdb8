"""Where the dashboard reads from: paths handed over by ``edgemed dashboard`` in environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ARTIFACTS_VARIABLE = "EDGEMED_DASHBOARD_ARTIFACTS"
BUNDLES_VARIABLE = "EDGEMED_DASHBOARD_BUNDLES"
DATABASE_VARIABLE = "EDGEMED_DASHBOARD_DATABASE"
BENCHMARKS_VARIABLE = "EDGEMED_DASHBOARD_BENCHMARKS"
LATENCY_OBJECTIVE_VARIABLE = "EDGEMED_DASHBOARD_LATENCY_OBJECTIVE_US"

DEFAULT_ARTIFACTS = Path("artifacts")  # the pipeline's default artefact cache, relative to the working directory
DEFAULT_BUNDLES = Path("bundles")  # the pipeline's default bundle folder
DEFAULT_DATABASE = Path("telemetry.sqlite3")  # the collector's default SQLite file
DEFAULT_BENCHMARKS = Path("benchmarks") / "results" / "bench.json"  # where `make bench` writes its results
DEFAULT_LATENCY_OBJECTIVE_US = 10_000.0  # 10 ms per inference: real time for 1–3 beats a second with a wide margin


@dataclass(frozen=True)
class DashboardSettings:
    """The dashboard's inputs; every path may be missing, and the pages say so."""

    artifacts: Path = DEFAULT_ARTIFACTS  # pipeline artefact cache (train histories, evaluate metrics)
    bundles: Path = DEFAULT_BUNDLES  # published bundles, one folder per scenario or model
    database: Path = DEFAULT_DATABASE  # the collector's SQLite telemetry store
    benchmarks: Path = DEFAULT_BENCHMARKS  # bench.json written by `edgemed bench`
    latency_objective_us: float = DEFAULT_LATENCY_OBJECTIVE_US  # the latency SLO's per-inference objective

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None) -> DashboardSettings:
        """Settings from the ``EDGEMED_DASHBOARD_*`` variables, defaults for those unset or blank."""
        environment = os.environ if environment is None else environment

        def path(variable: str, default: Path) -> Path:
            value = environment.get(variable, "").strip()
            return Path(value) if value else default

        objective_text = environment.get(LATENCY_OBJECTIVE_VARIABLE, "").strip()
        try:
            objective = float(objective_text) if objective_text else DEFAULT_LATENCY_OBJECTIVE_US
        except ValueError:
            objective = DEFAULT_LATENCY_OBJECTIVE_US
        if not objective > 0:
            objective = DEFAULT_LATENCY_OBJECTIVE_US
        return cls(
            artifacts=path(ARTIFACTS_VARIABLE, DEFAULT_ARTIFACTS),
            bundles=path(BUNDLES_VARIABLE, DEFAULT_BUNDLES),
            database=path(DATABASE_VARIABLE, DEFAULT_DATABASE),
            benchmarks=path(BENCHMARKS_VARIABLE, DEFAULT_BENCHMARKS),
            latency_objective_us=objective,
        )

    def to_environment(self) -> dict[str, str]:
        """The variables that hand these settings to the Streamlit process (absolute paths)."""
        return {
            ARTIFACTS_VARIABLE: str(self.artifacts.resolve()),
            BUNDLES_VARIABLE: str(self.bundles.resolve()),
            DATABASE_VARIABLE: str(self.database.resolve()),
            BENCHMARKS_VARIABLE: str(self.benchmarks.resolve()),
            LATENCY_OBJECTIVE_VARIABLE: repr(float(self.latency_objective_us)),
        }
