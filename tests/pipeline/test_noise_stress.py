"""``edgemed noise-stress``: real MIT-BIH ECG with real PLUX noise added (the NST's method), check off and on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.benchmark.noise_mixtures import (
    NOISE_SOURCES,
    StressConfig,
    mixed,
    noise_signal,
    noisy_mask,
    signal_power,
)
from pipeline.benchmark.noise_stress import NoiseStressConfig, evaluate_noise_stress
from pipeline.cli import main
from pipeline.scenarios.ecg_pvc.mitdb import load_records
from pipeline.validation.real_ecg import signal_samples_folder
from tests.runtime.conftest import tiny_bundle

pytestmark = pytest.mark.skipif(signal_samples_folder() is None,
                                reason="biosignalsnotebooks is not installed (make setup installs it)")


def test_the_mixture_has_the_asked_snr_inside_the_noisy_stretches_only():
    record = load_records(("100",))[0]
    noise = noise_signal(NOISE_SOURCES[0])
    signal, mask = mixed(record, noise, 6.0)
    assert mask.tolist() == noisy_mask(record.signal_mv.size).tolist()
    assert not mask[: 300 * 360].any() and mask[300 * 360 : 420 * 360].all() and not mask[420 * 360 : 540 * 360].any()
    added = signal.astype(np.float64) - record.signal_mv.astype(np.float64)
    ramp = 360  # 1-s ramps at the edges
    inside = added[300 * 360 + ramp : 420 * 360 - ramp]
    assert 10 * np.log10(signal_power(record) / np.mean(inside**2)) == pytest.approx(6.0, abs=0.3)
    assert np.abs(added[~mask][: 299 * 360]).max() == 0.0  # the first 5 minutes are the record as it is
    assert StressConfig().noisy_s == StressConfig().quiet_s == 120.0


def test_the_check_turns_silent_pvc_misses_into_flags(tmp_path_factory, tmp_path):
    bundle = tiny_bundle("ecg-pvc", tmp_path_factory)
    config = NoiseStressConfig(snrs_db=(6.0,), records=("119",), sources=("muscle",), real_recordings=False)
    report = evaluate_noise_stress(bundle, config)
    rows = {(row["noise"], row["check"]): row for row in report["conditions"]}
    assert set(rows) == {("none", False), ("none", True), ("muscle", False), ("muscle", True)}
    off, on = rows["muscle", False]["noisy"], rows["muscle", True]["noisy"]
    assert off["counts"]["reference_beats"] == on["counts"]["reference_beats"] > 500
    assert off["classed_share"] > 0.9 > 0.2 > on["classed_share"]  # without the check it classes in the noise …
    assert on["counts"]["flagged_detections"] > 0.8 * on["counts"]["reference_beats"]  # … with it, flags
    assert on["counts"]["v_silently_missed"] <= off["counts"]["v_silently_missed"]
    clean_off, clean_on = rows["none", False]["clean"], rows["none", True]["clean"]
    # no noise added: the check costs (almost) nothing
    assert clean_on["counts"]["classed_beats"] >= 0.99 * clean_off["counts"]["classed_beats"]
    assert report["measured_on"]["synthetic"] is False and "MIT-BIH" in report["measured_on"]["ecg"]


def test_the_command_writes_the_report_and_the_plot(tmp_path_factory, tmp_path):
    bundle = tiny_bundle("ecg-pvc", tmp_path_factory)
    output = tmp_path / "noise.json"
    result = CliRunner().invoke(main, ["noise-stress", str(bundle), "--output", str(output), "--snr", "0",
                                       "--records", "100"])
    assert result.exit_code == 0, result.output
    report = json.loads(output.read_text())
    assert {row["noise"] for row in report["conditions"]} == {"none", *(source.name for source in NOISE_SOURCES)}
    assert {row["group"] for row in report["real_recordings"]} == {"ecg", "not_ecg"}
    assert output.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "muscle 0 dB, check on" in result.output
    refused = CliRunner().invoke(main, ["noise-stress", str(bundle), "--output", str(output), "--records", "999"])
    assert refused.exit_code == 2 and "vendored subset" in refused.output
