"""The validate stage's results as the bundle stage reads them: verdicts, per-variant summaries, the manifest section.

``recording_validation.json`` in a ``validate`` artefact holds, per variant, what
``pipeline.validation.recordings`` measured (per record, gross, intervals, healthy recordings) and the recording
gate's verdict, plus what was run (records, stream settings, gate). The bundle joins the verdicts with the
evaluate stage's, lists each variant's gross figures beside its other metrics, and writes the whole section
(every variant) into the manifest as ``recording_validation``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pipeline.build.artifacts import Artifact
from pipeline.clinical.gate import GateVerdict

RESULTS_FILE = "recording_validation.json"
GROSS_FIGURES = ("qrs_sensitivity", "qrs_positive_predictivity", "v_sensitivity", "v_positive_predictivity",
                 "v_false_positive_rate")


@dataclass(frozen=True)
class RecordingResults:
    """What the validate stage wrote."""

    document: dict  # RESULTS_FILE: {"about": …, "variants": {name: {…, "verdict": …}}}

    @property
    def verdicts(self) -> dict[str, GateVerdict]:
        return {name: GateVerdict.from_dict(entry["verdict"]) for name, entry in self.document["variants"].items()}

    def variant_summary(self, name: str) -> dict:
        """The gross figures with their intervals and the healthy false PVC rate: a row of the variants table."""
        entry = self.document["variants"][name]
        gross, intervals = entry["gross"], entry["intervals"]
        healthy = entry.get("healthy") or {}
        return {
            **{figure: {"value": gross.get(figure), "low": (intervals.get(figure) or [None, None])[0],
                        "high": (intervals.get(figure) or [None, None])[1]} for figure in GROSS_FIGURES},
            "healthy_false_pvc_rate": healthy.get("false_pvc_rate"),
            "gate": entry["verdict"],
        }


def load_recording_validation(artifact: Artifact) -> RecordingResults:
    return RecordingResults(json.loads(artifact.path(RESULTS_FILE).read_text()))


def manifest_section(results: RecordingResults, shipped: str) -> dict:
    """The manifest's ``recording_validation``: what was run, every variant's figures and verdict, the shipped one."""
    return {**results.document, "shipped_variant": shipped}
