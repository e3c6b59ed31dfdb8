"""Tiny real bundles (built once per session, signed with a test key) and synthetic ECG with known R-peaks.

Tests here may use ``pipeline`` to make fixtures; the runtime code under test may not. The session's
signing key is a development key in pytest's temporary folder; ``trust`` trusts it alone (no rollback
state: the tests of rollback bring their own), and ``resign`` signs a manifest a test edited on purpose.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline.build.builder import build_scenario
from pipeline.build.context import StageContext
from pipeline.build.signing import PRIVATE_KEY_NAME, TRUST_STORE_FOLDER, SigningKey, generate_keys
from pipeline.config import Profile
from pipeline.scenarios import get_scenario
from runtime.bundle import Bundle, load_bundle
from runtime.contract import MANIFEST_NAME, KeyPurpose
from runtime.trust import SIGNATURE_NAME, TrustPolicy

# (offset from R in s, width in s, amplitude): P, Q, R, S and T waves of a lead-II-like beat.
_WAVES = ((-0.2, 0.025, 0.15), (-0.03, 0.01, -0.12), (0.0, 0.012, 1.0), (0.03, 0.01, -0.25), (0.25, 0.045, 0.3))


def synthetic_ecg(
    seconds: float,
    rate: float = 360.0,
    heart_rate: float = 72.0,
    seed: int = 0,
    noise: float = 0.02,
    wander: float = 0.1,
    gain: float = 500.0,
    offset: float = 2000.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(signal, R-peak times in s): Gaussian P-QRS-T beats with 5 % RR jitter, baseline wander and noise."""
    rng = np.random.default_rng(seed)
    rr = 60.0 / heart_rate
    times = [0.6]
    while times[-1] < seconds - 0.6:
        times.append(times[-1] + rr * (1.0 + rng.normal(0.0, 0.05)))
    r_times = np.asarray(times[:-1])
    t = np.arange(int(seconds * rate)) / rate
    signal = np.zeros_like(t)
    for r_time in r_times:
        low, high = max(0, int((r_time - 0.4) * rate)), int((r_time + 0.5) * rate)
        for shift, width, amplitude in _WAVES:
            signal[low:high] += amplitude * np.exp(-0.5 * ((t[low:high] - r_time - shift) / width) ** 2)
    signal += wander * np.sin(2 * np.pi * 0.25 * t) + noise * rng.normal(size=t.size)
    return gain * signal + offset, r_times


def matched_fraction(reference_s: np.ndarray, detected_s: np.ndarray, tolerance_s: float = 0.15) -> float:
    """Share of reference beats with a detection within the tolerance (one-to-one, nearest first)."""
    detected = np.sort(np.asarray(detected_s, dtype=float))
    used = np.zeros(detected.size, dtype=bool)
    hits = 0
    for time in reference_s:
        options = [k for k in np.flatnonzero(np.abs(detected - time) <= tolerance_s) if not used[k]]
        if options:
            used[min(options, key=lambda k: abs(detected[k] - time))] = True
            hits += 1
    return hits / max(1, len(reference_s))


_BUILT: dict[str, Path] = {}  # scenario → published tiny bundle, shared by every test directory in a session
_KEYS: dict[str, SigningKey] = {}


def session_signing_key(tmp_path_factory) -> SigningKey:
    """The test session's signing key (a development key outside the repository), made once."""
    if "key" not in _KEYS:
        folder = tmp_path_factory.getbasetemp() / "edgemed-test-key"
        if not (folder / PRIVATE_KEY_NAME).exists():
            generate_keys(folder, KeyPurpose.DEVELOPMENT)
        _KEYS["key"] = SigningKey.load(folder / PRIVATE_KEY_NAME)
    return _KEYS["key"]


def session_trust(tmp_path_factory) -> TrustPolicy:
    """A device that trusts the session's key alone and keeps no rollback state."""
    store = session_signing_key(tmp_path_factory).path.parent / TRUST_STORE_FOLDER
    return dataclasses.replace(TrustPolicy.from_store(store), version_state=None)


def resign(folder: Path, key: SigningKey) -> None:
    """Sign ``folder``'s manifest.json as it is now (a test that damages a manifest on purpose)."""
    (folder / SIGNATURE_NAME).write_bytes(key.sign((folder / MANIFEST_NAME).read_bytes()).to_bytes())


def tiny_bundle(name: str, tmp_path_factory) -> Path:
    """The scenario's tiny bundle, built at most once per test session (tests/pipeline reuses it too), signed
    with the session's key."""
    if name not in _BUILT:
        root = tmp_path_factory.getbasetemp() / "edgemed-tiny-bundles"
        scenario = get_scenario(name)
        config = scenario.build_config(Profile.TINY)
        outcome = build_scenario(scenario, config, StageContext(root / "artifacts"), root / "bundles",
                                 signing_key=session_signing_key(tmp_path_factory))
        _BUILT[name] = outcome.bundle_directory
    return _BUILT[name]


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory) -> SigningKey:
    return session_signing_key(tmp_path_factory)


@pytest.fixture(scope="session")
def trust(tmp_path_factory) -> TrustPolicy:
    return session_trust(tmp_path_factory)


@pytest.fixture(scope="session")
def ecg_bundle_path(tmp_path_factory) -> Path:
    return tiny_bundle("ecg-arrhythmia", tmp_path_factory)


@pytest.fixture(scope="session")
def breast_bundle_path(tmp_path_factory) -> Path:
    return tiny_bundle("breast-cancer", tmp_path_factory)


@pytest.fixture(scope="session")
def ecg_bundle(ecg_bundle_path, trust) -> Bundle:
    return load_bundle(ecg_bundle_path, provider="cpu", threads=1, trust=trust)


@pytest.fixture(scope="session")
def breast_bundle(breast_bundle_path, trust) -> Bundle:
    return load_bundle(breast_bundle_path, provider="cpu", threads=1, trust=trust)


@pytest.fixture
def copy_bundle(tmp_path) -> Callable[[Path], Path]:
    """A fresh copy of a bundle folder to damage."""

    def copy(source: Path) -> Path:
        destination = tmp_path / f"copy-{source.name}"
        shutil.copytree(source, destination)
        return destination

    return copy
