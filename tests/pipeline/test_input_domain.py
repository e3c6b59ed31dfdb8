"""The build measures each input's domain on the development splits (never the test split), widens it by the
margin, counts the held-out test rows outside, and says what it was measured on; the report shows it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipeline.build.input_domain import domain_line, measure_domain, with_domains
from pipeline.errors import StageError
from pipeline.scenarios.base import DeviceContract
from pipeline.splits import DataSplits, Split
from runtime.contract import DomainScale, InputSpec, Preprocessing, TaskKind
from runtime.features import FeatureKind
from tests.runtime.hand_built import OUTPUTS

TABLE = InputSpec("table", (None, 3), FeatureKind.TABULAR, feature_names=("a", "b", "constant"))
WAVE = InputSpec("wave", (None, 8, 2), FeatureKind.WAVEFORM, sample_rate_hz=100.0)


def splits(train, validation, calibration, test, synthetic=False) -> DataSplits:
    parts = {name: Split(np.asarray(rows, np.float32)) for name, rows in (
        ("train", train), ("validation", validation), ("calibration", calibration), ("test", test))}
    return DataSplits(**parts, class_names=("x", "y"), provenance={"synthetic": synthetic})


def test_a_tabular_domain_is_the_development_range_widened_by_the_margin_and_checked_on_the_test_split():
    train = [[0.0, 10.0, 2.0], [4.0, 20.0, 2.0]]
    validation = [[2.0, 30.0, 2.0]]
    calibration = [[1.0, 15.0, 2.0]]
    test = [[-0.9, 12.0, 2.0], [5.5, 12.0, 2.0], [1.0, 36.0, 2.0], [1.0, 12.0, 2.6], [1.0, 12.0, 2.4]]
    (spec,) = with_domains((TABLE,), splits(train, validation, calibration, test), 0.25)
    domain = spec.domain
    assert domain.low == pytest.approx((-1.0, 5.0, 1.5))  # a: 0..4 ± 1; b: 10..30 ± 5; constant 2 ± 25 % of it
    assert domain.high == pytest.approx((5.0, 35.0, 2.5))
    assert domain.spread_low is None and domain.margin == 0.25
    assert (domain.held_out_rows, domain.held_out_outside) == (5, 3)  # 5.5 in a, 36 in b, 2.6 in constant
    assert domain.basis == "4 development rows (train, validation, calibration splits; real)"
    assert "3 of 5" in domain_line(spec) and "would not classify 60.0%" in domain_line(spec)
    assert domain_line(spec).endswith("Classified only within: a -1 to 5, b 5 to 35, constant 1.5 to 2.5")


def test_the_test_split_never_widens_the_domain():
    train = [[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    (narrow,) = with_domains((TABLE,), splits(train, train, train, [[100.0, 100.0, 1.0]]), 0.0)
    assert narrow.domain.high == (1.0, 1.0, 1.0) and narrow.domain.held_out_outside == 1


def test_a_waveform_domain_bounds_values_and_window_spread_per_channel():
    rng = np.random.default_rng(0)
    development = rng.normal(0.0, 1.0, (40, 8, 2)) * [1.0, 10.0]
    domain = measure_domain(WAVE, development.astype(np.float32), (development[:5] * 3).astype(np.float32), 0.25,
                            "basis")
    spreads = np.ptp(development, axis=1)
    span = spreads.max(axis=0) - spreads.min(axis=0)
    assert domain.spread_high == pytest.approx(tuple(spreads.max(axis=0) + 0.25 * span), rel=1e-5)
    assert domain.spread_low == pytest.approx(tuple(np.maximum(spreads.min(axis=0) - 0.25 * span, 0)), rel=1e-5)
    assert domain.low[1] < domain.low[0] < 0 < domain.high[0] < domain.high[1]
    assert domain.held_out_rows == 5 and domain.held_out_outside >= 1  # three times the amplitude


def test_synthetic_development_data_is_named_so_and_an_input_without_finite_values_gets_no_domain():
    rows = [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]]
    (spec,) = with_domains((TABLE,), splits(rows, rows, rows, rows, synthetic=True), 0.25)
    assert spec.domain.basis.endswith("synthetic)")
    assert measure_domain(TABLE, np.full((3, 3), np.nan, np.float32), np.zeros((0, 3), np.float32), 0.25, "") is None


def test_inputs_stored_by_name_are_measured_each_on_its_own_rows():
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    wave = np.ones((4, 8, 2), np.float32) * np.arange(8, dtype=np.float32)[None, :, None]
    data = DataSplits(*(Split({"table": table, "wave": wave}) for _ in range(4)), class_names=("x", "y"))
    table_spec, wave_spec = with_domains((TABLE, WAVE), data, 0.0)
    assert table_spec.domain.low == (0.0, 1.0, 2.0) and table_spec.domain.high == (9.0, 10.0, 11.0)
    assert wave_spec.domain.low == (0.0, 0.0) and wave_spec.domain.spread_high == (7.0, 7.0)
    assert table_spec.domain.held_out_outside == wave_spec.domain.held_out_outside == 0


def test_a_window_zscore_domain_is_measured_on_the_z_scored_windows():
    rng = np.random.default_rng(1)
    development = rng.normal(0.0, 1.0, (30, 8, 2)).astype(np.float32)
    plain = measure_domain(WAVE, development, development * 1000 + 7, 0.25, "basis")
    scaled = measure_domain(WAVE, development, development * 1000 + 7, 0.25, "basis", DomainScale.WINDOW_ZSCORE)
    assert plain.held_out_outside == 30  # as fed, other units leave the domain
    assert scaled.held_out_outside == 0 and scaled.scale is DomainScale.WINDOW_ZSCORE  # z-scored, they do not
    assert "z-scored first" in domain_line(replace(WAVE, domain=scaled))


def test_a_device_contract_with_a_scale_per_input_or_none_is_accepted_and_any_other_count_refused():
    output, preprocessing = OUTPUTS[TaskKind.MULTICLASS], Preprocessing("none", "rows as they are")
    assert DeviceContract((TABLE, WAVE), output, preprocessing).domain_scales == ()
    DeviceContract((TABLE, WAVE), output, preprocessing, (DomainScale.AS_FED, DomainScale.WINDOW_ZSCORE))
    with pytest.raises(StageError, match="1 domain scale"):
        DeviceContract((TABLE, WAVE), output, preprocessing, (DomainScale.WINDOW_ZSCORE,))
