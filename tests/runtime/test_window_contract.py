"""The signal_window contract and the shared window functions training and the device both call."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.contract import Derivation, InputSpec, ManifestError, WindowConfig, WindowNormalization
from runtime.features import FeatureKind
from runtime.windows import WindowFlag, cut_windows, model_windows, normalize_windows, window_starts


def window_input(samples: int = 100, channels: int | None = 1, hop_s: float = 0.5, rate: float = 100.0,
                 **config) -> InputSpec:
    shape = (None, samples) if channels is None else (None, samples, channels)
    return InputSpec("signal", shape, FeatureKind.WAVEFORM, sample_rate_hz=rate,
                     derived=Derivation.signal_window(WindowConfig(hop_s=hop_s, **config)))


def test_a_signal_window_input_round_trips_through_the_manifest_form():
    spec = window_input(channels=2, normalization=WindowNormalization.NONE)
    assert InputSpec.from_dict(spec.to_dict()) == spec
    assert (spec.window_samples, spec.hop_samples, spec.channels, spec.is_signal_window) == (100, 50, 2, True)


@pytest.mark.parametrize("bad, field", [
    ({"hop_s": 0.0}, "hop_s"),
    ({"hop_s": 0.5, "flat_fraction": 1.5}, "flat_fraction"),
    ({"hop_s": 0.5, "clipping_fraction": 0}, "clipping_fraction"),
    ({"hop_s": 0.5, "normalization": "minmax"}, "normalization"),
])
def test_bad_window_settings_are_refused_by_name(bad, field):
    with pytest.raises(ManifestError, match=field):
        WindowConfig(**bad)


def test_a_signal_window_needs_a_waveform_without_a_beat_window_and_a_hop_of_one_sample():
    config = WindowConfig(hop_s=0.5)
    with pytest.raises(ManifestError, match="beat window"):
        InputSpec("signal", (None, 100, 1), FeatureKind.WAVEFORM, sample_rate_hz=100.0, window_before_s=0.5,
                  window_after_s=0.5, derived=Derivation.signal_window(config))
    with pytest.raises(ManifestError, match="hop_s"):
        window_input(hop_s=0.001)
    with pytest.raises(ManifestError, match="window"):
        Derivation("signal_window")  # no WindowConfig


def test_windows_start_every_hop_and_only_whole_windows_are_cut():
    assert window_starts(10, 4, 3).tolist() == [0, 3, 6]
    assert window_starts(3, 4, 1).size == 0
    signal = np.arange(20.0).reshape(10, 2)
    windows = cut_windows(signal, 4, 3)
    assert windows.shape == (3, 4, 2)
    assert windows[1, :, 1].tolist() == [7.0, 9.0, 11.0, 13.0]
    assert cut_windows(np.arange(3.0), 4, 1).shape == (0, 4, 1)


def test_zscore_is_per_window_and_channel_and_none_keeps_units():
    windows = np.stack([np.linspace(0, 1, 50), np.full(50, 5.0)], axis=1)[None]  # one window, two channels
    scored = normalize_windows(windows, WindowConfig(hop_s=1.0))
    assert scored.dtype == np.float32
    assert abs(scored[0, :, 0].mean()) < 1e-6 and abs(scored[0, :, 0].std() - 1) < 1e-5
    assert np.all(scored[0, :, 1] == 0)  # a constant channel is 0, never a division by zero
    kept = normalize_windows(windows, WindowConfig(hop_s=1.0, normalization=WindowNormalization.NONE))
    assert np.array_equal(kept, windows.astype(np.float32))


def test_quality_flags_gaps_flat_lines_and_clipping_and_leave_a_clean_signal_alone():
    rate, spec = 100.0, window_input(samples=100, hop_s=1.0)
    time = np.arange(600) / rate
    signal = np.sin(2 * np.pi * 1.3 * time) + 0.05 * np.random.default_rng(0).standard_normal(time.size)
    signal[150] = np.nan  # window 1: a gap
    signal[200:300] = 2.0  # window 2: the lead is off (flat)
    signal[300:400] = np.clip(signal[300:400] * 4, -1.5, 1.5)  # window 3: the amplifier saturates
    windows = model_windows(signal * 1000 + 32768, spec)  # ADC counts: the flags do not depend on units
    assert windows.inputs.shape == (6, 100, 1) and windows.starts.tolist() == [0, 100, 200, 300, 400, 500]
    assert windows.flags == ((), (WindowFlag.NON_FINITE,), (WindowFlag.FLAT_LINE,), (WindowFlag.CLIPPING,), (), ())
    assert windows.judged.tolist() == [True, False, False, False, True, True]


def test_model_windows_shapes_follow_the_input_and_refuse_another_channel_count():
    assert model_windows(np.random.default_rng(1).standard_normal(250), window_input(channels=None)).inputs.shape \
        == (4, 100)
    with pytest.raises(ValueError, match="channels"):
        model_windows(np.zeros((250, 3)), window_input(channels=2))
