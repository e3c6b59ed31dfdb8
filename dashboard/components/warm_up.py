"""Warm the shared telemetry caches when a dashboard process starts, so that a person's first visit to Fleet or
Alerts reads memory instead of the store.

At 1 000 devices a page's first read of its window takes seconds to tens of seconds (``dashboard.benchmarks.render``,
"cold"); afterwards the window's complete blocks stay cached (``telemetry.COMPLETE_TTL_S``) and each refresh reads
only what is new. ``edgemed dashboard`` sets ``WARM_UP_VARIABLE``; ``app.py`` then calls ``start`` on every run,
which starts one background thread per process and store (``st.cache_resource``). The thread reads, through the
same caches the pages use, the window of the Fleet page's default view and the Alerts page's windows, starts
the fleet-wide drift evaluation, then reads the Fleet page's other time windows (up to 30 days); and again every
``REWARM_S``, before what it read expires, so those views stay warm (at 1 000 devices × 30 days: ~70 s of background
work an hour and ~3.4 GB resident; 1.1 GB for the default view and Alerts alone). A failure is logged and nothing
else: a page always reads what it needs itself.
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
REWARM_S = telemetry.COMPLETE_TTL_S - 600  # read again before the complete blocks read last time expire


def requested() -> bool:
    return os.environ.get(WARM_UP_VARIABLE) == "1"


def warm(current: DashboardSettings, *, every_window: bool = True) -> float:
    """Read the default Fleet view's and the Alerts page's windows through the pages' caches and start the drift
    evaluation, then (``every_window``) the Fleet page's other time windows, longest last; the seconds it took."""
    started = time.perf_counter()
    moment = widgets.now()
    fleet, _ = fleet_request(widgets.TIME_WINDOWS[widgets.DEFAULT_TIME_WINDOW])
    recent_request, drift_request = alert_requests(widgets.alert_config(current), DEFAULT_DRIFT_CONFIG)
    telemetry.window(current, fleet, moment)
    recent = telemetry.window(current, recent_request, moment)
    telemetry.drift_alerts(current, drift_request, moment, len(recent.devices))
    if every_window:  # the month is daily rollups (``dashboard.collector.days``): seconds, no longer minutes
        for label, span in sorted(widgets.TIME_WINDOWS.items(), key=lambda item: item[1]):
            if label != widgets.DEFAULT_TIME_WINDOW:
                telemetry.window(current, fleet_request(span)[0], moment)
    return time.perf_counter() - started


def keep_warm(current: DashboardSettings, stop: threading.Event, every_s: float | None = None) -> None:
    """``warm`` now and then every ``every_s`` (default ``REWARM_S``: before the blocks it read expire) until
    ``stop`` is set; a failure is logged and tried again at the next round."""
    every_s = REWARM_S if every_s is None else every_s
    while not stop.is_set():
        try:
            seconds = warm(current)
        except Exception:  # a background thread reaches no page: log it; the pages read the store themselves
            logger.exception("warming the dashboard's caches failed; the pages read the store themselves")
        else:
            logger.info("dashboard caches warm after %.1f s (Fleet's time windows, Alerts; drift evaluating)", seconds)
        stop.wait(every_s)


@st.cache_resource(show_spinner=False)
def _started(current: DashboardSettings) -> threading.Thread:
    thread = threading.Thread(target=keep_warm, args=(current, threading.Event()), name="edgemed-warm-up",
                              daemon=True)  # for the process's lifetime
    thread.start()
    return thread


def start() -> None:
    """Once per process and store, when ``edgemed dashboard`` asked for it: warm the caches in the background."""
    if requested():
        _started(widgets.settings())
