"""The self-attention autoencoder beside the convolutional one (and per-window z-score beside none), measured.

Two parts, written to ``benchmarks/results/vitals_attention_vs_autoencoder.{json,md}``:

1. **Seeds** (Keras, this module): every design trained with the build's own training path
   (``pipeline.training.fit.train_model``, the scenario's train config) on the scenario's splits, for
   several seeds; threshold at the target false-alarm rate on the ``normal`` block; window metrics with
   bootstrap intervals on the test split (resampling the data's groups: blocks of the series, the anomaly one);
   event-level detection and false alarms per hour on the test block and on the normal blocks no threshold was set
   on (validation, calibration).
2. **Bundles** (the two builds, read as files): parity, sizes, every variant's latency and gate verdict
   from the manifests; the two shipped models timed in the same interleaved rounds on SYNTHETIC inputs (one
   seeded N(70, 13) window: ``bundle_figures.TIMING_INPUTS``, recorded beside the figures); the shipped model and
   threshold run on the series as the device cuts it.

Build the bundles first: ``edgemed build vitals-anomaly vitals-anomaly-attention``; then
``python -m pipeline.scenarios.vitals_anomaly.comparison [--bundles bundles] [--seeds 0 1 2]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.clinical.anomaly_metrics import evaluate_anomaly_detection
from pipeline.clinical.operating_points import threshold_at_false_alarm_rate
from pipeline.config import Profile
from pipeline.errors import StageError
from pipeline.scenarios.vitals_anomaly.bundle_figures import (
    TIMING_INPUTS,
    device_view_events,
    interleaved_latency,
    manifest_figures,
)
from pipeline.scenarios.vitals_anomaly.comparison_report import write_report
from pipeline.scenarios.vitals_anomaly.data import NOMINAL_RATE_HZ, VitalsDataConfig, input_spec, load_series
from pipeline.scenarios.vitals_anomaly.events import summarise_events
from pipeline.scenarios.vitals_anomaly.model import Architecture, VitalsModelConfig, build_vitals_model
from pipeline.scenarios.vitals_anomaly.scenario import VitalsAnomalyScenario, make_splits
from pipeline.training.fit import seed_everything, train_model
from runtime.contract import MODEL_NAME, WindowNormalization
from runtime.windows import model_windows

logger = logging.getLogger(__name__)

RESULTS = Path("benchmarks/results/vitals_attention_vs_autoencoder")
EVENT_BLOCKS = ("test", "validation", "calibration")  # the normal block sets the threshold: not judged on


@dataclass(frozen=True)
class Design:
    name: str
    architecture: Architecture
    normalization: WindowNormalization


DESIGNS = (
    Design("autoencoder", Architecture.AUTOENCODER, WindowNormalization.NONE),  # the shipped design
    Design("attention", Architecture.ATTENTION, WindowNormalization.NONE),  # the self-attention variant
    Design("autoencoder-zscore", Architecture.AUTOENCODER, WindowNormalization.ZSCORE),  # per-window z-score
)


def _scores(model, inputs: np.ndarray) -> np.ndarray:
    """The in-graph head's score in numpy: mean squared reconstruction error per window (float64)."""
    reconstruction = np.asarray(model.predict(inputs, batch_size=256, verbose=0), dtype=np.float64)
    return ((inputs.astype(np.float64) - reconstruction) ** 2).reshape(len(inputs), -1).mean(axis=1)


def _block_events(model, config: VitalsDataConfig, threshold: float) -> dict[str, dict]:
    """Every window the device would score in each event block, alarmed at ``threshold``."""
    series, spec = load_series(), input_spec(config)
    events = {}
    for name in EVENT_BLOCKS:
        start, end = getattr(config.blocks, name)
        cut = model_windows(series.values[start:end], spec)
        scores = _scores(model, cut.inputs[cut.judged])
        events[name] = summarise_events(cut.starts[cut.judged] + start, scores >= threshold, spec.window_samples,
                                        NOMINAL_RATE_HZ, series.anomaly_range,
                                        config.labels.boundary_margin_samples).to_dict()
    return events


def measure_design(design: Design, seed: int) -> dict:
    """Train ``design`` with the build's training path and measure it (module docstring, part 1)."""
    scenario = VitalsAnomalyScenario(design.architecture)
    data = replace(scenario.data_config(Profile.FULL), normalization=design.normalization)
    build = scenario.build_config(Profile.FULL, seed)
    splits = make_splits(data)
    seed_everything(seed)  # as the train stage: the same weights for the same seed
    model = build_vitals_model(VitalsModelConfig(architecture=design.architecture), splits.train.inputs)
    summary = train_model(model, splits, build.train, seed)
    if getattr(model, "loss", None) != "mse":
        raise StageError(f"train_model compiled the {design.name} autoencoder with loss {model.loss!r}",
                         expected="the reconstruction's mean squared error for an anomaly task",
                         fix="apply the anomaly support of pipeline/training/fit.py (see the scenario's report)")
    normal = _scores(model, splits.normal.inputs)
    threshold = threshold_at_false_alarm_rate(normal, build.evaluate.decision.false_alarm_rate)
    test = _scores(model, splits.test.inputs)
    labels = np.asarray(splits.test.labels)
    metrics = evaluate_anomaly_detection(labels, test, threshold, build.evaluate.evaluation, splits.test.groups)
    return {
        "design": design.name, "seed": seed, "parameters": int(model.count_params()),
        "epochs_run": summary["epochs_run"], "best_val_loss": summary["best_val_loss"],
        "window_metrics": metrics.to_dict(),
        "separation": {"lowest_anomalous_score_over_threshold": float(test[labels == 1].min() / threshold.threshold),
                       "highest_normal_test_score_over_threshold": float(test[labels == 0].max()
                                                                         / threshold.threshold)},
        "events": _block_events(model, data, threshold.threshold),
    }


def _machine() -> str:
    import onnxruntime

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, onnxruntime "
            f"{onnxruntime.__version__}, shared with other work")


def run_comparison(bundles: Path, seeds: tuple[int, ...], designs: tuple[Design, ...] = DESIGNS) -> dict:
    """Both parts of the comparison (module docstring) as one JSON-serialisable record."""
    config = VitalsDataConfig()
    names = {"autoencoder": "vitals-anomaly", "attention": "vitals-anomaly-attention"}
    folders = {design: Path(bundles) / name for design, name in names.items()}
    missing = [str(folder) for folder in folders.values() if not (folder / MODEL_NAME).is_file()]
    if missing:
        raise StageError(f"no built bundle at {', '.join(missing)}", expected="both bundles built",
                         fix="edgemed build vitals-anomaly vitals-anomaly-attention")
    runs = []
    for design in designs:
        for seed in seeds:
            logger.info("training %s, seed %d", design.name, seed)
            runs.append(measure_design(design, seed))
    logger.info("timing the shipped models together on %s", TIMING_INPUTS)
    latency = interleaved_latency({design: folder / MODEL_NAME for design, folder in folders.items()})
    return {
        "what": "self-attention vs convolutional autoencoder (and per-window z-score vs none) on UCR "
                "InternalBleeding16; seeds: Keras models trained by the build's training path; bundles: the two builds",
        "machine": _machine(),
        "sample_rate_hz": NOMINAL_RATE_HZ,
        "sample_rate_note": "nominal (undocumented): every duration and per-hour figure scales with it",
        "seeds": runs,
        "bundles": {design: manifest_figures(folder) for design, folder in folders.items()},
        "latency_interleaved": latency,  # each entry's "inputs": synthetic (bundle_figures.TIMING_INPUTS)
        "device_view_events": {design: device_view_events(folder, config, EVENT_BLOCKS)
                               for design, folder in folders.items()},
    }


def main(arguments: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=Path, default=Path("bundles"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", type=Path, default=RESULTS, help="path without suffix: writes .json and .md")
    options = parser.parse_args(arguments)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    record = run_comparison(options.bundles, tuple(options.seeds))
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    write_report(record, options.output.with_suffix(".md"))


if __name__ == "__main__":
    main()
