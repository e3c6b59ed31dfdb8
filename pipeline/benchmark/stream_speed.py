"""Real-time factor of the device stream path: a long 360 Hz ECG through the whole runtime on one core.

The recording is real by default (``--signal mitdb``): the ten vendored MIT-BIH Arrhythmia records (360 Hz, the
model's own rate; 5 h 1 min with their PVCs, noise and artefacts) one after another, the sequence repeated to the
length asked for; ``--signal synthetic`` tiles a neurokit2 ECGSYN strip instead (clean beats at 72 bpm, no PVC: a
device's easy case, kept to compare with earlier figures). Each timed run feeds
``EcgStream`` 10-s chunks with a one-thread session, pinned to one CPU, with the device's telemetry exactly as
``edgemed run --telemetry-outbox`` does it (``runtime.runner.TelemetrySink``, a real SQLite outbox):

* ``aggregates`` (the default): every event into per-minute aggregates, the filtered events as records, one durable
  commit per closed minute;
* ``records``: one schema-2 record per classified beat, a commit per 64;
* ``none``: no telemetry (and no summary features, as the runner then computes none).

The run with telemetry and one without are both timed, ``repeats`` times each (interleaved, 3 by default), and each
mode's figures are the medians, every run's factor listed beside them; the headline factor is seconds of signal per
CPU second of the process (the one-core cost; the wall factor beside it includes the fsyncs' waits and the machine's
other load).
Each run's events are hashed as they come, without latency and summary features (``events_digest``): the report
says whether telemetry left them identical. A timed run keeps no events (a device keeps none), and the hashing is
not counted in its time. A profiled run on a shorter stretch says where the time goes, per stage (numpy's own
time counted in the stage that called it) as a share and as µs per beat of the timed run.
"""

from __future__ import annotations

import cProfile
import dataclasses
import hashlib
import itertools
import logging
import os
import pstats
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.benchmark.window_stream_speed import machine, one_core
from runtime.bundle import load_bundle
from runtime.ecg import RECORDING_CONFIG, EcgStream
from runtime.events import BeatEvent
from runtime.runner import TelemetryMode, TelemetrySink
from runtime.trust import TrustPolicy

logger = logging.getLogger(__name__)

TARGET_REAL_TIME_FACTOR = 20_000  # issue 14: 24 h of ECG with telemetry on one core
NO_TELEMETRY = "none"
MODES = (*(mode.value for mode in TelemetryMode), NO_TELEMETRY)
SIGNALS = ("mitdb", "synthetic")
SIGNAL_NOTES = {
    "mitdb": "real: the 10 vendored MIT-BIH Arrhythmia records (MLII; V5 for 114), 360 Hz, one after another, repeated",
    "synthetic": "synthetic: neurokit2 ECGSYN 5-minute strip (72 bpm ± 4) tiled",
}

# Module prefixes → the stage of the stream they belong to (first match wins).
_STAGES = (
    ("inference", ("runtime/bundle.py", "onnxruntime")),
    ("detection", ("runtime/ecg/rpeaks.py", "runtime/ecg/decisions.py")),
    ("resampling", ("runtime/ecg/resample.py", "runtime/resample.py")),
    ("signal quality", ("runtime/ecg/quality.py",)),
    ("template residuals", ("runtime/ecg/template_members.py", "runtime/ecg/template.py")),
    ("derived inputs (RR, warm-up)", ("runtime/ecg/beat_inputs.py", "runtime/ecg/rr_features.py",
                                      "runtime/ecg/rr_columns.py")),
    ("windowing and events", ("runtime/ecg/stream.py", "runtime/ecg/beats.py", "runtime/events.py",
                              "runtime/decide.py")),
    ("features", ("runtime/features.py", "runtime/input_features.py")),
    ("telemetry", ("runtime/telemetry", "runtime/runner.py", "sqlite3", "json")),
)
_CALLER_DEPTH = 6  # numpy's own functions take the stage of the stream code that called them, this many calls up


@dataclass(frozen=True)
class StreamSpeedConfig:
    hours: float = 24.0  # length of the timed recording
    profiled_hours: float = 1.0  # length of the profiled recording (profiling slows everything)
    sample_rate_hz: float = 360.0  # the model's own rate: no resampling in the timed path
    chunk_s: float = 10.0  # what a device hands the stream at a time
    threads: int = 1  # onnxruntime intra-op threads: one core
    telemetry: str = TelemetryMode.AGGREGATES.value  # aggregates, records or none (see the module docstring)
    compare_without: bool = True  # also time the same recording without telemetry
    seed: int = 0
    signal: str = "mitdb"  # mitdb (real, the vendored records) or synthetic (ECGSYN): SIGNAL_NOTES
    repeats: int = 3  # timed runs per mode, interleaved; each mode's figures are the medians (a shared VM varies)


def recording(config: StreamSpeedConfig) -> np.ndarray:
    """``config.hours`` of ECG at ``config.sample_rate_hz`` from ``config.signal`` (``SIGNAL_NOTES``)."""
    if config.signal == "synthetic":
        return synthetic_recording(config.hours, config.sample_rate_hz, config.seed)
    if config.signal != "mitdb":
        raise ValueError(f"signal {config.signal!r}: expected one of {', '.join(SIGNALS)}")
    return mitdb_recording(config.hours, config.sample_rate_hz)


def mitdb_recording(hours: float, sample_rate_hz: float, records: Sequence[str] | None = None) -> np.ndarray:
    """``hours`` of real ECG (mV): the vendored MIT-BIH ``records`` (all, in file order, by default) one after another,
    the sequence repeated (real)."""
    from pipeline.scenarios.ecg_pvc.mitdb import SAMPLE_RATE_HZ, load_records

    if sample_rate_hz != SAMPLE_RATE_HZ:
        raise ValueError(f"sample rate {sample_rate_hz:g} Hz: the MIT-BIH records are {SAMPLE_RATE_HZ:g} Hz "
                         "(ask for that rate, or for the synthetic signal)")
    joined = np.concatenate([record.signal_mv for record in load_records(records)]).astype(np.float32, copy=False)
    return np.resize(joined, int(hours * 3600 * sample_rate_hz))


def synthetic_recording(hours: float, sample_rate_hz: float, seed: int) -> np.ndarray:
    """``hours`` of ECG: a 5-minute ECGSYN strip with heart-rate variation, tiled (synthetic)."""
    import neurokit2

    strip = neurokit2.ecg_simulate(
        duration=300, sampling_rate=int(sample_rate_hz), heart_rate=72, heart_rate_std=4, random_state=seed
    )
    total = int(hours * 3600 * sample_rate_hz)
    return np.resize(np.asarray(strip, dtype=np.float32), total)


def stream_batches(bundle, signal: np.ndarray, config: StreamSpeedConfig, mode: str, sink: TelemetrySink | None
                   ) -> Iterator[list]:
    """Each 10-s chunk's events as the stream releases them, telemetry handled as the runner does (``mode``): a
    chunk's events are handed to the sink before the next chunk is fed, then what the flush releases. The caller
    decides what to keep: a device keeps no day of events in memory, and neither do the timed runs (a list of a
    day's events made the garbage collector's full passes a tenth of the time measured)."""
    stream = EcgStream(bundle, config.sample_rate_hz,
                       config=dataclasses.replace(RECORDING_CONFIG, summary_features=mode != NO_TELEMETRY))
    chunk = int(config.chunk_s * config.sample_rate_hz)
    batches = (stream.feed(signal[start : start + chunk]) for start in range(0, len(signal), chunk))
    for events in itertools.chain(batches, (stream.flush() for _ in range(1))):
        if sink is not None:
            sink.add_many(events)  # as the runner: aggregates take every event, records the classified beats
        yield events
    if sink is not None:
        sink.finish()


def stream_events(bundle, signal: np.ndarray, config: StreamSpeedConfig, mode: str, sink: TelemetrySink | None
                  ) -> list:
    """Every event of ``stream_batches`` in one list (short stretches: tests, the collector load's sample)."""
    return list(itertools.chain.from_iterable(stream_batches(bundle, signal, config, mode, sink)))


def _sink(bundle, folder: Path, name: str, mode: str, origin_s: float) -> TelemetrySink | None:
    from runtime.telemetry.records import pseudonymous_device_id

    if mode == NO_TELEMETRY:
        return None
    sink = TelemetrySink(bundle, folder / f"{name}.sqlite3", pseudonymous_device_id("benchmark-device", "benchmark"),
                         None, mode=mode)
    sink.begin(origin_s)
    return sink


def _timed(bundle, signal: np.ndarray, config: StreamSpeedConfig, mode: str, folder: Path) -> dict:
    duration_s = len(signal) / config.sample_rate_hz
    sink = _sink(bundle, folder, f"timed-{mode}", mode, time.time() - duration_s)
    started, cpu_started = time.perf_counter(), time.process_time()
    tally, tally_wall, tally_cpu = EventTally(), 0.0, 0.0  # the tally is the benchmark's, not the device's: not timed
    for events in stream_batches(bundle, signal, config, mode, sink):
        mark, cpu_mark = time.perf_counter(), time.process_time()
        tally.add(events)
        tally_wall += time.perf_counter() - mark
        tally_cpu += time.process_time() - cpu_mark
    wall = time.perf_counter() - started - tally_wall
    cpu = time.process_time() - cpu_started - tally_cpu
    beats = tally.beats
    result = {
        "telemetry": mode, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "beats": beats, "events": tally.events,
        "real_time_factor": round(duration_s / cpu, 1),  # per CPU second: the one-core cost
        "real_time_factor_wall": round(duration_s / wall, 1),  # per wall second: fsync waits and other load too
        "microseconds_per_beat": round(cpu / max(beats, 1) * 1e6, 2),
        "events_sha256": tally.digest.hexdigest(),
    }
    if sink is not None:
        result |= {"outbox_rows": sink.count, "aggregates": sink.aggregates, "records": sink.count - sink.aggregates}
        sink.close()
    return result


def _median_run(repeats: list[dict]) -> dict:
    """One mode's timed runs as one: the median of each figure (for an odd number of runs, all the same run's: a
    factor falls as CPU seconds rise), with every run's factor beside them (``real_time_factors``: the spread)."""
    median = {key: round(statistics.median(run[key] for run in repeats), 3 if key.endswith("_s") else 2)
              for key in ("cpu_s", "wall_s", "real_time_factor", "real_time_factor_wall", "microseconds_per_beat")}
    return {**repeats[0], **median, "repeats": len(repeats),
            "real_time_factors": [run["real_time_factor"] for run in repeats],
            "events_sha256_by_repeat": [run["events_sha256"] for run in repeats]}


def _stage_of(function: tuple[str, int, str]) -> str | None:
    location = f"{function[0]}:{function[2]}"
    return next((name for name, keys in _STAGES if any(key in location for key in keys)), None)


def _breakdown(profile: cProfile.Profile) -> dict[str, float]:
    """Share of profiled time per stream stage: each function's own time goes to its module's stage, and a function
    of no stage (numpy's, the interpreter's) gives its own time to its callers' stages, as they called it."""
    statistics = pstats.Stats(profile).stats

    def shares(function, depth: int) -> dict[str, float]:
        stage = _stage_of(function)
        if stage is not None:
            return {stage: 1.0}
        callers = statistics.get(function, (0, 0, 0.0, 0.0, {}))[4]
        weights = {caller: timing[3] for caller, timing in callers.items()}  # cumulative time spent for each
        whole = sum(weights.values())
        if depth == 0 or whole <= 0:
            return {"other": 1.0}
        found: dict[str, float] = {}
        for caller, weight in weights.items():
            for name, part in shares(caller, depth - 1).items():
                found[name] = found.get(name, 0.0) + part * weight / whole
        return found

    totals: dict[str, float] = {}
    for function, (_, _, own_time, _, _) in statistics.items():
        for stage, part in shares(function, _CALLER_DEPTH).items():
            totals[stage] = totals.get(stage, 0.0) + own_time * part
    whole = sum(totals.values()) or 1.0
    return {stage: round(value / whole, 3) for stage, value in sorted(totals.items(), key=lambda item: -item[1])}


def _decision_fields(event) -> tuple:
    if isinstance(event, BeatEvent):
        return (event.time_s, event.beat_class, event.probability, event.probabilities, event.heart_rate_bpm,
                event.heart_rate_1min_bpm, event.quality_flags, event.low_confidence, event.pre_rr_ms,
                event.post_rr_ms, event.local_rr_ms)
    return (event.time_s, event.duration_s, event.flag)


class EventTally:
    """Counts and the digest (``events_digest``) of a stream's events, taken batch by batch as they come."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.events = 0
        self.beats = 0

    def add(self, events: Sequence) -> None:
        self.events += len(events)
        for event in events:
            self.beats += isinstance(event, BeatEvent)
            self.digest.update(repr(_decision_fields(event)).encode("utf-8"))


def events_digest(events: Sequence) -> str:
    """sha256 of the events' content (times, classes, probabilities, flags, heart rates, RR), without latency and
    summary features (which only telemetry asks for): equal digests are equal decisions."""
    tally = EventTally()
    tally.add(events)
    return tally.digest.hexdigest()


def _hotspots(profile: cProfile.Profile, count: int = 12) -> list[dict]:
    """The functions with the most own time in the profiled run (what to make faster next)."""
    statistics = pstats.Stats(profile)
    rows = sorted(statistics.stats.items(), key=lambda item: -item[1][2])[:count]
    whole = sum(value[2] for value in statistics.stats.values()) or 1.0
    return [{"function": f"{Path(filename).name}:{line}({function})", "calls": calls, "own_share":
             round(own / whole, 3)} for (filename, line, function), (_, calls, own, _, _) in rows]


def measure_stream_speed(bundle_path: Path, config: StreamSpeedConfig = StreamSpeedConfig()) -> dict:
    """The real-time factor of ``config.hours`` of ECG with telemetry (and without), and the profiled breakdown."""
    if config.telemetry not in MODES:
        raise ValueError(f"telemetry {config.telemetry!r}: expected one of {', '.join(MODES)}")
    signal = recording(config)  # first: a rate the records do not have is refused before the bundle is loaded
    bundle = load_bundle(bundle_path, provider="cpu", threads=config.threads, trust=TrustPolicy.development())
    profiled = signal[: int(config.profiled_hours * 3600 * config.sample_rate_hz)]
    modes = [config.telemetry] + ([NO_TELEMETRY] if config.compare_without and config.telemetry != NO_TELEMETRY
                                  else [])
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory() as folder, one_core() as cpu:
        timed: dict[str, list[dict]] = {mode: [] for mode in modes}
        for repeat in range(max(1, config.repeats)):  # interleaved: a slow spell of the machine hits every mode
            (Path(folder) / f"{repeat}").mkdir()  # a fresh outbox for every run
            for mode in modes:
                timed[mode].append(_timed(bundle, signal, config, mode, Path(folder) / f"{repeat}"))
        runs = [_median_run(timed[mode]) for mode in modes]
        profile = cProfile.Profile()
        sink = _sink(bundle, Path(folder), "profiled", config.telemetry, time.time())
        profile.enable()
        for _ in stream_batches(bundle, profiled, config, config.telemetry, sink):
            pass
        profile.disable()
        if sink is not None:
            sink.close()
    headline = runs[0]
    shares = _breakdown(profile)
    return {
        "config": asdict(config),
        "stream": {key: getattr(RECORDING_CONFIG, key) for key in ("block_s", "batch_size", "max_batch_wait_s")},
        # the id names the recipe (config and data hashes); the manifest's sha256 names the trained model: the same
        # recipe trains another model on another CPU
        "bundle": {"path": str(bundle_path), "id": bundle.bundle_id, "manifest_sha256": bundle.manifest_sha256,
                   "variant": bundle.variant, "inputs": [spec.name for spec in bundle.inputs]},
        "machine": machine(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "signal": SIGNAL_NOTES[config.signal],
        "synthetic": config.signal == "synthetic",
        "recording_s": len(signal) / config.sample_rate_hz,
        "runs": runs,
        "wall_s": headline["wall_s"],
        "cpu_s": headline["cpu_s"],
        "beats": headline["beats"],
        "real_time_factor": headline["real_time_factor"],
        "real_time_factor_wall": headline["real_time_factor_wall"],
        "real_time_factor_without_telemetry": runs[1]["real_time_factor"] if len(runs) > 1 else None,
        "microseconds_per_beat": headline["microseconds_per_beat"],
        "events_identical_across_runs": len({digest for run in runs for digest in run["events_sha256_by_repeat"]}) == 1,
        "target_real_time_factor": TARGET_REAL_TIME_FACTOR,
        "meets_target": headline["real_time_factor"] >= TARGET_REAL_TIME_FACTOR,
        "pinned_cpu": cpu,
        "load_average_before": load_before,
        "profiled_recording_s": len(profiled) / config.sample_rate_hz,
        "time_share_by_stage": shares,
        # the timed run's µs per beat split by the profiled shares (profiling inflates Python calls: a guide)
        "microseconds_per_beat_by_stage": {stage: round(share * headline["microseconds_per_beat"], 1)
                                           for stage, share in shares.items()},
        "hotspots": _hotspots(profile),
    }
