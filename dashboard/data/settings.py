"""Where the dashboard reads from: paths handed over by ``edgemed dashboard`` in environment variables.

The telemetry store is either a SQLite file (a ``Path``, the embedded default) or a PostgreSQL server (a
``DatabaseUrl``, ``postgresql://…``); ``parse_database`` tells them apart. A ``DatabaseUrl`` prints without its
password, so pages and logs can show where they read from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ARTIFACTS_VARIABLE = "EDGEMED_DASHBOARD_ARTIFACTS"
BUNDLES_VARIABLE = "EDGEMED_DASHBOARD_BUNDLES"
DATABASE_VARIABLE = "EDGEMED_DASHBOARD_DATABASE"
BENCHMARKS_VARIABLE = "EDGEMED_DASHBOARD_BENCHMARKS"
LATENCY_OBJECTIVE_VARIABLE = "EDGEMED_DASHBOARD_LATENCY_OBJECTIVE_US"
# The live pages' clock, fixed (ISO-8601 with an offset): for the render benchmark and reproducible screenshots of a
# store filled up to some moment. Unset in use: the pages read the wall clock.
CLOCK_VARIABLE = "EDGEMED_DASHBOARD_NOW"
WARM_UP_VARIABLE = "EDGEMED_DASHBOARD_WARM_UP"  # "1": warm the telemetry caches at start (``edgemed dashboard``)

DEFAULT_ARTIFACTS = Path("artifacts")  # the pipeline's default artefact cache, relative to the working directory
DEFAULT_BUNDLES = Path("bundles")  # the pipeline's default bundle folder
DEFAULT_DATABASE = Path("telemetry.sqlite3")  # the collector's default SQLite file
DEFAULT_BENCHMARKS = Path("benchmarks") / "results" / "bench.json"  # where `make bench` writes its results
DEFAULT_LATENCY_OBJECTIVE_US = 10_000.0  # 10 ms per inference: real time for 1–3 beats a second with a wide margin
DATABASE_URL_SCHEMES = ("postgresql", "postgres")  # libpq's URI schemes


@dataclass(frozen=True)
class DatabaseUrl:
    """A PostgreSQL connection URI (``postgresql://user@host:port/database?…``); ``str()`` hides its password."""

    url: str = field(repr=False)  # the full URI, password included: hand it to libpq, never to a page or a log

    def __post_init__(self) -> None:
        if not is_database_url(self.url):
            schemes = " or ".join(f"{scheme}://" for scheme in DATABASE_URL_SCHEMES)
            raise ValueError(f"a database URL starts with {schemes}")

    @property
    def redacted(self) -> str:
        """The URI with any password replaced by ``***`` (also inside a ``password=`` parameter)."""
        parts = urlsplit(self.url)
        netloc = parts.netloc
        if "@" in netloc:
            credentials, _, host = netloc.rpartition("@")
            user, colon, _ = credentials.partition(":")
            netloc = f"{user}{':***' if colon else ''}@{host}"
        query = re.sub(r"(^|&)password=[^&]*", r"\1password=***", parts.query)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"DatabaseUrl({self.redacted!r})"


def is_database_url(value: object) -> bool:
    return isinstance(value, str) and value.split("://", 1)[0].lower() in DATABASE_URL_SCHEMES and "://" in value


def parse_database(value: Path | str | DatabaseUrl) -> Path | DatabaseUrl:
    """A telemetry store location: a ``DatabaseUrl`` for ``postgresql://…``, else the SQLite file's ``Path``."""
    if isinstance(value, DatabaseUrl | Path):
        return value
    return DatabaseUrl(value) if is_database_url(value) else Path(value)


def database_environment_value(database: Path | DatabaseUrl) -> str:
    """How a store location travels in an environment variable: the full URL, or the file's absolute path."""
    return database.url if isinstance(database, DatabaseUrl) else str(Path(database).resolve())


@dataclass(frozen=True)
class DashboardSettings:
    """The dashboard's inputs; every path may be missing, and the pages say so."""

    artifacts: Path = DEFAULT_ARTIFACTS  # pipeline artefact cache (train histories, evaluate metrics)
    bundles: Path = DEFAULT_BUNDLES  # published bundles, one folder per scenario or model
    database: Path | DatabaseUrl = DEFAULT_DATABASE  # the collector's telemetry store: SQLite file or PostgreSQL URL
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
            database=parse_database(environment.get(DATABASE_VARIABLE, "").strip() or DEFAULT_DATABASE),
            benchmarks=path(BENCHMARKS_VARIABLE, DEFAULT_BENCHMARKS),
            latency_objective_us=objective,
        )

    def to_environment(self) -> dict[str, str]:
        """The variables that hand these settings to the Streamlit process (absolute paths; a database URL whole,
        password included: the child process needs it)."""
        return {
            ARTIFACTS_VARIABLE: str(self.artifacts.resolve()),
            BUNDLES_VARIABLE: str(self.bundles.resolve()),
            DATABASE_VARIABLE: database_environment_value(self.database),
            BENCHMARKS_VARIABLE: str(self.benchmarks.resolve()),
            LATENCY_OBJECTIVE_VARIABLE: repr(float(self.latency_objective_us)),
        }


def fixed_clock(environment: Mapping[str, str] | None = None) -> datetime | None:
    """The moment ``EDGEMED_DASHBOARD_NOW`` fixes (aware), or None when it is unset, blank or has no offset."""
    text = (os.environ if environment is None else environment).get(CLOCK_VARIABLE, "").strip()
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None
