"""Real-time factor of the windowed stream (``runtime.windows.stream``) on one core, per ``signal_window`` bundle.

``python -m pipeline.benchmark.window_stream_speed BUNDLE [BUNDLE …] [--minutes N] [--input-rate HZ]``

For each bundle a clean signal is synthesised at the input rate (default: the model's own rate; ``--input-rate``
adds resampling to the timed path): sines at 1.3, 2.7, 7.1 and 11 Hz (below a quarter of the model rate) plus
a little noise, in ADC-like units, on every channel the model takes. It is for timing only — no window of it is
flagged, so every window reaches the model (the stream's slowest case) — and says nothing about accuracy.

The stream runs as ``edgemed run`` runs it on a file: ``RECORDING_WINDOW_CONFIG``, chunks of ``chunk_s``, a
one-thread CPU session and — with telemetry, as ``--telemetry-outbox`` does — the model input's summary features
and one record per judged window through the runner's ``TelemetrySink`` into a real SQLite outbox. The process
is pinned to one CPU while it is timed (``os.sched_setaffinity``), so numpy, ONNX Runtime and SQLite share one
core. The headline is the median of ``repeats`` timed runs, in seconds of signal per CPU second of the process
(the one-core cost; the wall-clock factor beside it includes whatever else the machine ran); a profiled run on a
shorter stretch gives each stage's share (cumulative time of the stage's entry function; the rest is the
stream's own bookkeeping and event objects).

Writes ``window_stream_speed.json`` and ``.md`` (``--output`` folder, default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import logging
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime

from pipeline.build.artifacts import write_json_atomic
from runtime.bundle import Bundle, load_bundle
from runtime.errors import EdgemedError
from runtime.events import WindowEvent
from runtime.features import summary_features
from runtime.resample import ChannelResampler
from runtime.results import results_for
from runtime.runner import TelemetrySink
from runtime.trust import TrustPolicy
from runtime.windows import RECORDING_WINDOW_CONFIG, WindowStream, model_windows, window_input

logger = logging.getLogger(__name__)

TARGET_REAL_TIME_FACTOR = 1_000  # issue 13: every stream at least 1 000× real time on one core
RESULTS_NAME = "window_stream_speed"
SIGNAL_NOTE = ("synthetic, for timing only: sines at 1.3, 2.7, 7.1 and 11 Hz (capped below a quarter of the model "
               "rate) + 2 % noise in ADC-like units; every window is judged (none flagged), the stream's slowest case")


@dataclass(frozen=True)
class WindowSpeedConfig:
    minutes: float = 60.0  # length of the timed signal
    profiled_minutes: float = 10.0  # length of the profiled signal (profiling slows everything)
    repeats: int = 3  # timed runs; the headline is their median
    input_rate_hz: float | None = None  # the signal's rate; None: the model's (no resampling)
    chunk_s: float = 10.0  # what the runner hands the stream at a time (RunOptions.chunk_s)
    threads: int = 1  # onnxruntime intra-op threads: one core
    telemetry: bool = True  # one outbox record per judged window, as `edgemed run --telemetry-outbox`
    seed: int = 0


def synthetic_signal(seconds: float, rate: float, channels: int, model_rate: float, seed: int) -> np.ndarray:
    """``(samples, channels)`` of a clean multi-sine signal (see ``SIGNAL_NOTE``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    frequencies = [f for f in (1.3, 2.7, 7.1, 11.0) if f < 0.25 * min(rate, model_rate)] or [0.1 * model_rate]
    columns = []
    for channel in range(channels):
        wave = sum(np.sin(2 * np.pi * f * t + channel + index) / (index + 1) for index, f in enumerate(frequencies))
        columns.append(2048 + 400 * wave + 8 * rng.normal(size=t.size))
    return np.stack(columns, axis=1)


@contextmanager
def one_core() -> Iterator[int | None]:
    """Pin this process to one of its CPUs while timing (where the OS allows it); yields the CPU or None."""
    if not hasattr(os, "sched_getaffinity"):
        yield None
        return
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, allowed)


def _run(bundle: Bundle, signal: np.ndarray, rate: float, config: WindowSpeedConfig, sink: TelemetrySink | None
         ) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, windows, judged windows) of the stream over ``signal``, as the runner feeds a
    file. CPU time is this process's (every thread): on a shared machine it is the one-core cost, wall time is not."""
    # summary features only with telemetry, as the runner does (RunOptions → with_features)
    stream = WindowStream(bundle, rate, replace(RECORDING_WINDOW_CONFIG, summary_features=config.telemetry))
    chunk = max(1, round(config.chunk_s * rate))
    windows = judged = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    batches = (stream.feed(signal[start : start + chunk]) for start in range(0, len(signal), chunk))
    for events in (*batches, stream.flush()):
        for event in events:
            if isinstance(event, WindowEvent):
                windows += 1
                if event.judged:
                    judged += 1
                    if sink is not None:
                        sink.record(event)
    if sink is not None:
        sink.commit()
    return time.perf_counter() - started, time.process_time() - cpu_started, windows, judged


# Stage → the runtime functions whose cumulative time is that stage (they never call one another).
_STAGES: dict[str, tuple[Callable, ...]] = {
    "resampling": (ChannelResampler.process, ChannelResampler.flush),
    "cutting, quality flags, normalisation (model_windows)": (model_windows,),
    "inference (Bundle.predict, session.run)": (Bundle.predict,),
    "decisions and results": (results_for,),
    "summary features": (summary_features,),
    "telemetry (records, SQLite outbox)": (TelemetrySink.record, TelemetrySink.commit),
}


def _key(function: Callable) -> tuple[str, int, str]:
    code = function.__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def _breakdown(profile: cProfile.Profile) -> dict[str, float]:
    """Share of the profiled run per stage; what is left is the stream's bookkeeping and event objects.

    A stage function's time counts only where another stage's function did not call it (the sink's ``record``
    commits every 64 records: that commit is ``record``'s)."""
    stats = pstats.Stats(profile).stats
    whole = stats[_key(_run)][3]
    staged = {_key(function) for functions in _STAGES.values() for function in functions}

    def own(function: Callable) -> float:
        entry = stats.get(_key(function))
        if entry is None:
            return 0.0
        return sum(timing[3] for caller, timing in entry[4].items() if caller not in staged)

    shares = {stage: sum(own(function) for function in functions) / whole for stage, functions in _STAGES.items()}
    shares["stream bookkeeping and events"] = max(0.0, 1.0 - sum(shares.values()))
    return {stage: round(share, 3) for stage, share in sorted(shares.items(), key=lambda item: -item[1])}


def _sink(bundle: Bundle, folder: Path, name: str) -> TelemetrySink:
    from runtime.telemetry.records import pseudonymous_device_id

    return TelemetrySink(bundle, folder / f"{name}.sqlite3", pseudonymous_device_id("benchmark-device", "benchmark"),
                         None)


def measure_window_stream_speed(bundle_path: Path, config: WindowSpeedConfig = WindowSpeedConfig()) -> dict:
    """The real-time factor of ``config.minutes`` of signal through the windowed stream, and where the time goes."""
    bundle = load_bundle(bundle_path, provider="cpu", threads=config.threads, trust=TrustPolicy.development())
    spec = window_input(bundle)
    model_rate = float(spec.sample_rate_hz)
    rate = float(config.input_rate_hz or model_rate)
    signal = synthetic_signal(config.minutes * 60, rate, spec.channels, model_rate, config.seed)
    profiled = signal[: round(config.profiled_minutes * 60 * rate)]
    walls, cpus = [], []
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory() as folder, one_core() as cpu:
        for repeat in range(config.repeats):
            sink = _sink(bundle, Path(folder), f"timed-{repeat}") if config.telemetry else None
            wall, used, windows, judged = _run(bundle, signal, rate, config, sink)
            walls.append(wall)
            cpus.append(used)
        profile = cProfile.Profile()
        sink = _sink(bundle, Path(folder), "profiled") if config.telemetry else None
        profile.enable()
        _run(bundle, profiled, rate, config, sink)
        profile.disable()
    recording_s = len(signal) / rate
    wall, used = statistics.median(walls), statistics.median(cpus)
    manifest = bundle.manifest
    return {
        "bundle": {"path": str(bundle_path), "scenario": manifest.scenario, "id": bundle.bundle_id,
                   "manifest_sha256": bundle.manifest_sha256, "variant": bundle.variant,
                   "task": bundle.output.task.value, "created_at": manifest.created_at,
                   "description": manifest.description},
        "input": {"model_rate_hz": model_rate, "input_rate_hz": rate, "resampled": rate != model_rate,
                  "channels": spec.channels, "window_samples": spec.window_samples, "hop_samples": spec.hop_samples,
                  "windows_per_second": model_rate / spec.hop_samples,
                  "normalization": spec.derived.window.normalization.value},
        "config": asdict(config),
        "signal": SIGNAL_NOTE,
        "recording_s": recording_s,
        "wall_s": [round(value, 4) for value in walls],
        "cpu_s": [round(value, 4) for value in cpus],
        "windows": windows,
        "judged_windows": judged,
        "real_time_factor": round(recording_s / used, 1),  # per CPU second of this process: the one-core cost
        "real_time_factor_wall": round(recording_s / wall, 1),  # per wall second: the machine's load included
        "microseconds_per_window": round(used / max(windows, 1) * 1e6, 2),
        "target_real_time_factor": TARGET_REAL_TIME_FACTOR,
        "meets_target": recording_s / used >= TARGET_REAL_TIME_FACTOR,
        "pinned_cpu": cpu,
        "load_average_before": load_before,
        "profiled_recording_s": len(profiled) / rate,
        "time_share_by_stage": _breakdown(profile),
    }


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else (
        platform.processor())
    return {"cpu": model, "cpus_visible": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "onnxruntime": onnxruntime.__version__, "platform": platform.platform()}


def _load(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def render_markdown(document: dict) -> str:
    lines = [
        "# Windowed stream speed (one core)", "",
        f"Measured {document['measured_at']} on {document['machine']['cpu']} "
        f"({document['machine']['cpus_visible']} CPUs visible; pinned to one), onnxruntime "
        f"{document['machine']['onnxruntime']}, numpy {document['machine']['numpy']}. Target: ≥ "
        f"{TARGET_REAL_TIME_FACTOR:,}× real time per stream (issue 13). Signal: {SIGNAL_NOTE}.", "",
        "Real-time factor = seconds of signal per CPU second of the (pinned) process, median of the timed runs; "
        "the wall-clock factor is beside it (it includes whatever else the machine ran: see the load average).", "",
        "| bundle | task | telemetry | rate in → model (Hz) | window / hop (samples) | windows/s of signal | signal | "
        "real-time factor (CPU; wall) | µs/window (CPU) | load avg | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in document["runs"]:
        item, bundle = run["input"], run["bundle"]
        lines.append(
            f"| {bundle['scenario']} ({bundle['variant']}) | {bundle['task']} | "
            f"{'outbox' if run['config']['telemetry'] else 'none'} | {item['input_rate_hz']:g} → "
            f"{item['model_rate_hz']:g} | {item['window_samples']} / {item['hop_samples']} × {item['channels']} ch | "
            f"{item['windows_per_second']:.3g} | {run['recording_s'] / 60:.0f} min | {run['real_time_factor']:,.0f}×; "
            f"{run['real_time_factor_wall']:,.0f}× | {run['microseconds_per_window']} | "
            f"{_load(run['load_average_before'])}"
            f" | {'✓' if run['meets_target'] else '✗'} |")
    lines += ["", "Time share by stage (profiled run):", ""]
    for run in document["runs"]:
        shares = ", ".join(f"{stage} {share:.0%}" for stage, share in run["time_share_by_stage"].items())
        lines.append(f"* {run['bundle']['scenario']} ({run['input']['input_rate_hz']:g} Hz in, telemetry "
                     f"{'on' if run['config']['telemetry'] else 'off'}): {shares}")
    lines += ["", "(Profiled shares are of wall time under cProfile, which inflates Python-level calls.)", "",
              "Bundles:", ""]
    bundles = {run["bundle"]["path"]: run["bundle"] for run in document["runs"]}
    lines += [f"* {bundle['scenario']}: `{path}` — {bundle['description']} (created {bundle['created_at']})"
              for path, bundle in bundles.items()]
    if document.get("note"):
        lines += ["", document["note"]]
    return "\n".join(lines) + "\n"


def write_document(document: dict, folder: Path) -> list[Path]:
    folder = Path(folder)
    json_path, markdown_path = folder / f"{RESULTS_NAME}.json", folder / f"{RESULTS_NAME}.md"
    write_json_atomic(json_path, document)
    temporary = markdown_path.with_name(f".{markdown_path.name}.partial")
    temporary.write_text(render_markdown(document))
    os.replace(temporary, markdown_path)
    return [json_path, markdown_path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.benchmark.window_stream_speed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path, help="signal_window bundle folders")
    parser.add_argument("--minutes", type=float, default=WindowSpeedConfig.minutes, help="timed signal length")
    parser.add_argument("--input-rate", type=float, action="append", default=None,
                        help="input rate in Hz (one per bundle, or one for all); default: each model's rate")
    parser.add_argument("--repeats", type=int, default=WindowSpeedConfig.repeats, help="timed runs per bundle")
    parser.add_argument("--telemetry", choices=("on", "off", "both"), default="both",
                        help="one outbox record per judged window in the timed path (both: a run each way)")
    parser.add_argument("--note", default="", help="a line for the report (e.g. where the bundles come from)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results"), help="results folder")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    rates = arguments.input_rate or [None]
    if len(rates) not in (1, len(arguments.bundles)):
        parser.error("give --input-rate once, or once per bundle")
    runs = []
    telemetry = {"on": (True,), "off": (False,), "both": (True, False)}[arguments.telemetry]
    trust_logger = logging.getLogger("runtime.trust")
    trust_level = trust_logger.level
    trust_logger.setLevel(logging.ERROR)  # unsigned cache bundles: a warning on every load otherwise
    try:
        for (index, path), with_telemetry in itertools.product(enumerate(arguments.bundles), telemetry):
            config = WindowSpeedConfig(minutes=arguments.minutes, profiled_minutes=min(10.0, arguments.minutes),
                                       repeats=max(1, arguments.repeats), telemetry=with_telemetry,
                                       input_rate_hz=rates[index if len(rates) > 1 else 0])
            run = measure_window_stream_speed(path, config)
            runs.append(run)
            print(f"{run['bundle']['scenario']}: {run['recording_s'] / 60:.0f} min at {run['input']['input_rate_hz']:g}"
                  f" Hz in {statistics.median(run['cpu_s']):.2f} CPU s: {run['real_time_factor']:,.0f}× real time "
                  f"(wall {run['real_time_factor_wall']:,.0f}×; {run['windows']:,} windows, "
                  f"{run['microseconds_per_window']} µs/window; telemetry {'on' if with_telemetry else 'off'}; "
                  "SYNTHETIC signal, for timing only)",
                  file=sys.stderr)
    except EdgemedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        trust_logger.setLevel(trust_level)
    document = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), "note": arguments.note,
                "runs": runs}
    for path in write_document(document, arguments.output):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
