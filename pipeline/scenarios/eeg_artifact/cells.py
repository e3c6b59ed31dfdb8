"""GRU against LSTM for the EEG artefact model: both built by the real build, measured side by side.

For each cell the whole ``eeg-artifact`` build runs (same data, seed, training settings and gate; only
``EegModelConfig.cell`` differs) and its artefacts are read back: export parity and op census (GRU → ONNX ``Loop``,
LSTM → fused ``LSTM``), every variant's size, agreement with fp32, what int8 quantized (the op types in the graph and
inside the Loop body), the gate's verdict and test metrics with bootstrap CIs. Then every variant of both cells is
timed together at batch 1 in interleaved rounds on one real test window, so the cells' latencies are measured in
the same seconds of the same machine (``exporters.timing``). ``choose_cell`` applies the rule below and the result is
written to ``benchmarks/results/eeg_recurrent_cells.{json,md}``.

The rule (``RULE``): accuracy first, then batch-1 latency of each cell's fastest gate-passing variant measured in
the same interleaved rounds, then size.

Layering: this module may not import ``pipeline.build`` or ``exporters`` (a scenario sits below them), so the build,
the timing and the composition are passed in (``ComparisonTools``) by the caller — the composition root, e.g.
``pipeline/benchmark/eeg_recurrent_cells.py`` (see the report): ``run_comparison(tools, …)``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.config import BuildConfig, Profile
from pipeline.errors import DataError
from pipeline.scenarios.eeg_artifact.data import CLASS_NAMES
from pipeline.scenarios.eeg_artifact.model import RecurrentCell, build_eeg_model, footprint
from pipeline.scenarios.eeg_artifact.scenario import EegArtifactScenario
from pipeline.splits import load_splits

logger = logging.getLogger(__name__)

MARGIN = 0.05  # a cell must be this much faster (ratio ≤ 0.95) to win on latency, as a variant must beat fp32
RULE = ("a cell whose export fails parity cannot win; if the two cells' fp32 test macro-F1 95 % intervals do not "
        "overlap, the better cell wins (accuracy first); otherwise the cell whose fastest gate-passing variant is "
        f"faster in the joint timing (median of per-round ratios) by at least {MARGIN:.0%} wins; within that margin, "
        "the cell with fewer parameters wins")
RESULTS_NAME = "eeg_recurrent_cells"
VARIANTS = ("fp32", "fp16", "int8-dynamic", "int8-static")


@dataclass(frozen=True)
class ComparisonTools:
    """What the comparison needs from the rooms above the scenarios, passed in by the composition root."""

    # (scenario, build config, artefacts root, bundles root) → the published bundle folder
    build: Callable[[EegArtifactScenario, BuildConfig, Path, Path], Path]
    # (name → ONNX file, one batch-1 input) → an interleaved result: median_of_windows_us(name), ratio(name, ref),
    # percentile_us(name, p)
    measure: Callable[[dict[str, Path], np.ndarray], object]


def cell_config(scenario: EegArtifactScenario, profile: Profile, cell: RecurrentCell, seed: int = 0) -> BuildConfig:
    """The scenario's build config with only the recurrent cell changed, built like ``--allow-unvalidated``: the
    comparison's bundles are never shipped, and the evidence rule's verdict (eeg-artifact's test split is too thin
    to validate movement and electromagnetic) stays in each bundle's manifest and report as NOT VALIDATED."""
    config = scenario.build_config(profile, seed)
    evidence = replace(config.bundle.evidence, enforced=False)
    return replace(config, model=replace(config.model, cell=cell),
                   bundle=replace(config.bundle, evidence=evidence))


def onnx_ops(path: Path) -> dict[str, dict[str, int]]:
    """Op types of the top graph and of every subgraph (a Loop's body), counted separately."""
    import onnx

    def walk(graph, into: Counter, bodies: Counter) -> None:
        for node in graph.node:
            into[node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"] += 1
            for attribute in node.attribute:
                for subgraph in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else
                                 list(attribute.graphs)):
                    walk(subgraph, bodies, bodies)

    top, body = Counter(), Counter()
    walk(onnx.load(str(path)).graph, top, body)
    return {"graph": dict(sorted(top.items())), "subgraphs": dict(sorted(body.items()))}


def recurrent_core(ops: dict[str, dict[str, int]]) -> str:
    """In words: what the recurrent part of a variant runs as."""
    graph, body = ops["graph"], ops["subgraphs"]
    if "com.microsoft.DynamicQuantizeLSTM" in graph:
        return "DynamicQuantizeLSTM (int8 weights, activations quantized per call)"
    if "LSTM" in graph:
        return "fused LSTM op, float"
    if "Loop" in graph:
        quantized = sorted(name for name in body if "Integer" in name or "QLinear" in name or "Quantize" in name)
        return ("Loop, body " + (", ".join(quantized) if quantized else "float") +
                f" ({sum(body.values())} nodes a step)")
    return "no recurrent op found"


def _artefact(root: Path, stage: str, artefact_id: str) -> tuple[Path, dict]:
    folder = root / stage / artefact_id
    return folder, json.loads((folder / "manifest.json").read_text())


def per_recording(artifacts: Path, lineage: dict) -> dict[str, dict[str, dict[str, int]]]:
    """Each variant's decisions on each test recording: class name → windows (the test split keeps part order)."""
    _, data = _artefact(artifacts, "data", lineage["data"])
    parts = [part for part in data["metrics"]["provenance"]["parts"] if part["split"] == "test"]
    with np.load(artifacts / "variants" / lineage["variants"] / "test_predictions.npz") as arrays:
        decisions = {name: arrays[name].argmax(axis=1) for name in VARIANTS}
    result = {}
    for name, decided in decisions.items():
        start, rows = 0, {}
        for part in parts:
            counts = np.bincount(decided[start:start + part["kept"]], minlength=len(CLASS_NAMES))
            rows[f"{part['file']} ({part['label']})"] = dict(zip(CLASS_NAMES, map(int, counts)))
            start += part["kept"]
        result[name] = rows
    return result


def read_cell(cell: RecurrentCell, bundle: Path, artifacts: Path, model_config) -> dict:
    """Everything one cell's build measured, read from its bundle manifest and cached artefacts."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    lineage = manifest["lineage"]
    _, train = _artefact(artifacts, "train", lineage["model"])
    _, export = _artefact(artifacts, "export", lineage["export"])
    variants_folder, variants = _artefact(artifacts, "variants", lineage["variants"])
    entry = {"cell": cell.value, "shipped": manifest["variant"], "selection": manifest["selection"]["reason"],
             "footprint": footprint(build_eeg_model(model_config, manifest["inputs"][0]["shape"][1], 3)),
             "training": {**manifest["training"], "seconds": train["duration_s"]},
             "export": {"parity": export["metrics"]["parity"], "op_census": export["metrics"]["op_census"],
                        "warnings": export["metrics"]["warnings"], "seconds": export["duration_s"]},
             "variants_seconds": variants["duration_s"], "variants": {}}
    for name in VARIANTS:
        made, shipped = variants["metrics"]["variants"][name], manifest["variants"][name]
        ops = onnx_ops(variants_folder / f"{name}.onnx")
        entry["variants"][name] = {
            "size_bytes": made["size_bytes"],
            "max_abs_diff_vs_fp32": made["max_abs_diff_vs_fp32"],
            "argmax_agreement_vs_fp32": made["argmax_agreement_vs_fp32"], "ops": ops,
            "recurrent_core": recurrent_core(ops), "int8_tuning": made.get("int8_tuning", {}).get("chosen"),
            "gate": {"passed": shipped["gate"]["passed"], "reason": shipped["gate"]["reason"]},
            "macro_f1": shipped["macro_f1"], "sensitivity": shipped["sensitivity"],
            "build_latency": {key: shipped["latency"][key] for key in ("median_of_windows_us", "ratio_to_fp32")}}
    entry["measured_on"] = manifest["selection"]["measured_on"]
    entry["artefacts"] = lineage  # stage → artefact id in the cache the build used
    entry["test_recordings"] = per_recording(artifacts, lineage)
    return entry


def joint_latency(cells: dict[str, dict], result, reference: str) -> dict:
    """Every variant's figures from one interleaved timing of both cells, with ratios to ``reference``."""
    return {name: {"median_of_windows_us": result.median_of_windows_us(name), "p90_us": result.percentile_us(name, 90),
                   "ratio_to_reference": result.ratio(name, reference)}
            for name in (f"{cell}/{variant}" for cell in cells for variant in VARIANTS)}


def choose_cell(cells: dict[str, dict], latency: dict[str, dict]) -> dict:
    """The rule of the module docstring, with the numbers it used."""
    eligible = [name for name, entry in cells.items() if entry["export"]["parity"]["passed"]]
    if len(eligible) < 2:
        if not eligible:
            raise DataError("no cell's export passed parity", expected="a cell whose ONNX export matches Keras",
                            fix="see the export stage's parity failures of each cell")
        return {"winner": eligible[0], "reason": "the other cell's export failed parity", "rule": RULE}
    fastest = {}
    for name in eligible:
        passing = [variant for variant in VARIANTS if cells[name]["variants"][variant]["gate"]["passed"]]
        fastest[name] = min(passing, key=lambda variant: latency[f"{name}/{variant}"]["ratio_to_reference"])
    first, second = sorted(eligible, key=lambda name: latency[f"{name}/{fastest[name]}"]["ratio_to_reference"])
    f1 = {name: cells[name]["variants"]["fp32"]["macro_f1"] for name in eligible}
    ratio = latency[f"{first}/{fastest[first]}"]["ratio_to_reference"] / \
        latency[f"{second}/{fastest[second]}"]["ratio_to_reference"]
    overlap = f1[first]["low"] <= f1[second]["high"] and f1[second]["low"] <= f1[first]["high"]
    if not overlap:
        winner = max(eligible, key=lambda name: f1[name]["value"])
        why = "its fp32 test macro-F1 interval lies above the other cell's"
    elif ratio <= 1 - MARGIN:
        winner = first
        why = (f"test macro-F1 intervals overlap (no measured accuracy difference); its fastest passing variant "
               f"({fastest[first]}) runs at {ratio:.2f}× the other cell's fastest ({fastest[second]}) in the joint "
               f"timing")
    else:
        winner = min(eligible, key=lambda name: cells[name]["footprint"]["parameters"])
        why = f"no accuracy or latency difference beyond {MARGIN:.0%}; fewer parameters"
    return {"winner": winner, "reason": why, "fastest_passing": fastest, "latency_ratio": ratio,
            "macro_f1_intervals_overlap": overlap, "rule": RULE}


def run_comparison(tools: ComparisonTools, artifacts: Path, bundles: Path, profile: Profile = Profile.FULL,
                   seed: int = 0) -> dict:
    """Build both cells, read what each build measured, time all their variants together, choose."""
    scenario = EegArtifactScenario()
    cells = {}
    for cell in RecurrentCell:
        config = cell_config(scenario, profile, cell, seed)
        bundle = tools.build(scenario, config, artifacts, bundles / cell.value)
        cells[cell.value] = read_cell(cell, bundle, artifacts, config.model)
    data_ids = {entry["artefacts"]["data"] for entry in cells.values()}  # one: only the model config differs
    splits = load_splits(artifacts / "data" / data_ids.pop() / "splits.npz")
    sample = np.asarray(splits.test.inputs[:1], dtype=np.float32)
    models = {f"{cell}/{variant}": artifacts / "variants" / entry["artefacts"]["variants"] / f"{variant}.onnx"
              for cell, entry in cells.items() for variant in VARIANTS}
    reference = f"{RecurrentCell.LSTM.value}/fp32"
    latency = joint_latency(cells, tools.measure(models, sample), reference)
    return {"scenario": scenario.name, "profile": profile.value, "seed": seed, "cells": cells,
            "joint_latency": {"reference": reference, "sample": "the first test window (1, 500, 1)",
                              "variants": latency},
            "decision": choose_cell(cells, latency)}
