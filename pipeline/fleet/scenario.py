"""The fleet's event script: which device misbehaves how, when and how badly (plain data).

A script is a tuple of :class:`ScriptedEvent`. Times are simulated minutes since the start of the
simulation; ``magnitude`` means something different for each kind (see :class:`EventKind`).
:func:`default_script` assigns one problem per device so that a monitoring team has something
specific to catch on every device but the first (the healthy control).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from runtime.errors import EdgemedError


class ScenarioError(EdgemedError):
    """The event script does not fit the fleet (unknown device, empty window, bad magnitude)."""


class EventKind(StrEnum):
    GAIN_DRIFT = "gain_drift"  # magnitude: amplifier gain reached at the end of the window (ramps up from 1)
    RISING_NOISE = "rising_noise"  # magnitude: EMG noise RMS at the end of the window, in signal RMS units
    LEAD_OFF = "lead_off"  # magnitude unused: the electrode is off (flat line) for the whole window
    RATE_MISMATCH = "rate_mismatch"  # magnitude: relative rate error; true rate = declared × (1 + magnitude)
    LATENCY_REGRESSION = "latency_regression"  # magnitude: inference slowdown factor (latency × magnitude)
    # magnitude: the heart's pace as a share of the recording's (0.45: 75 bpm becomes 34 bpm). The recording is
    # played that much slower (SYNTHETIC: its QRS complexes widen too, as in a ventricular escape rhythm), at a
    # rate the ECG model was never developed on: the device refuses those beats (out_of_domain).
    SLOW_RHYTHM = "slow_rhythm"
    ROLLOUT = "rollout"  # magnitude unused: from start_minute on, the device runs the rollout bundle


@dataclass(frozen=True)
class ScriptedEvent:
    kind: EventKind  # what happens
    device_index: int  # which device (0-based position in the fleet)
    start_minute: float  # simulated minutes since the simulation start, inclusive
    end_minute: float  # exclusive; a rollout lasts to the end of the simulation whatever this says
    magnitude: float = 1.0  # how bad, in the kind's own unit (see EventKind)

    def active(self, minute: float) -> bool:
        if self.kind is EventKind.ROLLOUT:
            return minute >= self.start_minute
        return self.start_minute <= minute < self.end_minute

    def progress(self, minute: float) -> float:
        """How far into the window ``minute`` is: 0 at the start, 1 at the end (clamped)."""
        length = self.end_minute - self.start_minute
        return min(1.0, max(0.0, (minute - self.start_minute) / length)) if length > 0 else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScriptedEvent:
        return cls(
            kind=EventKind(data["kind"]),
            device_index=int(data["device_index"]),
            start_minute=float(data["start_minute"]),
            end_minute=float(data["end_minute"]),
            magnitude=float(data.get("magnitude", 1.0)),
        )


# Default magnitudes: each is large enough that the runtime's own checks or the telemetry show it.
DEFAULT_GAIN = 12.0  # the PLUX recordings span ~1/10 of the 16-bit range: ×12 clips both rails
DEFAULT_NOISE_RMS = 0.6  # EMG noise at 60 % of the signal RMS moves difference_rms and kurtosis clearly
DEFAULT_RATE_ERROR = 0.1  # 10 % rate error, five times the stream's 2 % tolerance
DEFAULT_SLOWDOWN = 5.0  # inference five times slower under CPU contention
DEFAULT_PACE = 0.45  # ~34 bpm from a ~75 bpm recording: RR intervals beyond the ecg-pvc bundle's input domain

# (kind, device index, start, end as shares of the simulated time, magnitude), in device order.
_DEFAULT_PLAN: tuple[tuple[EventKind, int, float, float, float], ...] = (
    (EventKind.GAIN_DRIFT, 1, 0.30, 0.70, DEFAULT_GAIN),
    (EventKind.RISING_NOISE, 2, 0.25, 0.75, DEFAULT_NOISE_RMS),
    (EventKind.LEAD_OFF, 3, 0.30, 0.40, 1.0),
    (EventKind.LEAD_OFF, 3, 0.60, 0.65, 1.0),
    (EventKind.RATE_MISMATCH, 4, 0.40, 0.80, DEFAULT_RATE_ERROR),
    (EventKind.LATENCY_REGRESSION, 5, 0.50, 0.90, DEFAULT_SLOWDOWN),
    (EventKind.SLOW_RHYTHM, 6, 0.35, 0.75, DEFAULT_PACE),
)
PROBLEM_DEVICES = 1 + max(index for _, index, _, _, _ in _DEFAULT_PLAN)  # device 0 healthy, one problem each after
ROLLOUT_SHARE = 0.5  # the rollout happens half-way through


def default_script(devices: int, minutes: float) -> tuple[ScriptedEvent, ...]:
    """One problem per device 1–6 (device 0 stays healthy); devices 7… get the rollout half-way.

    With exactly seven devices the rollout goes to device 0; with fewer, the problems of the missing
    devices are left out.
    """
    script = [
        ScriptedEvent(kind, index, round(start * minutes, 3), round(end * minutes, 3), magnitude)
        for kind, index, start, end, magnitude in _DEFAULT_PLAN
        if index < devices
    ]
    rollout_devices = (range(PROBLEM_DEVICES, devices) if devices > PROBLEM_DEVICES
                       else range(1) if devices == PROBLEM_DEVICES else range(0))
    rollout_minute = round(ROLLOUT_SHARE * minutes, 3)
    script += [ScriptedEvent(EventKind.ROLLOUT, index, rollout_minute, minutes) for index in rollout_devices]
    return tuple(script)


def validate_script(script: tuple[ScriptedEvent, ...], devices: int, minutes: float) -> None:
    """Refuse events for devices that do not exist, empty windows and meaningless magnitudes."""
    for event in script:
        if not 0 <= event.device_index < devices:
            raise ScenarioError(
                f"a {event.kind.value} event is scripted for device {event.device_index}",
                expected=f"a device index from 0 to {devices - 1}",
                fix="fix the script or simulate more devices",
            )
        if event.kind is not EventKind.ROLLOUT and not 0 <= event.start_minute < event.end_minute:
            raise ScenarioError(
                f"the {event.kind.value} event of device {event.device_index} has an empty window",
                expected="0 ≤ start_minute < end_minute",
                fix="fix the event's minutes",
            )
        if event.start_minute >= minutes:
            raise ScenarioError(
                f"the {event.kind.value} event of device {event.device_index} starts after the simulation ends",
                expected=f"start_minute < {minutes}",
                fix="simulate longer or move the event",
            )
        if (event.magnitude <= 0 or (event.kind is EventKind.GAIN_DRIFT and event.magnitude < 1)
                or (event.kind is EventKind.SLOW_RHYTHM and event.magnitude > 1)):
            raise ScenarioError(
                f"the {event.kind.value} event of device {event.device_index} has magnitude {event.magnitude}",
                expected="a positive magnitude (a gain of at least 1 for gain drift; a pace in (0, 1] for a slow "
                         "rhythm)",
                fix="fix the event's magnitude",
            )
