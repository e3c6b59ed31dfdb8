"""The build's own gate, applied to every model the benchmark times: a peer is judged as the ONNX variants were.

A fast model that answers wrongly is no peer, so each LiteRT (and Keras) model gets the verdict the
build would give it if it were one more variant:

* **on samples** — the ``evaluate`` stage's gate: the model's outputs on the test split and on the
  decision data (where a thresholded kind chooses its threshold, by the build's own rule), its metrics on
  the test split, judged against ONNX fp32 — the build's reference — with the scenario's gate config
  (``pipeline.clinical.task_evaluation.evaluate_task_variants``, exactly what the evaluate stage runs);
* **on recordings** — for scenarios with held-out annotated recordings, the ``validate`` stage's gate:
  the model through the full device stream on those recordings (``stream_gate``).

A model passes when every gate that ran passed. The ONNX variants' verdicts are the build's own,
read from its ``evaluate`` and ``validate`` artefacts (``onnx_judgements``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exporters.inputs import ModelInputs
from pipeline.clinical.gate import GateVerdict
from pipeline.clinical.task_evaluation import REFERENCE, TaskData, TaskMetrics, evaluate_task_variants, headline
from pipeline.config import EvaluateConfig
from runtime.contract import TaskKind


@dataclass(frozen=True)
class RecordingVerdict:
    """The recording gate's verdict on one model and the figures it judged (None when it did not run)."""

    passed: bool | None
    reason: str
    figures: dict | None = None
    measured_on: str = ""

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reason": self.reason, "figures": self.figures, "measured_on": self.measured_on}


@dataclass(frozen=True)
class Judgement:
    """One model's accuracy and gate verdict, and what they were measured on."""

    passed: bool | None  # None: no gate could be applied (a bare model file: no data)
    reason: str
    metric: str | None = None  # the headline metric's name ("macro-F1", "MAE qt (ms)", …)
    value: float | None = None  # its value on the test split
    measured_on: str = ""  # the data the accuracy and the sample gate were measured on, in words
    samples: dict | None = None  # the sample gate's verdict: {passed, reason}
    recordings: RecordingVerdict | None = None  # the recording gate's, where the scenario has recordings

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reason": self.reason, "metric": self.metric, "value": self.value,
                "measured_on": self.measured_on, "samples": self.samples,
                "recordings": self.recordings.to_dict() if self.recordings is not None else None}


@dataclass(frozen=True)
class GateSetting:
    """What the build judged its variants with and on, to judge the peers the same way."""

    task: TaskData  # kind, label names, test labels, decision labels
    evaluate: EvaluateConfig  # the scenario's gate configs, threshold rule and bootstrap
    test_inputs: ModelInputs
    decision_inputs: ModelInputs | None  # where thresholds are chosen (None: the kind has none)
    reference_test: np.ndarray  # ONNX fp32's outputs on the test split (the variants artefact)
    reference_decision: np.ndarray | None  # … and on the decision data
    measured_on: str  # the test split in words
    recordings: object | None = None  # stream_gate.RecordingSetting, for scenarios with held-out recordings


@dataclass(frozen=True)
class SampleResult:
    """A model's metrics on the test split (at its own threshold) and the sample gate's verdict."""

    metrics: TaskMetrics
    verdict: GateVerdict


def judge_samples(setting: GateSetting, outputs: dict[str, tuple[np.ndarray, np.ndarray | None]]
                  ) -> dict[str, SampleResult]:
    """Every model's sample-gate result, ``outputs``: name → (test outputs, decision outputs) (no "fp32": that
    name is the reference, ONNX fp32)."""
    test = {REFERENCE: setting.reference_test, **{name: values[0] for name, values in outputs.items()}}
    decision = {}
    if setting.reference_decision is not None:
        decision = {REFERENCE: setting.reference_decision,
                    **{name: values[1] for name, values in outputs.items() if values[1] is not None}}
    elif setting.task.kind is TaskKind.ANOMALY:  # as the evaluate stage: no normal data apart, test inputs as normal
        decision = test
    result = evaluate_task_variants(setting.task, test, decision, setting.evaluate.evaluation,
                                    setting.evaluate.decision, setting.evaluate.gate_for(setting.task.kind))
    return {name: SampleResult(result.metrics[name], result.verdicts[name]) for name in outputs}


def judgement(metrics: TaskMetrics, verdict: GateVerdict, measured_on: str,
              recordings: RecordingVerdict | None = None) -> Judgement:
    """One verdict from the sample gate's and, when it ran, the recording gate's."""
    name, estimate = headline(metrics)
    passed = verdict.passed and (recordings is None or recordings.passed is not False)
    reason = f"samples: {verdict.reason}"
    where = measured_on
    if recordings is not None:
        reason += f" | recordings: {recordings.reason}"
        where += f"; recordings: {recordings.measured_on}"
    return Judgement(passed, reason, name, float(estimate.value), where,
                     {"passed": verdict.passed, "reason": verdict.reason}, recordings)


def onnx_judgements(setting: GateSetting, metrics: dict[str, TaskMetrics], verdicts: dict[str, GateVerdict],
                    recording_verdicts: dict[str, GateVerdict] | None = None,
                    recording_figures: dict[str, dict] | None = None, recordings_measured_on: str = ""
                    ) -> dict[str, Judgement]:
    """The ONNX variants' judgements: the build's own verdicts (its ``evaluate`` and ``validate`` artefacts)."""
    judged = {}
    for name, verdict in verdicts.items():
        recordings = None
        if recording_verdicts is not None and name in recording_verdicts:
            recordings = RecordingVerdict(recording_verdicts[name].passed, recording_verdicts[name].reason,
                                          (recording_figures or {}).get(name), recordings_measured_on)
        judged[name] = judgement(metrics[name], verdict, setting.measured_on, recordings)
    return judged


def unjudged(reason: str) -> Judgement:
    """A model no gate could be applied to (no data, or its outputs could not be had)."""
    return Judgement(None, reason)
