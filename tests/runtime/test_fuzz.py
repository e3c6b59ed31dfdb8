"""Property-based robustness: garbage signals never crash the stream; garbage manifests only raise BundleError."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.bundle import Bundle, BundleError, TrustPolicy, load_bundle
from runtime.ecg import EcgStream
from tests.runtime.conftest import synthetic_ecg

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SPECIAL = [np.nan, np.inf, -np.inf, 1e308, -1e308, 1e12, 0.0, -0.0, 65535.0]


@st.composite
def garbage_signals(draw) -> tuple[float, np.ndarray, list[int]]:
    """(source rate, samples, chunk sizes): ECG, noise or constants with bad values sprinkled or in runs."""
    rate = draw(st.sampled_from([100.0, 250.0, 360.0, 500.0, 1000.0]))
    length = draw(st.integers(0, 4000))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    base = draw(st.sampled_from(["ecg", "noise", "constant", "special"]))
    if base == "ecg":
        samples = synthetic_ecg(max(length, 1) / rate + 1.0, rate=rate, seed=seed % 1000)[0][:length]
    elif base == "noise":
        samples = rng.normal(0.0, draw(st.sampled_from([1e-12, 1.0, 1e6])), length)
    elif base == "constant":
        samples = np.full(length, draw(st.sampled_from(SPECIAL)))
    else:
        samples = rng.choice(np.asarray(SPECIAL), length)
    samples = np.asarray(samples, dtype=np.float64).copy()
    for _ in range(draw(st.integers(0, 5))):
        if length:
            start = int(rng.integers(0, length))
            samples[start : start + int(rng.integers(1, 400))] = draw(st.sampled_from(SPECIAL))
    chunks = draw(st.lists(st.integers(1, 1500), min_size=1, max_size=8))
    return rate, samples, chunks


@FUZZ
@given(signal=garbage_signals(), gap_at=st.one_of(st.none(), st.integers(0, 7)), timestamps=st.booleans())
def test_garbage_never_crashes_the_stream(ecg_bundle, signal, gap_at, timestamps):
    rate, samples, chunks = signal
    stream = EcgStream(ecg_bundle, rate)
    events, position, index, clock = [], 0, 0, 0.0
    while position < samples.size:
        size = chunks[index % len(chunks)]
        if index == gap_at:
            events += stream.gap(1.5)
        stamp = clock if timestamps else None
        events += stream.feed(samples[position : position + size], timestamp_s=stamp)
        clock += size / rate * (1.3 if index % 3 == 2 else 1.0)
        position, index = position + size, index + 1
    events += stream.flush()
    for event in events:
        json.dumps(event.to_dict(), allow_nan=False)
    times = [event.time_s for event in events if event.kind == "beat"]
    assert times == sorted(times)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def _load_with_manifest(source: Path, manifest_bytes: bytes) -> Bundle | None:
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "bundle"
        shutil.copytree(source, target)
        (target / "manifest.json").write_bytes(manifest_bytes)
        (target / "manifest.sig").unlink(missing_ok=True)  # the parser is under test, not the signature
        try:
            return load_bundle(target, trust=TrustPolicy.development())
        except BundleError:
            return None


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_only_raise_bundle_errors(ecg_bundle_path, data):
    assert _load_with_manifest(ecg_bundle_path, data) is None


@FUZZ
@given(value=JSON_VALUES)
def test_random_json_only_raises_bundle_errors(ecg_bundle_path, value):
    assert _load_with_manifest(ecg_bundle_path, json.dumps(value).encode()) is None


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


@FUZZ
@given(choice=st.integers(0, 10_000), value=JSON_VALUES)
def test_mutated_manifests_load_or_raise_bundle_errors(ecg_bundle_path, choice, value):
    manifest = json.loads((ecg_bundle_path / "manifest.json").read_text())
    interesting = [p for p in _paths(manifest) if p and p[0] not in ("variants", "training", "tool_versions")]
    path = interesting[choice % len(interesting)]
    parent = manifest
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    _load_with_manifest(ecg_bundle_path, json.dumps(manifest).encode())  # may load (harmless change) or refuse
