"""Benchmark every variant of every scenario on every execution provider, with peers.

``plan_units`` lists one measurement per (model, provider, thread count), plus one
head-to-head per thread count (every CPU candidate of the scenario in one process, in
rotating rounds: ``head_to_head``); ``run_benchmark`` runs each in a fresh worker process
(``memory.run_in_subprocess``) and assembles the results document described in ``schema.md``.
Nothing is written here: ``results_io`` writes the files once every measurement has succeeded.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.benchmark.errors import BenchmarkError, ProviderNotInstalledError
from pipeline.benchmark.head_to_head import (
    HEAD_TO_HEAD_ENGINE,
    QUICK_HEAD_TO_HEAD,
    HeadToHeadConfig,
    head_to_head_entry,
    plan_head_to_head,
)
from pipeline.benchmark.memory import run_in_subprocess
from pipeline.benchmark.onnx_runner import SessionTuning, check_batch_size
from pipeline.benchmark.peers import KerasMode, convert_to_litert, litert_interpreter_class
from pipeline.benchmark.scenario_inputs import ScenarioInputs
from pipeline.benchmark.statistics import StabilityConfig
from pipeline.benchmark.targets import evaluate_targets, would_ship
from pipeline.build.machine import machine_fingerprint, usable_cores
from runtime.session import (
    CPU_PROVIDER,
    GPU_PROVIDERS,
    PROVIDER_NAMES,
    full_provider_name,
    short_provider_name,
)

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BenchmarkConfig:
    """What to measure and how long."""

    stability: StabilityConfig = field(default_factory=StabilityConfig)  # windows, warm-up, stability threshold
    batch_sizes: tuple[int, ...] = (1, 32, 256)  # throughput batch sizes
    threads: tuple[int, ...] = ()  # intra-op thread counts; () = 1 and every usable core
    providers: tuple[str, ...] = ()  # short or full EP names; () = every known EP, missing ones reported
    peers: bool = True  # Keras and LiteRT rows from the same Keras model
    session: SessionTuning = field(default_factory=SessionTuning)  # ONNX Runtime session settings
    quick: bool = False  # recorded in the results (tests and smoke runs)
    head_to_head: HeadToHeadConfig | None = None  # None: QUICK_HEAD_TO_HEAD when quick, else HeadToHeadConfig()

    def resolved_head_to_head(self) -> HeadToHeadConfig:
        if self.head_to_head is not None:
            return self.head_to_head
        return QUICK_HEAD_TO_HEAD if self.quick else HeadToHeadConfig()


def resolve_threads(requested: tuple[int, ...]) -> tuple[int, ...]:
    counts = requested or (1, usable_cores())
    return tuple(sorted(set(counts)))


def resolve_providers(requested: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """(installed EPs to run, {EP: why not} for the ones to report as not available)."""
    import onnxruntime

    installed = list(onnxruntime.get_available_providers())
    names = [full_provider_name(name) for name in requested] or list(PROVIDER_NAMES.values())
    missing = [name for name in names if name not in installed]
    if requested and missing:
        raise ProviderNotInstalledError(
            f"execution provider(s) {', '.join(missing)} are not installed in this onnxruntime",
            expected=f"one of the installed providers: {', '.join(installed)}",
            fix="drop them from --providers, or install onnxruntime-gpu (never together with onnxruntime) "
            "on a machine with a CUDA device",
        )
    unavailable = {name: f"not available: onnxruntime {onnxruntime.__version__} has no {name} "
                   f"(installed: {', '.join(installed)})" for name in missing}
    return [name for name in names if name in installed], unavailable


def plan_units(scenario: ScenarioInputs, config: BenchmarkConfig, providers: list[str], work: Path) -> list[dict]:
    """One worker spec per measurement of this scenario."""
    threads = resolve_threads(config.threads)
    inputs_file = work / f"{scenario.name}-timing.npy"
    np.save(inputs_file, scenario.timing_inputs)
    common = {"inputs": str(inputs_file), "batch_sizes": list(config.batch_sizes),
              "stability": asdict(config.stability), "scenario": scenario.name}
    units = []
    litert = {}
    for variant, path in scenario.variants.items():
        for batch_size in config.batch_sizes:
            check_batch_size(path, batch_size)
        for provider in providers:
            for count in threads if provider not in GPU_PROVIDERS else threads[:1]:
                units.append({**common, "engine": "onnxruntime", "variant": variant, "model": str(path),
                              "provider": provider, "threads": count, "session": config.session.to_dict()})
    if config.peers and scenario.keras_model is not None:
        evaluate_file = work / f"{scenario.name}-test.npy"
        np.save(evaluate_file, scenario.test_inputs)
        litert = convert_to_litert(scenario.keras_model, scenario.calibration_inputs, scenario.peer_folder)
        for index, count in enumerate(threads):
            evaluate = {"evaluate_inputs": str(evaluate_file)} if index == 0 else {}
            for mode in KerasMode:
                units.append({**common, **(evaluate if mode is KerasMode.CALL else {}), "engine": "keras",
                              "variant": mode.value, "mode": mode.value, "model": str(scenario.keras_model),
                              "provider": None, "threads": count})
            for variant, path in litert.items():
                units.append({**common, **evaluate, "engine": "litert", "variant": variant.value,
                              "model": str(path), "provider": None, "threads": count})
    onnx_on_cpu = scenario.variants if CPU_PROVIDER in providers else {}
    units += plan_head_to_head(onnx_on_cpu, {str(variant): path for variant, path in litert.items()}, threads, common,
                               config.session.to_dict(), config.resolved_head_to_head())
    for unit in units:
        provider = short_provider_name(unit["provider"] or "")
        unit["label"] = f"{scenario.name} {unit['engine']} {unit['variant']} {provider} x{unit['threads']}"
        if unit.get("evaluate_inputs"):
            unit["predictions_output"] = str(work / f"{scenario.name}-{unit['engine']}-{unit['variant']}.npy")
    return units


def _macro_f1(predictions_file: str, labels: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    probabilities = np.load(predictions_file)
    predicted = (probabilities[:, 0] >= 0.5).astype(int) if probabilities.shape[-1] == 1 else probabilities.argmax(-1)
    return float(f1_score(labels, predicted, average="macro"))


def _check_result(unit: dict, result: dict) -> dict:
    if "error" in result:
        raise BenchmarkError(
            f"measuring {unit['label']} failed: {result['error']['type']}: {result['error']['message']}",
            expected="every model to load and run at every requested batch size",
            fix="see the message above",
        )
    return result


def _row(unit: dict, result: dict, scenario: ScenarioInputs) -> dict:
    row = {"engine": unit["engine"], "variant": unit["variant"], "provider": unit["provider"],
           "threads": unit["threads"], "status": "ok", "reason": None, "model_file": unit["model"],
           "model_size_bytes": Path(unit["model"]).stat().st_size, **result}
    row["macro_f1"] = scenario.macro_f1.get(unit["variant"]) if unit["engine"] == "onnxruntime" else None
    row["gate_passed"] = scenario.gate_passed.get(unit["variant"]) if unit["engine"] == "onnxruntime" else None
    return row


def _not_available_rows(unavailable: dict[str, str]) -> list[dict]:
    return [{"engine": "onnxruntime", "variant": "*", "provider": provider, "threads": None,
             "status": "not available", "reason": reason} for provider, reason in unavailable.items()]


def _fill_peer_accuracy(rows: list[dict], units: list[dict], scenario: ScenarioInputs) -> None:
    computed = {(unit["engine"], unit["variant"]): _macro_f1(unit["predictions_output"], scenario.test_labels)
                for unit in units if unit.get("predictions_output") and Path(unit["predictions_output"]).is_file()}
    keras_f1 = computed.get(("keras", KerasMode.CALL.value))
    for row in rows:
        if row["engine"] == "litert":
            row["macro_f1"] = computed.get(("litert", row["variant"]))
        elif row["engine"] == "keras":
            row["macro_f1"] = keras_f1


def run_benchmark(scenarios: list[ScenarioInputs], config: BenchmarkConfig, progress: Progress | None = None) -> dict:
    """Measure everything; return the results document (see ``schema.md``)."""
    providers, unavailable = resolve_providers(config.providers)
    started = datetime.now(UTC)
    documents = []
    with tempfile.TemporaryDirectory(prefix="edgemed-bench-inputs-") as folder:
        plans = [(scenario, plan_units(scenario, config, providers, Path(folder))) for scenario in scenarios]
        total = sum(len(units) for _, units in plans)
        done = 0
        for scenario, units in plans:
            rows, head_to_head = [], []
            for unit in units:
                if progress:
                    progress("bench", done, total)
                logger.info("measuring %s", unit["label"])
                result = _check_result(unit, run_in_subprocess(unit))
                if unit["engine"] == HEAD_TO_HEAD_ENGINE:
                    head_to_head.append(head_to_head_entry(result))
                else:
                    rows.append(_row(unit, result, scenario))
                done += 1
            _fill_peer_accuracy(rows, units, scenario)
            rows.extend(_not_available_rows(unavailable))
            documents.append({"name": scenario.name, "lineage": scenario.lineage, "rows": rows,
                              "head_to_head": head_to_head, "gate_passed": scenario.gate_passed,
                              "would_ship": would_ship(rows, scenario.gate_passed, head_to_head)})
        if progress:
            progress("bench", total, total)
    for document in documents:
        document["targets"] = evaluate_targets(document)
    return {
        "schema_version": SCHEMA_VERSION,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "settings": {
            "quick": config.quick,
            "stability": asdict(config.stability),
            "batch_sizes": list(config.batch_sizes),
            "threads": list(resolve_threads(config.threads)),
            "providers": providers,
            "session": config.session.to_dict(),
            "peers": config.peers,
            "head_to_head": asdict(config.resolved_head_to_head()),
            "litert_runtime": litert_interpreter_class()[1] if config.peers else None,
        },
        "machine": machine_fingerprint(),
        "scenarios": documents,
    }
