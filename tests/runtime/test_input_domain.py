"""The input domain a bundle declares: the contract refuses a malformed one, and every inference path — the row
runner, the ECG stream's beats, the windowed stream — flags an input outside it ``out_of_domain`` and gives it no
class, while inputs inside get exactly the answers a bundle without a domain gives."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from runtime.bundle import load_bundle
from runtime.contract import DomainScale, InputDomain, InputSpec, ManifestError, TaskKind
from runtime.domain import outside_columns, outside_names, outside_rows
from runtime.ecg import EcgStream
from runtime.events import BeatEvent
from runtime.results import OUT_OF_DOMAIN, UNJUDGED_FLAGS
from runtime.rows import predict_arrays
from runtime.telemetry.records import KNOWN_QUALITY_FLAGS
from runtime.windows import WindowStream
from tests.runtime.conftest import synthetic_ecg
from tests.runtime.hand_built import OUTPUTS, TABULAR, build_bundle, write_manifest
from tests.runtime.pvc_bundle import OUTPUT as PVC_OUTPUT
from tests.runtime.pvc_bundle import RATE as ECG_RATE
from tests.runtime.pvc_bundle import TWO_INPUTS, UNSIGNED, build_pvc_bundle
from tests.runtime.window_bundles import OUTPUTS as WINDOW_OUTPUTS
from tests.runtime.window_bundles import RATE, build_window_bundle, synthetic_signal, window_spec

ROWS = np.array([[2.0, 0.0, -1.0], [-0.5, 3.0, 0.0], [-1.0, 0.5, 2.5]], np.float32)
TABLE_DOMAIN = InputDomain(low=(-3.0, -3.0, -3.0), high=(3.0, 3.0, 3.0), basis="hand-made")


def redeclared(folder: Path, scenario: str, inputs: tuple[InputSpec, ...], output) -> Path:
    """``folder``'s bundle with its manifest rewritten to declare ``inputs`` (their domains)."""
    (folder / "manifest.json").unlink()
    write_manifest(folder, scenario, inputs, output)
    return folder


def load(folder: Path):
    return load_bundle(folder, provider="cpu", threads=1, trust=UNSIGNED)


# -- the contract ---------------------------------------------------------------------------------------------------


def test_a_domain_round_trips_through_the_manifest_and_an_input_without_one_reads_as_before():
    spec = replace(TABULAR, domain=replace(TABLE_DOMAIN, held_out_rows=10, held_out_outside=1))
    written = spec.to_dict()
    assert written["domain"]["low"] == [-3.0, -3.0, -3.0] and written["domain"]["held_out_outside"] == 1
    assert InputSpec.from_dict(json.loads(json.dumps(written))) == spec
    assert "domain" not in TABULAR.to_dict() and InputSpec.from_dict(TABULAR.to_dict()).domain is None


@pytest.mark.parametrize(("change", "field"), [
    ({"low": [0.0, 0.0], "high": [1.0, 1.0]}, "domain.low"),  # two columns for three features
    ({"low": [0.0, 0.0]}, "high"),  # fewer lows than highs
    ({"high": [1.0, -4.0, 1.0]}, "high"),  # below low
    ({"low": [0.0, True, 0.0]}, "low"),  # a boolean is not a number
    ({"spread_low": [0.0], "spread_high": [1.0]}, "domain.spread_low"),  # spreads on a tabular input
    ({"spread_low": [0.0, 0.0, 0.0]}, "spread_high"),  # one spread bound only
    ({"margin": -0.1}, "margin"),
    ({"held_out_outside": 11}, "held_out_outside"),  # more than were checked
    ({"note": "x"}, "note"),  # not a field
])
def test_a_malformed_domain_is_refused_naming_its_field(change, field):
    written = replace(TABULAR, domain=replace(TABLE_DOMAIN, held_out_rows=10)).to_dict()
    written["domain"] |= change
    with pytest.raises(ManifestError) as refused:
        InputSpec.from_dict(written)
    assert refused.value.field.endswith(field)


def test_a_waveform_domain_needs_one_spread_range_per_channel():
    spec = window_spec(channels=2)
    with pytest.raises(ManifestError, match="spread"):
        replace(spec, domain=InputDomain(low=(-1.0, -1.0), high=(1.0, 1.0)))
    with pytest.raises(ManifestError, match="column"):
        replace(spec, domain=InputDomain(low=(-1.0,), high=(1.0,), spread_low=(0.0,), spread_high=(2.0,)))


# -- the check ------------------------------------------------------------------------------------------------------


def test_rows_outside_are_found_per_column_and_non_finite_values_are_left_to_the_finite_check():
    spec = replace(TABULAR, domain=TABLE_DOMAIN)
    rows = np.array([[0.0, 0.0, 0.0], [3.0, -3.0, 3.0], [3.1, 0.0, 0.0], [0.0, 0.0, -30.0], [np.nan, 0.0, 0.0]],
                    np.float32)
    assert outside_rows(spec, rows).tolist() == [False, False, True, True, False]
    assert outside_columns(spec, rows)[3].tolist() == [False, False, True]
    assert outside_names((spec,), {spec.name: rows})[2:4] == [(TABULAR.feature_names[0],), (TABULAR.feature_names[2],)]
    assert not outside_rows(TABULAR, rows * 1e6).any()  # no domain: never outside


def test_a_waveform_window_is_outside_by_its_values_or_by_its_spread_per_channel():
    spec = replace(window_spec(channels=2), domain=InputDomain(low=(-1.0, -5.0), high=(1.0, 5.0),
                                                               spread_low=(0.5, 0.0), spread_high=(2.0, 10.0)))
    samples = spec.sample_shape[0]
    wave = np.sin(np.linspace(0, 6, samples)).astype(np.float32)  # spread about 2 on channel 0
    inside = np.stack([0.9 * wave, 4 * wave], axis=1)
    windows = np.stack([inside, inside * [1.5, 1.0], inside * [0.1, 1.0], inside * [1.0, 1.2]])
    assert outside_rows(spec, windows.astype(np.float32)).tolist() == [False, True, True, False]
    assert outside_names((spec,), {spec.name: windows})[1] == ("signal[0]",)


def test_out_of_domain_is_an_unjudged_flag_telemetry_knows():
    assert OUT_OF_DOMAIN in UNJUDGED_FLAGS and OUT_OF_DOMAIN in KNOWN_QUALITY_FLAGS


# -- every inference path --------------------------------------------------------------------------------------------


def test_the_row_runner_gives_no_class_to_a_row_outside_and_the_same_answers_inside(tmp_path):
    plain = load(build_bundle(tmp_path / "plain", TaskKind.MULTICLASS))
    folder = build_bundle(tmp_path / "domain", TaskKind.MULTICLASS)
    guarded = load(redeclared(folder, "multiclass-test", (replace(TABULAR, domain=TABLE_DOMAIN),),
                              OUTPUTS[TaskKind.MULTICLASS]))
    rows = np.concatenate([ROWS, ROWS * 1000, ROWS / 1000 + [[0, 0, 5]]])  # other units; one column beyond
    before = list(predict_arrays(plain, {"x": rows}))
    after = list(predict_arrays(guarded, {"x": rows}))
    assert all(prediction.judged for prediction in before)  # without a domain: a class for every row
    for inside, checked in zip(before[:3], after[:3], strict=True):
        assert checked.result == inside.result and checked.flags == ()
    for checked in after[3:]:
        assert checked.result is None and checked.flags == (OUT_OF_DOMAIN,)
        assert checked.to_dict()["out_of_domain"] and "class" not in checked.to_dict()
    assert after[6].out_of_domain == (TABULAR.feature_names[2],)  # only the shifted column


def test_the_ecg_stream_gives_no_class_to_a_beat_whose_derived_inputs_leave_the_domain(tmp_path):
    plain = load(build_pvc_bundle(tmp_path / "plain", TWO_INPUTS))
    signal, _ = synthetic_ecg(120.0, heart_rate=72.0, seed=3)
    before = [event for event in _streamed(plain, signal) if isinstance(event, BeatEvent)]
    classified = [event for event in before if event.beat_class is not None]
    assert len(classified) > 60
    # a domain on the RR features whose pre-RR ceiling is the median pre-RR of the classified beats
    residual, rr = TWO_INPUTS
    pre_rr = np.array([event.pre_rr_ms / 1000 for event in classified if event.pre_rr_ms is not None])
    ceiling = float(np.median(pre_rr))
    columns = len(rr.feature_names)
    high = tuple(ceiling if name == "pre_rr_s" else 1e6 for name in rr.feature_names)
    inputs = (residual, replace(rr, domain=InputDomain(low=(-1e6,) * columns, high=high)))
    guarded = load(redeclared(build_pvc_bundle(tmp_path / "domain", TWO_INPUTS), "pvc-stream-test", inputs,
                              PVC_OUTPUT))
    after = [event for event in _streamed(guarded, signal) if isinstance(event, BeatEvent)]
    assert [event.time_s for event in after] == [event.time_s for event in before]
    flagged = [event for event in after if OUT_OF_DOMAIN in event.quality_flags]
    assert 0 < len(flagged) < len(classified)
    assert all(event.beat_class is None and event.probability is None for event in flagged)
    for old, new in zip(before, after, strict=True):
        if OUT_OF_DOMAIN not in new.quality_flags:
            assert (new.beat_class, new.probability) == (old.beat_class, old.probability)
        elif old.beat_class is not None:
            assert old.pre_rr_ms / 1000 > ceiling - 1e-3


def _streamed(bundle, signal, chunk=3600):
    stream = EcgStream(bundle, ECG_RATE)
    events = []
    for start in range(0, signal.size, chunk):
        events += stream.feed(signal[start : start + chunk])
    return events + stream.flush()


def test_the_window_stream_gives_no_result_to_windows_outside_and_the_same_results_inside(tmp_path):
    spec = window_spec(normalization="none")  # the model takes the signal's own units: a gain error reaches it
    signal = synthetic_signal(20.0, seed=4)
    low, high, spread = float(signal.min()), float(signal.max()), float(np.ptp(signal))
    domain = InputDomain(low=(low - 0.25 * (high - low),), high=(high + 0.25 * (high - low),), spread_low=(0.0,),
                         spread_high=(1.25 * spread,))
    plain = load(build_window_bundle(tmp_path / "plain", TaskKind.MULTICLASS, spec))
    folder = build_window_bundle(tmp_path / "domain", TaskKind.MULTICLASS, spec)
    guarded = load(redeclared(folder, "multiclass-window-test", (replace(spec, domain=domain),),
                              WINDOW_OUTPUTS[TaskKind.MULTICLASS]))
    for scale in (1.0, 100.0):  # the same signal, and the same signal in units 100 times smaller
        before, after = (_windows(bundle, signal * scale) for bundle in (plain, guarded))
        assert len(after) == len(before) > 10 and all(event.result is not None for event in before)
        if scale == 1.0:
            assert [event.result for event in after] == [event.result for event in before]
        else:
            assert all(event.result is None and event.quality_flags == (OUT_OF_DOMAIN,) for event in after)


def _windows(bundle, signal):
    stream = WindowStream(bundle, RATE)
    return [event for event in stream.feed(signal) + stream.flush() if event.kind == "window"]


def test_a_window_zscore_domain_ignores_units_and_offset_but_not_the_window_shape():
    spec = replace(window_spec(), domain=InputDomain(low=(-3.0,), high=(3.0,), spread_low=(2.0,), spread_high=(6.0,),
                                                     scale=DomainScale.WINDOW_ZSCORE))
    samples = spec.sample_shape[0]
    sine = np.sin(np.linspace(0, 4 * np.pi, samples))  # z-scored: extremes ±1.41, spread 2.83
    spike = np.zeros(samples)
    spike[samples // 2] = 1.0  # one sample far out: extremes 5.5 standard deviations from the mean
    windows = np.stack([sine, 1000 * sine + 2000, 1e-3 * sine - 5, spike]).astype(np.float32)
    assert outside_rows(spec, windows).tolist() == [False, False, False, True]
    with pytest.raises(ManifestError, match="as_fed"):
        replace(TABULAR, domain=replace(TABLE_DOMAIN, scale=DomainScale.WINDOW_ZSCORE))
