"""A device streams for days: the ECG stream with its telemetry (minute aggregates, per-event records, a real SQLite
outbox) must hold the same memory after hours as after the first ones, not a little more per beat.

Real signal: MIT-BIH record 200 (30 min 5.6 s, frequent PVCs) fed again and again in chunks that divide it exactly,
so every checkpoint sees the stream at the same point of the same content, through a bundle with the shipped ecg-pvc
inputs (the running template's residual and RR features; a hand-built linear model, so the beats it calls V do not
depend on a training run or the CPU). Python's own allocations are traced
(``tracemalloc``); the rank-bit cache of the template medians (``template_members._bit_columns``: one array per
(members, samples) pair met, cleared past 256 entries, so bounded by design) is left out of the figure — it fills over
the first hours and would hide a slow leak.
"""

from __future__ import annotations

import dataclasses
import gc
import tracemalloc

from pipeline.benchmark.stream_speed import _sink
from pipeline.scenarios.ecg_pvc.mitdb import SAMPLE_RATE_HZ, load_records
from runtime.ecg import RECORDING_CONFIG, template_members
from runtime.ecg.stream import EcgStream
from runtime.events import BeatEvent
from tests.runtime.pvc_bundle import TWO_INPUTS, load_pvc_bundle

CHUNK = 10_000  # samples per feed (27.8 s): record 200's 650 000 samples are 65 chunks, so cycles end on a chunk
CYCLES = 6  # 3 h of signal, about 15 600 beats
KIB = 1024


def _retained() -> int:
    """Bytes Python holds now, less the bounded rank-bit cache."""
    gc.collect()
    cache = sum(array.nbytes for array in template_members._bit_columns.values())
    return tracemalloc.get_traced_memory()[0] - cache


def test_hours_of_real_ecg_with_telemetry_hold_the_same_memory(tmp_path):
    record = load_records(("200",))[0].signal_mv.astype("float32")
    assert len(record) % CHUNK == 0
    bundle = load_pvc_bundle(tmp_path / "bundle", TWO_INPUTS)
    sink = _sink(bundle, tmp_path, "memory", "aggregates", 1.7e9)
    stream = EcgStream(bundle, SAMPLE_RATE_HZ, config=dataclasses.replace(RECORDING_CONFIG, summary_features=True))
    retained, beats = [], 0
    tracemalloc.start()
    try:
        for _ in range(CYCLES):
            for start in range(0, len(record), CHUNK):
                events = stream.feed(record[start : start + CHUNK])
                beats += sum(isinstance(event, BeatEvent) for event in events)
                sink.add_many(events)
            retained.append(_retained())
    finally:
        tracemalloc.stop()
        sink.close()
    assert beats > 2_000 * CYCLES and sink.aggregates >= 29 * CYCLES  # the stream and its telemetry really ran
    # A leak grows with every beat; the figure otherwise moves by up to ~160 KiB between checkpoints (buffers
    # whose size follows the beats in flight; 2 831-2 986 KiB here). The least of the last two checkpoints against
    # the most of the first two are ~7 800 beats apart, so a leak of 40 bytes a beat fails for sure (checked by hand:
    # one 2-tuple kept per beat, ~77 bytes, grew the figure by 976 KiB).
    early, late = max(retained[:2]), min(retained[-2:])
    assert late - early < 150 * KIB, [round(size / KIB) for size in retained]
