"""The running beat template: streaming equals batch, causal, gated by prematurity, gain-invariant."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.ecg.template import RunningTemplate, TemplateConfig, TemplateError, template_residuals


def beats(count: int, seed: int = 0) -> np.ndarray:
    generator = np.random.default_rng(seed)
    time = np.linspace(-1, 1, 64)
    normal = np.exp(-(time / 0.15) ** 2)
    return (normal + 0.02 * generator.standard_normal((count, time.size))).astype(np.float32)


def test_streaming_equals_batch_exactly_with_and_without_the_gate():
    windows = beats(120)
    ratios = np.random.default_rng(1).uniform(0.5, 1.4, windows.shape[0])
    for config in (TemplateConfig(history_beats=30), TemplateConfig(history_beats=7, minimum_pre_to_local=0.9)):
        template = RunningTemplate(config)
        streamed = np.stack([template.push(window, ratio) for window, ratio in zip(windows, ratios)])
        np.testing.assert_array_equal(streamed, template_residuals(windows, ratios, config))


def test_first_beat_has_no_template_and_residuals_are_causal():
    windows = beats(40)
    residuals = template_residuals(windows)
    assert np.all(residuals[0] == 0)
    changed = windows.copy()
    changed[30:] *= -1  # later beats must not change earlier residuals
    np.testing.assert_array_equal(template_residuals(changed)[:30], residuals[:30])


def test_an_ectopic_beat_stands_out_and_gain_does_not_matter():
    windows = beats(50)
    ectopic = np.roll(windows[0], 10) * 3
    windows[40] = ectopic
    residuals = template_residuals(windows)
    size = np.sqrt((residuals**2).mean(axis=1))
    assert size[40] > 5 * np.median(size[1:40])
    np.testing.assert_allclose(template_residuals(windows * 200 + 1024), residuals, atol=1e-4)


def test_premature_beats_stay_out_of_a_gated_template():
    windows = beats(60)
    ectopic = -windows[0]
    windows[1::2] = ectopic  # bigeminy: every other beat ectopic and premature
    ratios = np.where(np.arange(60) % 2 == 1, 0.6, 1.4)
    plain = np.sqrt((template_residuals(windows, ratios) ** 2).mean(axis=1))
    gated = np.sqrt((template_residuals(windows, ratios, TemplateConfig(minimum_pre_to_local=0.9)) ** 2).mean(axis=1))
    assert np.median(gated[2::2]) < 0.2  # normal beats match a template of normal beats
    assert np.median(gated[3::2]) > 1.5  # ectopic beats differ from it
    assert np.median(plain[2::2]) > 0.5  # the plain template is a blend: normal beats differ from it too


def test_bad_windows_are_refused():
    with pytest.raises(TemplateError, match="one window per row"):
        template_residuals(np.zeros(10))
    with pytest.raises(TemplateError, match="one ratio per window"):
        template_residuals(np.zeros((3, 8)), np.ones(2))
