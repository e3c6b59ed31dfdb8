"""Load test of the telemetry collector on PostgreSQL: aggregate records/s, request latency, stored == acknowledged.

``measure_collector_load`` starts the project's own PostgreSQL server (``edgemed postgres start``: durable, fsync
on, as a fleet's server runs) in a temporary folder and the collector (``edgemed collector --workers N``) in a
subprocess, both on 127.0.0.1, then ``clients`` client processes post schema-3 envelopes for ``devices`` device ids
over keep-alive connections for a bounded ``duration_s``. Each envelope holds ``batch`` consecutive minute aggregates
of one device, made from a real minute of the ECG stream (``bundles/ecg-pvc`` on MIT-BIH record 200, real: its
size, bins, classes and features are the device's), each with its own minute, sequence and ``record_id``; a share of
the batches is sent twice (a device that lost the acknowledgement).

It reports accepted aggregate records/s (new records acknowledged, duplicates apart), request p50/p99, the CPU each
party used, then checks the database against what was acknowledged: every acknowledged record stored (0 lost),
nothing stored twice (0 duplicated), every resend acknowledged as a duplicate; then waits for the collector's
rollup job to drain its queue, and the hourly rollups must account for every stored aggregate. The figure held
against the target is the sustained rate: accepted records over the load's time plus the time the rollup job
needed after it to fold what it had fallen behind by. Writes
``collector_load.json`` and ``.md`` with the machine it ran on.

``python -m pipeline.benchmark.collector_load [--duration 60] [--output benchmarks/results]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import multiprocessing
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from runtime.telemetry.aggregates import aggregate_record_id
from runtime.telemetry.records import pseudonymous_device_id

logger = logging.getLogger(__name__)

TARGET_RECORDS_PER_S = 5_000  # issue 14: aggregate records/s from 1 000 devices on a 2-core machine
RESULTS_NAME = "collector_load"
SESSION = "2026-01-01T00:00:00.000000Z"  # every simulated stream's start (the record ids differ by minute)
BASE_MINUTE_S = 1_767_225_600  # 2026-01-01T00:00:00Z: the first minute of every device
PLACEHOLDERS = ("@@DEVICE@@", "@@RECORD@@", "@@MINUTE@@", "@@SEQUENCE@@")
AGGREGATE_RECORDS = ("200",)  # the MIT-BIH record the load's aggregate is made from: frequent PVCs


@dataclass(frozen=True)
class LoadConfig:
    devices: int = 1_000  # distinct device ids
    duration_s: float = 60.0  # how long the clients post (bounded)
    clients: int = 2  # client processes
    connections: int = 4  # concurrent keep-alive connections (threads) per client process
    batch: int = 20  # aggregates per request: 20 minutes of one device (an upload every 20 min, or a catch-up)
    resend_share: float = 0.02  # share of batches posted a second time, to be acknowledged as duplicates
    bundle: Path = Path("bundles/ecg-pvc")  # whose real minute aggregate the load is made of
    bundles_folder: Path = Path("bundles")  # the collector's vocabulary: run from the repository root (its default)
    timeout_s: float = 30.0  # per request
    collector_workers: int = 2  # collector processes (edgemed collector --workers): Python checks on both cores
    seed: int = 0


# -- the aggregate the load is made of --------------------------------------------------------------------------


def sample_aggregate(bundle_path: Path) -> dict[str, Any]:
    """One real minute aggregate: the first three minutes of MIT-BIH record 200 (real; normal beats and PVCs)
    through the stream and the device's telemetry, the minute with the most beats."""
    from pipeline.benchmark.stream_speed import StreamSpeedConfig, mitdb_recording, stream_events
    from runtime.bundle import load_bundle
    from runtime.runner import TelemetryMode, TelemetrySink
    from runtime.trust import TrustPolicy

    bundle = load_bundle(bundle_path, provider="cpu", threads=1, trust=TrustPolicy.development())
    config = StreamSpeedConfig(hours=3 / 60)
    signal = mitdb_recording(config.hours, config.sample_rate_hz, AGGREGATE_RECORDS)
    with tempfile.TemporaryDirectory() as folder:
        sink = TelemetrySink(bundle, Path(folder) / "outbox.sqlite3", pseudonymous_device_id("load", "load"), None,
                             mode=TelemetryMode.AGGREGATES)
        sink.begin(float(BASE_MINUTE_S))
        stream_events(bundle, signal, config, TelemetryMode.AGGREGATES.value, sink)
        aggregates = [record for record in sink.outbox.pending(100) if record.get("kind") == "aggregate"]
        sink.close()
    return max(aggregates, key=lambda record: record["records"])  # a whole minute, not the stream's first


def template(aggregate: dict[str, Any]) -> list[str]:
    """The aggregate's JSON cut at its device id, record id, minute and sequence, in ``PLACEHOLDERS`` order: the
    fixed parts between them (joined per record by ``fill``, a few string concatenations)."""
    record = {**aggregate, "device_id": PLACEHOLDERS[0], "record_id": PLACEHOLDERS[1], "minute": PLACEHOLDERS[2],
              "session": SESSION, "sequence": PLACEHOLDERS[3]}
    text = json.dumps({key: record.pop(key) for key in ("device_id", "record_id", "minute", "sequence")} | record,
                      separators=(",", ":")).replace(f'"{PLACEHOLDERS[3]}"', PLACEHOLDERS[3])
    parts = []
    for placeholder in PLACEHOLDERS:
        head, text = text.split(placeholder)
        parts.append(head)
    return [*parts, text]


def fill(parts: list[str], device_id: str, record_id: str, minute: str, sequence: int) -> str:
    return (parts[0] + device_id + parts[1] + record_id + parts[2] + minute + parts[3] + str(sequence)
            + parts[4])


def minute_text(index: int) -> str:
    return datetime.fromtimestamp(BASE_MINUTE_S + 60 * index, UTC).strftime("%Y-%m-%dT%H:%M:00Z")


# -- the clients ----------------------------------------------------------------------------------------------------


@dataclass
class _Device:
    device_id: str
    next_minute: int = 0


class _Bodies:
    """Request bodies made cheaply, so the clients leave the cores to the collector: the aggregate's JSON cut into
    bytes around its placeholders once, each minute's text made once, a body one ``bytes.join``."""

    def __init__(self, text: list[str], identity: dict[str, str], batch: int) -> None:
        self.parts = [part.encode() for part in text]
        self.identity = identity
        self.batch = batch
        self._minutes: list[str] = []

    def minute(self, index: int) -> str:
        while len(self._minutes) <= index:
            self._minutes.append(minute_text(len(self._minutes)))
        return self._minutes[index]

    def make(self, device_id: str, first: int) -> tuple[bytes, list[str]]:
        """The envelope of ``device_id``'s minutes ``first`` … ``first + batch - 1``, and their record ids."""
        identity = {**self.identity, "device_id": device_id}
        minutes = [self.minute(index) for index in range(first, first + self.batch)]
        record_ids = [aggregate_record_id(identity, minute, 60, SESSION) for minute in minutes]
        device = device_id.encode()
        one, two, three, four, five = self.parts
        pieces = [b'{"schema_version":3,"device_id":"', device, b'","dropped":0,"records":[']
        for index, (minute, record_id) in enumerate(zip(minutes, record_ids, strict=True)):
            pieces += [b"," if index else b"", one, device, two, record_id.encode(), three, minute.encode(), four,
                       str(first + index + 1).encode(), five]
        pieces.append(b"]}")
        return b"".join(pieces), record_ids


def _client(config: LoadConfig, share: int, text: list[str], identity: dict[str, str], url: str,
            start_at: float, results: multiprocessing.Queue) -> None:
    """One client process: ``connections`` threads, each posting for its own devices until the deadline."""
    ids = [pseudonymous_device_id(f"load-device-{index}", "collector-load") for index in range(config.devices)]
    mine = ids[share :: config.clients]
    address = urllib.request.urlparse(url)
    bodies = _Bodies(text, identity, config.batch)
    bodies.minute(10_000)  # the minute texts, made before the clock starts
    lock = threading.Lock()
    totals = {"requests": 0, "resends": 0, "accepted": 0, "duplicates": 0, "errors": 0, "unexpected_duplicates": 0,
              "resend_not_duplicate": 0}
    latencies: list[float] = []
    acknowledged: list[str] = []  # "device_id record_id" of every acknowledged new record
    deadline = start_at + config.duration_s
    headers = {"Content-Type": "application/json"}

    def run(devices: list[_Device], seed: int) -> None:
        rng = random.Random(seed)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=config.timeout_s)
        position = 0
        own_latencies, own_acknowledged = [], []
        counts = dict.fromkeys(totals, 0)
        while time.time() < start_at:
            time.sleep(0.01)
        while time.time() < deadline:
            device = devices[position % len(devices)]
            position += 1
            first = device.next_minute
            device.next_minute += config.batch
            body, record_ids = bodies.make(device.device_id, first)
            for attempt in range(2 if rng.random() < config.resend_share else 1):
                started = time.perf_counter()
                try:
                    connection.request("POST", address.path, body, headers)
                    response = connection.getresponse()
                    answer = response.read()
                except (OSError, http.client.HTTPException):
                    counts["errors"] += 1
                    connection.close()
                    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=config.timeout_s)
                    break
                own_latencies.append(time.perf_counter() - started)
                counts["requests"] += 1
                if response.status != 200:
                    counts["errors"] += 1
                    logger.warning("collector answered %d: %s", response.status, answer[:200])
                    break
                receipt = json.loads(answer)
                new = len(receipt["acknowledged"]) - receipt["duplicates"]
                if attempt == 0:
                    counts["accepted"] += new
                    counts["duplicates"] += receipt["duplicates"]
                    counts["unexpected_duplicates"] += receipt["duplicates"]
                    if receipt["acknowledged"] == list(range(first + 1, first + config.batch + 1)):
                        own_acknowledged += [f"{device.device_id} {record_id}" for record_id in record_ids]
                else:
                    counts["resends"] += 1
                    counts["duplicates"] += receipt["duplicates"]
                    counts["resend_not_duplicate"] += new
        connection.close()
        with lock:
            latencies.extend(own_latencies)
            acknowledged.extend(own_acknowledged)
            for key, value in counts.items():
                totals[key] += value

    devices = [_Device(device_id) for device_id in mine]
    threads = [threading.Thread(target=run, args=(devices[index :: config.connections], config.seed * 1000 + share
                                                  * 100 + index)) for index in range(config.connections)]
    for thread in threads:
        thread.start()
    while time.time() < start_at:
        time.sleep(0.005)
    cpu_at_start = time.process_time()  # what start-up cost is not the load's
    for thread in threads:
        thread.join()
    results.put({"totals": totals, "latencies": latencies, "acknowledged": acknowledged,
                 "cpu_s": time.process_time() - cpu_at_start})


# -- the servers ------------------------------------------------------------------------------------------------

# The servers are started as an operator would, through the command line (this module may not import dashboard/).
EDGEMED = (sys.executable, "-c", "from pipeline.cli import main; main()")


def _edgemed(*arguments: str) -> str:
    """Run an ``edgemed`` command; its standard output."""
    return subprocess.run([*EDGEMED, *arguments], check=True, capture_output=True, text=True, timeout=300).stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]



def _wait_healthy(url: str, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    health = url.replace("/v1/telemetry", "/v1/health")
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the collector exited with {process.returncode}")
        try:
            with urllib.request.urlopen(health, timeout=1.0):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the collector did not answer its health check")


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _postgres_pids(data: Path) -> list[int]:
    """The postmaster (first line of postmaster.pid) and its children."""
    try:
        leader = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    return _family(leader)


def _family(leader: int) -> list[int]:
    """``leader`` and its children (Linux /proc)."""
    pids = [leader]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == leader:
                    pids.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return pids


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine (/proc/stat)."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# -- verification ---------------------------------------------------------------------------------------------


def _verify(database_url: str, acknowledged: list[str], devices: int) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute("SELECT device_id, record_id FROM aggregates").fetchall()
        registered = connection.execute("SELECT count(*) FROM devices").fetchone()[0]
    stored = [f"{device} {record}" for device, record in rows]
    stored_set, acknowledged_set = set(stored), set(acknowledged)
    return {
        "acknowledged": len(acknowledged),
        "acknowledged_distinct": len(acknowledged_set),
        "stored": len(stored),
        "stored_distinct": len(stored_set),
        "lost": len(acknowledged_set - stored_set),  # acknowledged, not in the database
        "duplicated": len(stored) - len(stored_set),  # one record id stored twice for a device
        "stored_not_acknowledged": len(stored_set - acknowledged_set),  # e.g. a request timed out after its commit
        "devices_registered": registered,
        "devices_expected": devices,
    }


def _rollups(database_url: str, load_ended: float, timeout_s: float = 600.0) -> dict[str, Any]:
    """Wait for the collector's rollup job to drain the queue; how long it took (from ``load_ended``, a
    ``time.perf_counter`` reading: the job kept folding while the stored records were checked) and whether the
    rollups count every stored aggregate."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        def pending() -> int:
            return connection.execute("SELECT count(*) FROM rollup_queue").fetchone()[0]

        queued = pending()
        started = time.perf_counter()
        while (left := pending()) and time.perf_counter() - started < timeout_s:
            time.sleep(0.5)
        seconds = time.perf_counter() - started
        after_load = time.perf_counter() - load_ended
        counted = connection.execute("SELECT coalesce(sum(aggregates), 0) FROM aggregate_rollups").fetchone()[0]
        stored = connection.execute("SELECT count(*) FROM aggregates").fetchone()[0]
    return {"pending_after_load": queued, "left": left, "seconds": round(seconds, 1),
            "seconds_after_load": round(after_load, 1),
            "aggregates_per_s": round(queued / seconds, 1) if seconds and queued else None,
            "rollups_count_every_aggregate": counted == stored}


# -- the whole measurement --------------------------------------------------------------------------------------


def _percentile(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 2) if len(values) else None


def measure_collector_load(config: LoadConfig = LoadConfig(), folder: Path | None = None) -> dict[str, Any]:
    """Start PostgreSQL and the collector, load them for ``config.duration_s``, verify; the result document."""
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None  # others' work, before ours starts
    aggregate = sample_aggregate(config.bundle)
    text = template(aggregate)
    identity = {key: aggregate[key] for key in ("bundle_id", "bundle_sha256", "variant", "provider")}
    root = Path(folder or tempfile.mkdtemp(prefix="edgemed-collector-load-"))
    root.mkdir(parents=True, exist_ok=True)
    # A folder of its own: when we are root the server runs as the postgres user, who gets (only) this folder.
    cluster = Path(tempfile.mkdtemp(prefix="edgemed-load-postgres-"))
    database_url = _edgemed("postgres", "start", "--folder", str(cluster), "--port", str(_free_port()),
                            "--no-install").strip().splitlines()[-1]
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1/telemetry"
    command = [*EDGEMED, "collector", "--host", "127.0.0.1", "--port", str(port), "--database-url", database_url,
               "--workers", str(config.collector_workers)]
    log = (root / "collector.log").open("w")
    collector = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=Path.cwd())
    try:
        _wait_healthy(url, collector)
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        start_at = time.time() + 3.0  # every client connected and waiting
        clients = [context.Process(target=_client, args=(config, share, text, identity, url, start_at, results))
                   for share in range(config.clients)]
        for client in clients:
            client.start()
        while time.time() < start_at:
            time.sleep(0.01)
        postgres_pids, collector_pids = _postgres_pids(cluster / "data"), _family(collector.pid)
        cpu_before = (_cpu_seconds(collector_pids), _cpu_seconds(postgres_pids), _machine_busy())
        started = time.perf_counter()
        reports = [results.get(timeout=config.duration_s + 120) for _ in clients]
        load_ended = time.perf_counter()
        elapsed = load_ended - started
        postgres_pids = sorted(set(postgres_pids) | set(_postgres_pids(cluster / "data")))
        busy, total = _machine_busy()
        machine_share = (busy - cpu_before[2][0]) / max(1, total - cpu_before[2][1])
        cpu = {"collector_s": round(_cpu_seconds(collector_pids) - cpu_before[0], 1),
               "postgres_s": round(_cpu_seconds(postgres_pids) - cpu_before[1], 1),
               "clients_s": round(sum(report["cpu_s"] for report in reports), 1),
               "machine_busy_s": round((busy - cpu_before[2][0]) / os.sysconf("SC_CLK_TCK"), 1),
               "machine_busy_share": round(machine_share, 3)}
        # Whatever else ran meanwhile (other people's work on a shared machine): busy time none of ours used.
        cpu["others_s"] = round(cpu["machine_busy_s"] - cpu["collector_s"] - cpu["postgres_s"] - cpu["clients_s"], 1)
        for client in clients:
            client.join(timeout=30)
        totals = {key: sum(report["totals"][key] for report in reports) for key in reports[0]["totals"]}
        latencies = np.array([value for report in reports for value in report["latencies"]])
        acknowledged = [key for report in reports for key in report["acknowledged"]]
        verification = _verify(database_url, acknowledged, config.devices)
        rollups = _rollups(database_url, load_ended)
    finally:
        collector.terminate()
        try:
            collector.wait(timeout=30)
        except subprocess.TimeoutExpired:
            collector.kill()
        log.close()
        _edgemed("postgres", "stop", "--folder", str(cluster))
        shutil.rmtree(cluster, ignore_errors=True)
    accepted_per_s = totals["accepted"] / elapsed
    # Sustained: stored and in its hourly rollup. The job may end the load behind (its queue grows while it is
    # starved), so the time it then needs to catch up counts: a backlog that grows for ever is not a rate.
    sustained_per_s = totals["accepted"] / (elapsed + rollups["seconds_after_load"]) if not rollups["left"] else 0.0
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "config": {**asdict(config), "bundle": str(config.bundle), "bundles_folder": str(config.bundles_folder)},
        "aggregate_bytes": len(fill(text, "0" * 32, "0" * 32, minute_text(0), 1)),
        "aggregate_tracks": {"features": len(aggregate["features"]), "outputs": len(aggregate["outputs"])},
        "aggregate_source": f"MIT-BIH record {', '.join(AGGREGATE_RECORDS)} (real)",
        "load": "SYNTHETIC: that one real minute aggregate, replicated with generated device ids, minutes, "
                "sequences and record ids",
        "postgres": {"durable": True, "note": "the project's own server (edgemed postgres), fsync on, 127.0.0.1"},
        "elapsed_s": round(elapsed, 2),
        "requests": totals["requests"],
        "requests_per_s": round(totals["requests"] / elapsed, 1),
        "accepted_records": totals["accepted"],
        "accepted_records_per_s": round(accepted_per_s, 1),
        "sustained_records_per_s": round(sustained_per_s, 1),
        "latency_ms": {"p50": _percentile(latencies, 50), "p99": _percentile(latencies, 99),
                       "max": _percentile(latencies, 100)},
        "resends": totals["resends"],
        "resends_acknowledged_as_duplicates": totals["resends"] * config.batch - totals["resend_not_duplicate"],
        "errors": totals["errors"],
        "cpu": cpu,
        "cpu_us_per_accepted_record": {key[:-2]: round(value / max(1, totals["accepted"]) * 1e6)
                                       for key, value in cpu.items() if key.endswith("_s")},
        "load_average_before": None if load_before is None else [round(value, 2) for value in load_before],
        "verification": verification,
        "rollups": rollups,
        "target_records_per_s": TARGET_RECORDS_PER_S,
        "meets_target": sustained_per_s >= TARGET_RECORDS_PER_S and verification["lost"] == 0
        and verification["duplicated"] == 0,
    }


def _machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else (
        platform.processor())
    memory_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")), 0) if Path("/proc/meminfo").exists() else 0
    return {"cpu": model, "cpus": os.cpu_count(), "memory_gib": round(memory_kb / 2**20, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def render_markdown(document: dict[str, Any]) -> str:
    config, check, machine = document["config"], document["verification"], document["machine"]
    return "\n".join([
        "# Collector load (PostgreSQL)", "",
        f"Measured {document['measured_at']} on {machine['cpu']} ({machine['cpus']} CPUs, {machine['memory_gib']} GiB, "
        f"shared: load average {machine['load_average']}). The collector (`edgemed collector --workers "
        f"{config['collector_workers']}`) and the "
        "project's PostgreSQL (durable: fsync on) on 127.0.0.1; "
        f"{config['clients']} client processes × {config['connections']} keep-alive connections posting schema-3 "
        f"envelopes of {config['batch']} minute aggregates ({document['aggregate_bytes']:,} bytes each, "
        f"{document['aggregate_tracks']['features']} feature histograms: a minute of the ecg-pvc stream on "
        f"{document.get('aggregate_source', 'synthetic ECG')}, replicated: a synthetic load) for "
        f"{config['devices']:,} generated device ids during {document['elapsed_s']:g} s; "
        f"{config['resend_share']:.0%} of the batches posted twice.", "",
        "| sustained aggregates/s (stored and rolled up) | accepted during the load /s | requests/s | "
        "p50 / p99 request (ms) | acknowledged | stored | lost | duplicated | "
        "resends acknowledged as duplicates | errors | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {document['sustained_records_per_s']:,.0f} | {document['accepted_records_per_s']:,.0f} | "
        f"{document['requests_per_s']:,.0f} | "
        f"{document['latency_ms']['p50']} / {document['latency_ms']['p99']} | {check['acknowledged']:,} | "
        f"{check['stored']:,} | {check['lost']} | {check['duplicated']} | "
        f"{document['resends_acknowledged_as_duplicates']:,} of {document['resends'] * config['batch']:,} | "
        f"{document['errors']} | {'✓' if document['meets_target'] else '✗'} ≥ {document['target_records_per_s']:,}/s |",
        "",
        f"CPU during the load: collector {document['cpu']['collector_s']} s, PostgreSQL {document['cpu']['postgres_s']}"
        f" s, clients {document['cpu']['clients_s']} s, other people's processes {document['cpu']['others_s']} s "
        f"(the machine is shared; load average {document['load_average_before']} before the run); whole machine "
        f"busy {document['cpu']['machine_busy_share']:.0%}. Per accepted aggregate: collector "
        f"{document['cpu_us_per_accepted_record']['collector']} µs, PostgreSQL "
        f"{document['cpu_us_per_accepted_record']['postgres']} µs, clients "
        f"{document['cpu_us_per_accepted_record']['clients']} µs. Devices registered: "
        f"{check['devices_registered']} of {check['devices_expected']}.", "",
        "Hourly rollups: the collector folds queued aggregates in a background job every 5 s (deferred rollups, "
        f"off the request path). Queued when the load stopped: {document['rollups']['pending_after_load']:,}; "
        f"the queue was empty {document['rollups']['seconds_after_load']} s after the load stopped (the job folding "
        "while the stored records were checked). Sustained = accepted aggregates / (load + that time): every one "
        "stored and counted in its hourly rollup; rollups count every stored aggregate: "
        f"{document['rollups']['rollups_count_every_aggregate']}.", "",
        "Command: `.venv/bin/python -m pipeline.benchmark.collector_load` (see `--help`).", "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.benchmark.collector_load", description=__doc__.split(
        "\n")[0])
    defaults = LoadConfig()
    parser.add_argument("--devices", type=int, default=defaults.devices)
    parser.add_argument("--duration", type=float, default=defaults.duration_s, help="seconds of load (bounded)")
    parser.add_argument("--clients", type=int, default=defaults.clients, help="client processes")
    parser.add_argument("--connections", type=int, default=defaults.connections, help="connections per client")
    parser.add_argument("--batch", type=int, default=defaults.batch, help="aggregates per request")
    parser.add_argument("--resend-share", type=float, default=defaults.resend_share)
    parser.add_argument("--workers", type=int, default=defaults.collector_workers, help="collector processes")
    parser.add_argument("--bundle", type=Path, default=defaults.bundle)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--keep", type=Path, default=None, help="keep the server and logs in this folder")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = LoadConfig(devices=arguments.devices, duration_s=arguments.duration, clients=arguments.clients,
                        connections=arguments.connections, batch=arguments.batch,
                        resend_share=arguments.resend_share, bundle=arguments.bundle,
                        collector_workers=arguments.workers)
    folder = arguments.keep or Path(tempfile.mkdtemp(prefix="edgemed-collector-load-"))
    try:
        document = measure_collector_load(config, folder)
    finally:
        if arguments.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    arguments.output.mkdir(parents=True, exist_ok=True)
    (arguments.output / f"{RESULTS_NAME}.json").write_text(json.dumps(document, indent=2) + "\n")
    (arguments.output / f"{RESULTS_NAME}.md").write_text(render_markdown(document))
    print(render_markdown(document))
    return 0 if document["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
