"""One artefact costs at most the beat it hides, never the rest of the recording.

Found by a device-input audit on real MIT-BIH record 119: a single -999 sample (a common missing-value sentinel) or a
2-sample 1e6 spike made the flat-line detector call every later segment flat (its reference was the largest
segment it had seen, and flat segments were never remembered), so no beat was reported for the rest of the record;
with that fixed, the QRS detector's signal level jumped to the spike and missed the next 49 real beats.

Not yet: the artefact itself is found as a beat at 30.0 s; the shipped ecg-pvc bundle leaves it unjudged
(out_of_domain), this test's hand-built bundle classes it. A per-beat artefact flag is open work.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.scenarios.ecg_pvc.mitdb import SAMPLE_RATE_HZ, load_records
from runtime.ecg.quality import FlatLineDetector, QualityConfig
from runtime.ecg.stream import EcgStream
from runtime.events import BeatEvent
from tests.runtime.pvc_bundle import TWO_INPUTS, load_pvc_bundle

SPIKE_AT = 30 * int(SAMPLE_RATE_HZ)  # 30 s into the record


def test_a_spike_segment_does_not_make_the_segments_after_it_flat():
    detector = FlatLineDetector(QualityConfig())
    random = np.random.default_rng(3)
    normal = random.normal(0, 0.3, (40, 360))
    spike = normal[:1].copy()
    spike[0, 100] = 1e6
    decisions = detector.flat_segments(np.vstack([normal[:10], spike, normal[10:]]))
    assert not any(decisions)  # the spike is one segment of 30: the median does not see it
    first = FlatLineDetector(QualityConfig()).flat_segments(np.vstack([spike, normal]))
    assert not any(first)  # not even as the very first segment
    lead_off = FlatLineDetector(QualityConfig()).flat_segments(np.vstack([normal[:10], normal[:5] * 1e-4]))
    assert lead_off == [False] * 10 + [True] * 5  # a real flat stretch is still flat


def _beats(bundle, signal: np.ndarray) -> list[BeatEvent]:
    stream = EcgStream(bundle, SAMPLE_RATE_HZ)
    events = [*stream.feed(signal[: len(signal) // 2]), *stream.feed(signal[len(signal) // 2 :]), *stream.flush()]
    return [event for event in events if isinstance(event, BeatEvent)]


@pytest.fixture(scope="module")
def record_and_bundle(tmp_path_factory):
    signal = load_records(("119",))[0].signal_mv[: 300 * int(SAMPLE_RATE_HZ)].astype(np.float32)
    return signal, load_pvc_bundle(tmp_path_factory.mktemp("bundle"), TWO_INPUTS)


@pytest.mark.parametrize("artefact", ["sentinel", "spike"])
def test_an_artefact_costs_at_most_the_beat_it_hides(record_and_bundle, artefact):
    signal, bundle = record_and_bundle
    damaged = signal.copy()
    if artefact == "sentinel":
        damaged[SPIKE_AT] = -999.0
    else:
        damaged[SPIKE_AT : SPIKE_AT + 2] = 1e6
    clean, found = _beats(bundle, signal), _beats(bundle, damaged)
    clean_times = np.array([beat.time_s for beat in clean])
    found_times = np.array([beat.time_s for beat in found])
    missing = [time for time in clean_times if np.min(np.abs(found_times - time)) > 0.05]
    assert len(missing) <= 1 and all(abs(time - 30.0) < 1.0 for time in missing), missing
    assert len(clean) > 300  # five minutes of record 119: the rest of the record is all there
