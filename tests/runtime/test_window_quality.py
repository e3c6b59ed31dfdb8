"""The shared window functions training and the device call: which windows are flagged, and why."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from runtime.contract import TaskKind, WindowConfig
from runtime.telemetry.records import KNOWN_QUALITY_FLAGS
from runtime.windows import MIN_CLIPPED_SAMPLES, WindowFlag, WindowStream, model_windows, window_quality
from tests.runtime.window_bundles import build_window_bundle, load, synthetic_signal, window_spec

CONFIG = WindowConfig(hop_s=1.0)


def test_a_short_clean_window_is_not_clipped():
    window = np.sin(np.linspace(0.0, 3.0, 16))[None, :, None]  # one sample at its max and one at its min: 6 %
    assert window_quality(window, CONFIG) == ((),)
    saturated = window.copy()
    saturated[0, -MIN_CLIPPED_SAMPLES:, 0] = saturated.max() + 1.0  # the rail held for three samples
    assert window_quality(saturated, CONFIG) == ((WindowFlag.CLIPPING.value,),)


def test_flags_are_exclusive_and_per_window():
    clean = synthetic_signal(1.0, 64.0)[:32]
    windows = np.stack([clean, np.full(32, 5.0), np.where(np.arange(32) == 3, np.nan, clean),
                        np.clip(clean, None, np.percentile(clean, 80))])[:, :, None]
    assert window_quality(windows, CONFIG) == ((), ("flat_line",), ("non_finite",), ("clipped",))


def test_one_sample_windows_and_huge_values_raise_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert window_quality(np.ones((2, 1, 1)), CONFIG) == (("flat_line",), ("flat_line",))
        assert window_quality(np.array([[[1e308], [-1e308], [1.0]]]), CONFIG) == ((),)


def test_model_windows_flags_inputs_beyond_float32():
    spec = window_spec(window=8, hop_s=8 / 64, normalization="none")
    signal = np.tile([1.0, 2.0, 3.0, 4.0], 8)
    signal[12] = 1e39
    cut = model_windows(signal, spec)
    assert cut.flags == ((), ("non_finite",), (), ()) and cut.judged.tolist() == [True, False, True, True]


def test_a_window_whose_spread_overflows_is_flagged_not_fed_zeros():
    spec = window_spec(window=8, hop_s=8 / 64)  # z-score
    rng = np.random.default_rng(3)
    signal = rng.normal(size=32)
    signal[8:16] = rng.normal(size=8) * 1e300  # finite samples whose standard deviation is beyond float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cut = model_windows(signal, spec)
    assert cut.flags == ((), ("non_finite",), (), ()) and cut.judged.tolist() == [True, False, True, True]
    assert np.isfinite(cut.inputs[[0, 2, 3]]).all()


def test_window_flags_are_in_the_telemetry_vocabulary():
    assert {flag.value for flag in WindowFlag} <= KNOWN_QUALITY_FLAGS


@pytest.mark.parametrize("rate", [64.0, 100.0])
def test_a_hop_longer_than_the_window_skips_signal_the_same_way_in_any_chunking(tmp_path, rate):
    spec = window_spec(window=16, hop_s=0.75)  # 16-sample windows every 48 samples
    bundle = load(build_window_bundle(tmp_path / "sparse", TaskKind.BINARY, spec))
    signal = synthetic_signal(6.0, rate, seed=11)
    runs = []
    for chunk in (1, 7, 1000):
        stream = WindowStream(bundle, rate)
        events = [event for start in range(0, len(signal), chunk) for event in stream.feed(signal[start:start + chunk])]
        runs.append([(event.index, event.start_s, event.result) for event in events + stream.flush()
                     if event.kind == "window"])
    assert runs[0] == runs[1] == runs[2]
    assert [start for _, start, _ in runs[0]] == pytest.approx([0.75 * index for index in range(8)])
