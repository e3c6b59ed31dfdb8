"""Leave-one-record-out (LORO) measurement of PVC detection designs on the real MIT-BIH subset.

``python -m pipeline.benchmark.ecg_pvc_loro`` — for each design variant and each of the 10 records:
the runtime's own detector finds the beats of every record (``pipeline.scenarios.ecg_pvc.beats``);
a two-input model is trained on the other 9 records as an inner cross-validated ensemble whose
out-of-fold predictions choose the decision threshold (``ecg_pvc_training``: the threshold with the
highest out-of-fold V F1); the held-out record is scored end to end with EC57 counts
(``ecg_pvc_scoring``). The held-out record never influences training, stopping or the threshold.
Results at the fixed threshold 0.5 are reported beside them.

The whole measurement runs once per training seed (``--seeds``, default 0 1 2): with nine training records the
held-out figures move by many points between seeds (record 200's V Se spans 40–80 % over eight seeds on one Intel
Xeon) and between machines (CPU kernels change the training trajectory), so one seed's table is one draw. The
report gives every seed's table, the counts summed over the seeds (each seed weighs the same: the beats are the
same) and each record's V Se and V +P per seed. Writes
``benchmarks/results/ecg_pvc_loro.json`` and ``.md``; progress goes to the log, one line an epoch.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.benchmark.ecg_pvc_scoring import markdown_table, percent, pooled_counts, rates, record_counts
from pipeline.benchmark.ecg_pvc_training import FoldConfig, ThresholdRule, run_fold
from pipeline.build.machine import machine_fingerprint
from pipeline.errors import UsageError
from pipeline.scenarios.ecg_pvc.beats import (
    FALSE_DETECTION,
    NON_V,
    BeatDataConfig,
    RecordBeats,
    record_beats,
    with_template,
)
from pipeline.scenarios.ecg_pvc.mitdb import load_records, provenance
from pipeline.scenarios.ecg_pvc.model import PvcModelConfig
from runtime.ecg.template import TemplateConfig

logger = logging.getLogger(__name__)

RESULTS = Path("benchmarks/results")


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    model: PvcModelConfig = field(default_factory=PvcModelConfig)
    template: TemplateConfig = field(default_factory=TemplateConfig)  # how the residual channel is made
    train_on_false_detections: bool = True  # unmatched detections join training as non-V (else left out)


VARIANTS = {
    "window+rr": Variant("window+rr", "beat window (z-scored in the graph) + 6 RR features"),
    "window+template+rr": Variant(
        "window+template+rr",
        "beat window + residual from the running template of the previous 30 beats + 6 RR features",
        PvcModelConfig(use_template=True),
    ),
    "gated-template+rr": Variant(
        "gated-template+rr",
        "residual from the running template of the previous 30 NON-PREMATURE beats (pre-RR ≥ 0.9 × local RR) "
        "+ 6 RR features, no absolute window, whole morphology branch dropped for half the training beats",
        PvcModelConfig(use_window=False, use_template=True, morphology_dropout=0.5),
        TemplateConfig(minimum_pre_to_local=0.9),
    ),
}


@dataclass(frozen=True)
class LoroConfig:
    seeds: tuple[int, ...] = (0, 1, 2)  # one whole measurement per seed; fold k of seed s uses fold_seed(s, k)
    fold: FoldConfig = field(default_factory=FoldConfig)  # inner ensemble, training and threshold rule
    beats: BeatDataConfig = field(default_factory=BeatDataConfig)  # detection, windows, RR, default template


def score_fold(test: RecordBeats, probabilities: np.ndarray, threshold: float) -> dict:
    """EC57 counts and rates of one held-out record at the chosen threshold and at 0.5."""
    counts, at_half = record_counts(test, probabilities >= threshold), record_counts(test, probabilities >= 0.5)
    called = probabilities >= threshold
    return {
        "counts": counts,
        "rates": rates(counts),
        "counts_at_0_5": at_half,
        "rates_at_0_5": rates(at_half),
        "false_detections_called_v": int(np.sum((test.labels == FALSE_DETECTION) & called)),
        "non_v_called_v": int(np.sum((test.labels == NON_V) & called)),
    }


def fold_seed(seed: int, index: int) -> int:
    """The seed of fold ``index`` (its inner groups and weights) in the run of ``seed``: seed 0's folds are 0…9,
    as before seeds were a list; other seeds' folds never reuse them."""
    return 1000 * seed + index


def run_seed(variant: Variant, beats: list[RecordBeats], config: LoroConfig, seed: int) -> dict:
    """All folds of one variant trained with ``seed``, and their pooled counts and rates."""
    folds = []
    for index, test in enumerate(beats):
        prefix = f"[{variant.name} | seed {seed} | test {test.record} ({index + 1}/{len(beats)})]"
        train = [item for item in beats if item.record != test.record]
        result = run_fold(variant.model, variant.train_on_false_detections, test, train, config.fold,
                          fold_seed(seed, index), prefix)
        scored = score_fold(test, result.test_probabilities, result.threshold)
        folds.append({"record": test.record, "threshold": result.threshold, "inner_groups": result.inner_groups,
                      "epochs_run": result.epochs_run, "train_seconds": result.train_seconds,
                      "out_of_fold": result.out_of_fold, "probabilities": result.test_probabilities, **scored})
        counts = scored["counts"]
        logger.info("%s %.0f s, threshold %.3f: V TP %d, FN %d, FP %d; QRS FN %d, FP %d", prefix,
                    result.train_seconds, result.threshold, counts["v_true_positives"], counts["v_false_negatives"],
                    counts["v_false_positives"], counts["qrs_false_negatives"], counts["qrs_false_positives"])
    pooled = pooled_counts([fold["counts"] for fold in folds])
    pooled_at_half = pooled_counts([fold["counts_at_0_5"] for fold in folds])
    logger.info("[%s | seed %d] pooled: %s", variant.name, seed,
                {key: None if value is None else round(value, 4) for key, value in rates(pooled).items()})
    return {"seed": seed, "folds": folds, "pooled": {"counts": pooled, "rates": rates(pooled)},
            "pooled_at_0_5": {"counts": pooled_at_half, "rates": rates(pooled_at_half)}}


BY_SEED = ("v_sensitivity", "v_positive_predictivity")  # the rates each record lists per seed


def over_seeds(runs: list[dict]) -> tuple[list[dict], dict, dict]:
    """Per record and pooled: counts summed over the seeds' runs, their rates, and each seed's V Se, V +P (and
    threshold); then the pooled counts at 0.5 summed the same way."""
    def combined(parts: list[dict], record: str) -> dict:
        counts = pooled_counts([part["counts"] for part in parts]) | {"record": record}
        return {"record": record, "counts": counts, "rates": rates(counts),
                "by_seed": {name: [part["rates"][name] for part in parts] for name in BY_SEED}
                | ({"threshold": [part["threshold"] for part in parts]} if "threshold" in parts[0] else {})}

    records = [fold["record"] for fold in runs[0]["folds"]]
    folds = [combined([run["folds"][index] for run in runs], record) for index, record in enumerate(records)]
    at_half = pooled_counts([run["pooled_at_0_5"]["counts"] for run in runs])
    return folds, combined([run["pooled"] for run in runs], "pooled"), {"counts": at_half, "rates": rates(at_half)}


def run_variant(variant: Variant, beats: list[RecordBeats], config: LoroConfig) -> dict:
    """Every seed's folds of one variant; per record and pooled, the counts summed over the seeds."""
    if variant.model.use_template:
        beats = [with_template(item, variant.template) for item in beats]
    runs = [run_seed(variant, beats, config, seed) for seed in config.seeds]
    folds, pooled, pooled_at_half = over_seeds(runs)
    return {
        "description": variant.description,
        "model": asdict(variant.model),
        "template": asdict(variant.template),
        "train_on_false_detections": variant.train_on_false_detections,
        "seeds": list(config.seeds),
        "runs": runs,
        "folds": folds,  # counts summed over the seeds
        "pooled": pooled,
        "pooled_at_0_5": pooled_at_half,
        "train_seconds_per_fold": round(float(np.mean([fold["train_seconds"] for run in runs
                                                       for fold in run["folds"]])), 1),
    }


def _rule_text(config: FoldConfig) -> str:
    if config.threshold_rule is ThresholdRule.TARGET_SENSITIVITY:
        return f"the largest threshold with V Se ≥ {config.target_sensitivity}"
    return "the threshold with the highest V F1"


def run_loro(variant_names: list[str], config: LoroConfig = LoroConfig(), records: list[str] | None = None) -> dict:
    """The whole measurement as a JSON-ready report."""
    if not config.seeds or any(seed < 0 for seed in config.seeds):
        raise UsageError(f"training seeds {list(config.seeds)}", expected="one or more whole numbers ≥ 0",
                         fix="pass --seeds 0 1 2 (LoroConfig(seeds=(0, 1, 2)))")
    beats = [record_beats(record, config.beats) for record in load_records(records)]
    report = {
        "measurement": "leave-one-record-out PVC (V vs non-V) detection on beats detected by the runtime",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_fingerprint(),
        "data": provenance(),
        "config": asdict(config),
        "threshold_rule": (f"{_rule_text(config.fold)} on the pooled out-of-fold predictions of a "
                           f"{config.fold.inner_folds}-group inner cross-validation over the 9 training records; "
                           "test probability = mean of the inner models"),
        "scoring": "EC57 end to end, ±150 ms one-to-one: missed V beats are V FN, false detections called V are "
                   "V FP; pooled = counts summed over the held-out records; a record's and the pooled row over "
                   f"the seeds {', '.join(map(str, config.seeds))} = counts summed over the seeds",
        "detection": [item.detection() for item in beats],
        "variants": {},
    }
    for name in variant_names:
        report["variants"][name] = run_variant(VARIANTS[name], beats, config)
    return report


def _replace(path: Path, write) -> None:
    """``write(temporary)`` beside ``path``, then one rename: an earlier report stays whole until the new one is."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def by_seed_table(folds: list[dict], pooled: dict, seeds: list[int]) -> str:
    """Per record and pooled: V Se and V +P (%) of every seed, and the thresholds the folds chose."""
    header = " / ".join(f"seed {seed}" for seed in seeds)
    lines = [f"| record | V Se (%): {header} | V +P (%): {header} | thresholds |", "|---|---|---|---|"]
    for row in [*folds, pooled]:
        values = row["by_seed"]
        name = f"**{row['record']}**" if row["record"] == "pooled" else row["record"]
        cells = [" / ".join(percent(value) for value in values[key]) for key in BY_SEED]
        thresholds = " / ".join(f"{value:.3f}" for value in values.get("threshold", []))
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {thresholds} |")
    return "\n".join(lines)


def render_markdown(report: dict) -> str:
    machine_facts = report.get("machine", {})
    sections = ["# PVC detection, leave-one-record-out on the MIT-BIH subset (real ECG)", "",
                f"Measured {report.get('measured_at', '(time not recorded)')} on "
                f"{machine_facts.get('cpu_model', 'an unrecorded CPU')} ({machine_facts.get('usable_cores', '?')} "
                "usable cores). Training differs between machines and seeds; the table over the seeds is the "
                "estimate, each seed's is one draw.", "",
                f"Threshold rule: {report['threshold_rule']}.", "", f"Scoring: {report['scoring']}.", ""]
    for name, result in report["variants"].items():
        seeds = result.get("seeds", [])
        at_half = result["pooled_at_0_5"]["rates"]
        sections += [
            f"## {name}", "", f"{result['description']}; {result['train_seconds_per_fold']} s training per fold.", "",
            f"### Over the seeds {', '.join(map(str, seeds))} (counts summed over the seeds)", "",
            markdown_table(result["folds"], result["pooled"], runs=len(seeds) or 1), "",
            "Pooled at the fixed threshold 0.5: " + ", ".join(
                f"{key} {100 * value:.1f} %" for key, value in at_half.items() if value is not None) + ".", "",
        ]
        if len(seeds) > 1:
            sections += ["### Each seed", "", by_seed_table(result["folds"], result["pooled"], seeds), ""]
        for run in result.get("runs", []):
            sections += [f"### Seed {run['seed']}", "", markdown_table(run["folds"], run["pooled"]), ""]
    return "\n".join(sections)


def write_report(report: dict, folder: Path) -> tuple[Path, Path, Path]:
    """The report as JSON and markdown, and every held-out beat's V probability as ``.npz``
    (``<variant>|<record>|seed <seed>`` → float32, one per detection in time order) for error analysis; each file
    is written beside its place and renamed into it."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = folder / "ecg_pvc_loro.json", folder / "ecg_pvc_loro.md"
    probabilities_path = folder / "ecg_pvc_loro_probabilities.npz"
    probabilities = {}
    for name, result in report["variants"].items():
        for run in result.get("runs", []):
            for fold in run["folds"]:
                values = fold.pop("probabilities", None)
                if values is not None:
                    probabilities[f"{name}|{fold['record']}|seed {run['seed']}"] = np.asarray(values, np.float32)
    _replace(probabilities_path, lambda path: path.write_bytes(_npz_bytes(probabilities)))
    _replace(json_path, lambda path: path.write_text(json.dumps(report, indent=1)))
    _replace(markdown_path, lambda path: path.write_text(render_markdown(report)))
    return json_path, markdown_path, probabilities_path


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.benchmark.ecg_pvc_loro",
                                     description="Leave-one-record-out PVC detection on the MIT-BIH subset.")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--records", nargs="+", default=None, help="a subset of the 10 records (default: all)")
    parser.add_argument("--epochs", type=int, default=FoldConfig.epochs, help="upper bound per inner model")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(LoroConfig.seeds),
                        help="training seeds, one whole measurement each (default: 0 1 2; ~7 min a seed on 2 cores)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    options = parser.parse_args(arguments)
    if any(seed < 0 for seed in options.seeds):
        parser.error(f"--seeds {' '.join(map(str, options.seeds))}: seeds are whole numbers ≥ 0, e.g. --seeds 0 1 2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter, not progress
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    config = LoroConfig(seeds=tuple(options.seeds), fold=FoldConfig(epochs=options.epochs))
    report = run_loro(options.variants, config, options.records)
    for path in write_report(report, options.output):
        logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
