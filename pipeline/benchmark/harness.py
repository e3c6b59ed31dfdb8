"""Benchmark every variant of every scenario on every execution provider, with peers.

``plan_units`` lists one measurement per (model, provider, thread count), plus one
head-to-head per thread count (every CPU candidate of the scenario in one process, in
rotating rounds: ``head_to_head``); ``run_benchmark`` runs each in a fresh worker process
(``memory.run_in_subprocess``) and assembles the results document described in ``schema.md``.
Before any timing, every peer is judged by the build's own gate (``peer_judging``); the
head-to-head peer is the fastest LiteRT variant that passed it (``peer_choice``).
Nothing is written here: ``results_io`` writes the files once every measurement has succeeded.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.benchmark.errors import BenchmarkError, ProviderNotInstalledError
from pipeline.benchmark.head_to_head import (
    HEAD_TO_HEAD_ENGINE,
    QUICK_HEAD_TO_HEAD,
    HeadToHeadConfig,
    candidate_name,
    head_to_head_entry,
    plan_head_to_head,
)
from pipeline.benchmark.litert_conversion import LiteRtConversion, LiteRtVariant, convert_to_litert
from pipeline.benchmark.litert_models import litert_interpreter_class
from pipeline.benchmark.memory import run_in_subprocess
from pipeline.benchmark.onnx_runner import SessionTuning, check_batch_size
from pipeline.benchmark.peer_choice import scenario_peers
from pipeline.benchmark.peer_judging import judge_peers, judgement_key
from pipeline.benchmark.peers import KerasMode
from pipeline.benchmark.same_gate import Judgement
from pipeline.benchmark.sample_files import save_inputs
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

SCHEMA_VERSION = 3  # 3: per-row accuracy, data and gate of every model; judgements; peers
Progress = Callable[[str, int, int], None]
PEER_ENGINES = ("keras", "litert")  # a peer that fails to run becomes a "not available" row, not a failed bench


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


def litert_peers(scenario: ScenarioInputs, config: BenchmarkConfig) -> LiteRtConversion | None:
    """The scenario's LiteRT models (made or reused), None without peers or without a Keras model."""
    if not config.peers or scenario.keras_model is None:
        return None
    return convert_to_litert(scenario.keras_model, scenario.calibration_inputs, scenario.peer_folder)


def plan_units(scenario: ScenarioInputs, config: BenchmarkConfig, providers: list[str], work: Path,
               litert: LiteRtConversion | None = None) -> list[dict]:
    """One worker spec per measurement of this scenario (``litert``: its LiteRT models; made here when None)."""
    threads = resolve_threads(config.threads)
    inputs_file = save_inputs(work / f"{scenario.name}-timing", scenario.timing_inputs)
    common = {"inputs": str(inputs_file), "batch_sizes": list(config.batch_sizes),
              "stability": asdict(config.stability), "scenario": scenario.name}
    units = []
    for variant, path in scenario.variants.items():
        for batch_size in config.batch_sizes:
            check_batch_size(path, batch_size)
        for provider in providers:
            for count in threads if provider not in GPU_PROVIDERS else threads[:1]:
                units.append({**common, "engine": "onnxruntime", "variant": variant, "model": str(path),
                              "provider": provider, "threads": count, "session": config.session.to_dict()})
    litert = litert or litert_peers(scenario, config)
    models = {str(variant): path for variant, path in litert.models.items()} if litert is not None else {}
    if litert is not None:
        for count in threads:
            for mode in KerasMode:
                units.append({**common, "engine": "keras", "variant": mode.value, "mode": mode.value,
                              "model": str(scenario.keras_model), "provider": None, "threads": count})
            for variant, path in models.items():
                units.append({**common, "engine": "litert", "variant": variant, "model": str(path),
                              "provider": None, "threads": count})
    onnx_on_cpu = scenario.variants if CPU_PROVIDER in providers else {}
    units += plan_head_to_head(onnx_on_cpu, models, threads, common, config.session.to_dict(),
                               config.resolved_head_to_head())
    for unit in units:
        provider = short_provider_name(unit["provider"] or "")
        unit["label"] = f"{scenario.name} {unit['engine']} {unit['variant']} {provider} x{unit['threads']}"
    return units


def _check_result(unit: dict, result: dict) -> dict:
    if "error" in result:
        raise BenchmarkError(
            f"measuring {unit['label']} failed: {result['error']['type']}: {result['error']['message']}",
            expected="every model to load and run at every requested batch size",
            fix="see the message above",
        )
    return result


def accuracy_fields(judged: Judgement | None) -> dict:
    """What a row says of its model's accuracy and gate verdict, and the data they were measured on."""
    if judged is None:
        return {"macro_f1": None, "accuracy_metric": None, "accuracy": None, "accuracy_measured_on": None,
                "gate_passed": None, "gate_reason": None}
    return {"macro_f1": judged.value if judged.metric == "macro-F1" else None, "accuracy_metric": judged.metric,
            "accuracy": judged.value, "accuracy_measured_on": judged.measured_on or None,
            "gate_passed": judged.passed, "gate_reason": judged.reason}


def _row(unit: dict, result: dict, judgements: dict[str, Judgement]) -> dict:
    row = {"engine": unit["engine"], "variant": unit["variant"], "provider": unit["provider"],
           "threads": unit["threads"], "status": "ok", "reason": None, "model_file": unit["model"],
           "model_size_bytes": Path(unit["model"]).stat().st_size, **result}
    return {**row, **accuracy_fields(judgements.get(judgement_key(unit["engine"], unit["variant"])))}


def _measure(unit: dict) -> dict:
    """The worker's result; for a peer, a worker that died (an interpreter crash) comes back as an error too."""
    try:
        return run_in_subprocess(unit)
    except BenchmarkError as error:
        if unit["engine"] not in PEER_ENGINES:
            raise
        return {"error": {"type": type(error).__name__, "message": error.what}}


def _failed_peer_row(unit: dict, result: dict, judgements: dict[str, Judgement]) -> dict:
    error = result["error"]
    logger.warning("%s could not be measured: %s", unit["label"], error["message"])
    return {"engine": unit["engine"], "variant": unit["variant"], "provider": None, "threads": unit["threads"],
            "status": "not available", "reason": f"measuring failed: {error['type']}: {error['message']}",
            **accuracy_fields(judgements.get(judgement_key(unit["engine"], unit["variant"])))}


def _not_available_rows(unavailable: dict[str, str]) -> list[dict]:
    return [{"engine": "onnxruntime", "variant": "*", "provider": provider, "threads": None,
             "status": "not available", "reason": reason, **accuracy_fields(None)}
            for provider, reason in unavailable.items()]


def unconverted_rows(litert: LiteRtConversion | None) -> list[dict]:
    """A "not available" row for every LiteRT variant the converter could not make, with its reason."""
    failures = litert.failures if litert is not None else {}
    return [{"engine": "litert", "variant": str(variant), "provider": None, "threads": None,
             "status": "not available", "reason": f"not available: {failures[variant]}", **accuracy_fields(None)}
            for variant in LiteRtVariant if variant in failures]


def judge_scenario(scenario: ScenarioInputs, litert: LiteRtConversion | None) -> dict[str, Judgement]:
    """Every model's judgement by the build's gate: the ONNX variants' from the build, the peers' measured here."""
    judged = {candidate_name("onnxruntime", variant): value for variant, value in scenario.judgements.items()}
    if litert is not None:
        judged |= judge_peers(scenario, litert)
    return judged


def run_benchmark(scenarios: list[ScenarioInputs], config: BenchmarkConfig, progress: Progress | None = None) -> dict:
    """Measure everything; return the results document (see ``schema.md``)."""
    providers, unavailable = resolve_providers(config.providers)
    started = datetime.now(UTC)
    documents = []
    with tempfile.TemporaryDirectory(prefix="edgemed-bench-inputs-") as folder:
        plans = []
        for scenario in scenarios:
            litert = litert_peers(scenario, config)
            plans.append((scenario, litert, plan_units(scenario, config, providers, Path(folder), litert),
                          judge_scenario(scenario, litert)))
        total = sum(len(units) for _, _, units, _ in plans)
        done = 0
        for scenario, litert, units, judgements in plans:
            rows, head_to_head = [], []
            for unit in units:
                if progress:
                    progress("bench", done, total)
                logger.info("measuring %s", unit["label"])
                result = _measure(unit)
                if "error" in result and unit["engine"] in PEER_ENGINES:  # a peer that cannot run: said, not fatal
                    rows.append(_failed_peer_row(unit, result, judgements))
                    done += 1
                    continue
                result = _check_result(unit, result)
                if unit["engine"] == HEAD_TO_HEAD_ENGINE:
                    if len(result["models"]) >= 2:  # else every peer was left out: nothing was compared
                        head_to_head.append(head_to_head_entry(result))
                else:
                    rows.append(_row(unit, result, judgements))
                done += 1
            rows += unconverted_rows(litert) + _not_available_rows(unavailable)
            judged = {name: value.to_dict() for name, value in judgements.items()}
            documents.append({"name": scenario.name, "lineage": scenario.lineage,
                              "inputs": scenario.inputs, "inputs_synthetic": scenario.inputs_synthetic, "rows": rows,
                              "head_to_head": head_to_head, "gate_passed": scenario.gate_passed,
                              "would_ship": would_ship(rows, scenario.gate_passed, head_to_head),
                              "judgements": judged,
                              "peers": [choice.to_dict() for choice in scenario_peers(rows, head_to_head, judged)]})
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
            "litert_variants": [variant.value for variant in LiteRtVariant] if config.peers else [],
        },
        "machine": machine_fingerprint(),
        "scenarios": documents,
    }
