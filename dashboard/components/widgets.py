"""Small Streamlit widgets shared by the pages: settings, messages, device links, time windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard.data.bundles import BundleCatalog, catalog_fingerprint, read_catalog
from dashboard.data.settings import DashboardSettings, fixed_clock
from dashboard.monitoring.alerts import AlertConfig
from dashboard.monitoring.fleet import short_id

REFRESH_SECONDS = 30  # live pages re-read telemetry this often
DRIFT_EVERY_MINUTES = 5  # fleet-wide drift (a day of every device's histograms) is re-evaluated this often
ROLLUPS_ONLY = timedelta(0)  # WindowRequest.minutes_for: hourly rollups up to now, no minute aggregates
DEVICE_PAGE = "pages/device.py"
STATUS_ICONS = {  # drift status and alert severity → a Material icon (Streamlit bundles the font) for markdown
    "ok": ":green[:material/check_circle:]", "warn": ":orange[:material/warning:]", "alert": ":red[:material/error:]",
    "insufficient data": ":gray[:material/hourglass_empty:]", "critical": ":red[:material/error:]",
    "warning": ":orange[:material/warning:]",
}
DEFAULT_TIME_WINDOW = "last 6 hours"  # what the live pages show first
TIME_WINDOWS = {  # the time-window choices of the live pages
    "last hour": timedelta(hours=1),
    "last 6 hours": timedelta(hours=6),
    "last 24 hours": timedelta(hours=24),
    "last 7 days": timedelta(days=7),
    "last 30 days": timedelta(days=30),
}


def settings() -> DashboardSettings:
    return DashboardSettings.from_environment()


@st.cache_resource(max_entries=8, show_spinner=False)
def _catalog(folder: str, fingerprint: tuple) -> BundleCatalog:
    return read_catalog(Path(folder))


def catalog(current: DashboardSettings) -> BundleCatalog:
    """The published bundles, read again only when a bundle folder, manifest or profile changed on disk (a live page
    asks for them several times a run: each read parses every manifest)."""
    return catalog_in(current.bundles)


def catalog_in(folder: Path) -> BundleCatalog:
    """``catalog`` of the bundles folder ``folder``."""
    return _catalog(str(folder), catalog_fingerprint(folder))


def alert_config(current: DashboardSettings) -> AlertConfig:
    return AlertConfig(latency_objective_us=current.latency_objective_us)


def now() -> datetime:
    """The live pages' clock: the wall clock, or the moment ``EDGEMED_DASHBOARD_NOW`` fixes."""
    return fixed_clock() or datetime.now(UTC)


def duration_text(span: timedelta) -> str:
    """``5 min``, ``1 h``, ``1 day``: a bucket's width in words."""
    minutes = int(span.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440} day" + ("s" if minutes > 1440 else "")
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def status_markdown(status: str) -> str:
    """``status`` with its icon, for ``st.markdown`` (tables and metrics show the plain word)."""
    return f"{STATUS_ICONS.get(status, '')} {status}".strip()


def burn_rate_columns(rates: pd.DataFrame) -> dict[str, object]:
    """Column configuration for a ``burn_rates`` frame."""
    return {
        name: st.column_config.NumberColumn(name.replace("burn_", "burn "), format="%.1f×")
        for name in rates.columns if name.startswith("burn_")
    }


def time_window_picker(key: str, default: str = DEFAULT_TIME_WINDOW) -> tuple[str, timedelta]:
    """A segmented choice of time window; returns (label, span)."""
    labels = list(TIME_WINDOWS)
    choice = st.segmented_control("time window", labels, default=default, key=key) or default
    return choice, TIME_WINDOWS[choice]


def device_link(device_id: str, label: str | None = None) -> None:
    """A same-tab link to the Device page for ``device_id``."""
    st.page_link(DEVICE_PAGE, label=label or f"device {short_id(device_id)}", icon=":material/memory:",
                 query_params={"device": device_id})


def device_url_column(frame: pd.DataFrame, column: str = "device_id") -> pd.DataFrame:
    """``frame`` with a ``device`` link column (to the Device page) in front."""
    links = frame[column].map(lambda device_id: f"device?device={device_id}")
    return frame.assign(**{"device": links})[["device", *[name for name in frame.columns if name != "device"]]]


DEVICE_LINK_CONFIG = st.column_config.LinkColumn("device", display_text=r"device=(\w{12})", help="open the Device page")


def show_problems(problems: tuple[str, ...] | list[str]) -> None:
    for problem in problems:
        st.warning(problem)
