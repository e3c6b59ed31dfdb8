"""``edgemed inspect MODEL [--data D.npz] [--task KIND]``: what edgemed understood, before any work.

Prints the model's inputs, what it computes in (a mixed-precision model is exported in float32), its
output, the task kind it detected and why (or the one named with ``--task``), whether the model outputs
logits, the head the export will append, and what the build will check: parity with Keras, how
decisions are set, and the clinical gate of the kind. With ``--data`` every check ``edgemed build``
makes on the ``.npz`` runs too. Exit 0 when a build could start, 2 (with the problem on stderr) when
it could not; nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import click

from exporters.precision import describe_precision
from exporters.task_detection import TaskDetection
from pipeline.build.stages.import_model import SINGLE_INPUT_NAME, detect, read_import
from pipeline.build.stages.variants import describe_decision_data
from pipeline.build.user_data import ModelSignature, model_signature
from pipeline.build.user_sources import user_test_sources
from pipeline.cli.logging_setup import configure_logging
from pipeline.clinical.evidence import EvidenceRule, class_test_counts, judge_evidence
from pipeline.clinical.task_evaluation import THRESHOLDED, gate_rule
from pipeline.config import EvaluateConfig, ParityConfig
from pipeline.errors import UsageError
from pipeline.splits import DataSplits
from pipeline.training.keras_files import load_keras_model
from runtime.contract import TaskKind
from runtime.errors import EdgemedError

_DECISIONS = {
    TaskKind.MULTICLASS: "argmax",
    TaskKind.BINARY: "decision (> 0.5)",
    TaskKind.MULTILABEL: "decision (> 0.5 per label)",
}


def _inputs_lines(signature: ModelSignature) -> list[str]:
    lines = ["inputs:"]
    for name, shape in zip(signature.input_names, signature.input_shapes, strict=True):
        graph = name if signature.several_inputs else f"{SINGLE_INPUT_NAME} (Keras: {name})"
        kind = "tabular row" if len(shape) == 1 else "waveform (needs sample_rate_hz)"
        lines.append(f"  {graph}: (batch, {', '.join(map(str, shape))}) — {kind}")
    if signature.several_inputs:
        lines.append("  .npz keys: <split>_inputs__<input name>, e.g. "
                     + ", ".join(f"test_inputs__{name}" for name in signature.input_names))
    return lines


def _task_lines(detection: TaskDetection, named: str | None) -> list[str]:
    head = detection.head
    return [
        f"output: (batch, {detection.output_width}) values per sample, final activation {detection.output_activation}",
        f"task: {detection.kind.value} ({'named with --task' if named else 'detected'}) — {detection.reason}",
        f"logits: {'yes' if detection.logits else 'no'}",
        "head: " + (f"{head.value}, appended to the exported graph" if head else "none (the output ships as it is)"),
    ]


def _check_lines(kind: TaskKind, splits: DataSplits | None) -> list[str]:
    parity, evaluate = ParityConfig(), EvaluateConfig()
    decided = _DECISIONS.get(kind)
    lines = [
        "checks:",
        f"  parity: ONNX Runtime vs Keras on up to {parity.samples} held-out inputs at batch sizes "
        f"{', '.join(map(str, parity.batch_sizes))}: max |Δ| ≤ {parity.tolerance:g}"
        + (f" and the same {decided}" if decided else " (values only: no decision to compare)"),
    ]
    where = describe_decision_data(splits) if splits is not None and kind in THRESHOLDED else None
    lines.append(f"  decision: {evaluate.decision.describe(kind)}" + (f" on the {where}" if where else ""))
    labelled = splits is None or splits.test.labels is not None
    rule = gate_rule(kind, evaluate.gate_for(kind), labelled)
    lines.append(f"  gate (every variant vs fp32 on the test split): {rule}")
    return lines


def _data_lines(splits: DataSplits) -> list[str]:
    sizes = ", ".join(f"{name} {len(splits.split(name))}" + (" labelled" if splits.split(name).labelled else "")
                      for name in ("test", "validation", "calibration") if len(splits.split(name)))
    if splits.normal is not None:
        sizes += f", normal {len(splits.normal)}"
    units = f"; units {', '.join(splits.units)}" if splits.units else ""
    return [f"data: ok — {sizes}; labels {', '.join(splits.class_names)}{units}", _evidence_line(splits)]


def _evidence_line(splits: DataSplits) -> str:
    """The evidence rule on the .npz's test split and sources, as a default build judges it after its data stage."""
    counts = class_test_counts(splits.class_balance(), {"test": len(splits.test)}, splits.class_names)
    verdict = judge_evidence(EvidenceRule(), counts, synthetic=False,
                             sources=user_test_sources(splits.provenance, counts))
    if verdict.passed:
        return f"evidence: passes — {verdict.summary()}"
    return (f"evidence: fails — {verdict.summary()}; a default build stops after its data stage "
            "(--allow-unvalidated builds it for development only)")


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The .npz 'edgemed build --model MODEL --data' would use: every check on it runs too.")
@click.option("--task", type=click.Choice([kind.value for kind in TaskKind]), default=None,
              help="What the model predicts, when it cannot be detected.")
@click.option("-v", "--verbose", is_flag=True, help="Log what the checks do.")
def inspect_command(model: Path, data: Path | None, task: str | None, verbose: bool) -> None:
    """Show what edgemed understands of MODEL (and --data) before any work: inputs, task, head, checks."""
    configure_logging(verbose)
    click.echo(f"model: {model}")
    try:
        keras_model = load_keras_model(model)
        signature = model_signature(keras_model)
        for line in _inputs_lines(signature):
            click.echo(line)
        click.echo(f"precision: {describe_precision(keras_model)}")
        if data is None:
            detection, splits = detect(keras_model, {}, signature, task), None
        else:
            request = read_import(model, data, model.stem, task, EvaluateConfig().decision, model=keras_model)
            detection, splits = request.detection, request.splits
        for line in _task_lines(detection, task):
            click.echo(line)
        for line in _check_lines(TaskKind(detection.kind.value), splits):
            click.echo(line)
        lines = _data_lines(splits) if splits is not None else [
            "data: none given (--data D.npz runs every check of the .npz)"]
        for line in lines:
            click.echo(line)
    except UsageError as error:
        raise click.UsageError(str(error)) from error
    except EdgemedError as error:
        raise click.ClickException(str(error)) from error
