"""A simulated fleet of ECG devices running the real runtime against the real collector (``edgemed simulate``).

``scenario`` is the event script (plain data), ``signals`` the per-device ECG and its impairments,
``device`` one device (bundle, stream, outbox, uploader), ``simulator`` the fleet loop and summary.
"""

from pipeline.fleet.scenario import EventKind, ScenarioError, ScriptedEvent, default_script
from pipeline.fleet.simulator import SimulationConfig, device_id_for, simulate, write_summary

__all__ = [
    "EventKind",
    "ScenarioError",
    "ScriptedEvent",
    "SimulationConfig",
    "default_script",
    "device_id_for",
    "simulate",
    "write_summary",
]
