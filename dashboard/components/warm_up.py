"""Warm the shared telemetry caches when a dashboard process starts, so that a person's first visit to Fleet or
Alerts reads memory instead of the store.

At 1 000 devices a page's first read of its window takes seconds to tens of seconds (``dashboard.benchmarks.render``,
"cold"); afterwards the window's complete blocks stay cached (``telemetry.COMPLETE_TTL_S``) and each refresh reads
only what is new. ``edgemed dashboard`` sets ``WARM_UP_VARIABLE``; ``app.py`` then calls ``start`` on every run,
which starts one background thread per process and store (``st.cache_resource``). The thread reads, through the
same caches the pages use, the window of the Fleet page's default view and the Alerts page's windows, then starts
the fleet-wide drift evaluation. A failure is logged and nothing else: a page always reads what it needs itself.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import streamlit as st

from dashboard.components import telemetry, widgets
from dashboard.data.settings import WARM_UP_VARIABLE, DashboardSettings
from dashboard.data.windows import alert_requests, fleet_request
from dashboard.monitoring.drift import DEFAULT_DRIFT_CONFIG

logger = logging.getLogger(__name__)

def requested() -> bool:
    return os.environ.get(WARM_UP_VARIABLE) == "1"


def warm(current: DashboardSettings) -> float:
    """Read the default Fleet view's and the Alerts page's windows through the pages' caches and start the drift
    evaluation; the seconds it took."""
    started = time.perf_counter()
    moment = widgets.now()
    fleet, _ = fleet_request(widgets.TIME_WINDOWS[widgets.DEFAULT_TIME_WINDOW])
    recent_request, drift_request = alert_requests(widgets.alert_config(current), DEFAULT_DRIFT_CONFIG)
    telemetry.window(current, fleet, moment)
    recent = telemetry.window(current, recent_request, moment)
    telemetry.drift_alerts(current, drift_request, moment, len(recent.devices))
    return time.perf_counter() - started


def _run(current: DashboardSettings) -> None:
    try:
        seconds = warm(current)
    except Exception:  # a background thread reaches no page: log it; the pages read the store themselves
        logger.exception("warming the dashboard's caches failed; the first visits read the store")
        return
    logger.info("dashboard caches warm after %.1f s (Fleet's default view, Alerts; drift evaluating)", seconds)


@st.cache_resource(show_spinner=False)
def _started(current: DashboardSettings) -> threading.Thread:
    thread = threading.Thread(target=_run, args=(current,), name="edgemed-warm-up", daemon=True)
    thread.start()
    return thread


def start() -> None:
    """Once per process and store, when ``edgemed dashboard`` asked for it: warm the caches in the background."""
    if requested():
        _started(widgets.settings())
