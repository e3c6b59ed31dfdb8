"""Event-level reading of window alarms: was the one labelled anomaly detected, how many false alarms per hour.

A device scores a window every hop; alarmed windows that overlap or touch are one alarm *event*. An event
that comes within ``margin`` samples of the labelled range detects the anomaly; every other event is a
false alarm. The normal signal an hourly rate is taken over is the union of the windows scored outside
that neighbourhood. The rate's interval is the exact (Garwood) Poisson interval for the count.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import chi2


@dataclass(frozen=True)
class EventSummary:
    """Alarm events of one stretch of windows at one threshold."""

    anomaly_in_stretch: bool  # the labelled range lies in the scored stretch
    anomaly_detected: bool | None  # None when the anomaly is not in the stretch
    detection_delay_s: float | None  # end of the first detecting window − anomaly onset (when it is complete)
    false_alarm_events: int
    normal_signal_s: float  # seconds of signal covered by the windows scored away from the anomaly
    false_alarms_per_hour: float
    false_alarms_per_hour_interval: tuple[float, float]  # exact Poisson, at ``confidence``
    alarmed_windows: int
    scored_windows: int

    def to_dict(self) -> dict:
        data = asdict(self)
        data["false_alarms_per_hour_interval"] = list(self.false_alarms_per_hour_interval)
        return data


def alarm_events(starts: np.ndarray, alarms: np.ndarray, window_samples: int) -> list[tuple[int, int]]:
    """[first sample, last sample + 1) of every run of alarmed windows that overlap or touch (sorted starts)."""
    events: list[list[int]] = []
    for start in np.asarray(starts)[np.asarray(alarms, dtype=bool)].tolist():
        if events and start <= events[-1][1]:
            events[-1][1] = start + window_samples
        else:
            events.append([start, start + window_samples])
    return [(first, last) for first, last in events]


def poisson_rate_interval(count: int, hours: float, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval of a Poisson rate per hour for ``count`` events in ``hours``."""
    tail = (1.0 - confidence) / 2.0
    low = 0.0 if count == 0 else chi2.ppf(tail, 2 * count) / 2.0
    high = chi2.ppf(1.0 - tail, 2 * count + 2) / 2.0
    return float(low / hours), float(high / hours)


def summarise_events(starts: np.ndarray, alarms: np.ndarray, window_samples: int, rate_hz: float,
                     anomaly: tuple[int, int], margin: int, confidence: float = 0.95) -> EventSummary:
    """Events of one stretch of windows (``starts`` sorted, their ``alarms``) against the labelled ``anomaly``."""
    starts, alarms = np.asarray(starts), np.asarray(alarms, dtype=bool)
    first, last = anomaly
    near = (starts < last + margin) & (starts + window_samples > first - margin)
    in_stretch = bool(near.any())
    events = alarm_events(starts, alarms, window_samples)
    detecting = [event for event in events if event[0] < last + margin and event[1] > first - margin]
    delay = None
    if detecting:
        detecting_windows = starts[alarms & near]
        delay = float((detecting_windows.min() + window_samples - first) / rate_hz)
    covered: set[int] = set()
    for start in starts[~near].tolist():
        covered.update(range(start, start + window_samples))
    normal_s = len(covered) / rate_hz
    false_events = len(events) - len(detecting)
    hours = normal_s / 3600.0
    return EventSummary(
        anomaly_in_stretch=in_stretch,
        anomaly_detected=bool(detecting) if in_stretch else None,
        detection_delay_s=delay,
        false_alarm_events=false_events,
        normal_signal_s=round(normal_s, 3),
        false_alarms_per_hour=float(false_events / hours) if hours else float("nan"),
        false_alarms_per_hour_interval=poisson_rate_interval(false_events, hours, confidence) if hours
        else (float("nan"), float("nan")),
        alarmed_windows=int(alarms.sum()),
        scored_windows=int(starts.size),
    )
