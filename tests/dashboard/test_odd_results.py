"""Odd but readable inputs give a page what it can show and say what it cannot — never an exception, never "ok"
over nothing compared."""

from __future__ import annotations

import json

import pytest

from dashboard.data.benchmarks import distribution_frame, rows_frame
from dashboard.data.builds import loro_frame
from dashboard.data.files import DataUnavailableError
from dashboard.monitoring.checks import DriftReport, unjudged_caveat
from dashboard.monitoring.drift import DriftResult, DriftStatus


def test_benchmark_rows_of_the_wrong_type_are_left_out_not_raised():
    assert rows_frame({"rows": "not a list"}).empty and distribution_frame({"rows": "x"}).empty
    frame = rows_frame({"rows": [5, "x", {"engine": "onnxruntime", "variant": "fp32", "latency": "fast",
                                          "throughput": [1, 2], "status": "ok"}]})
    assert len(frame) == 1 and frame["p50_us"].isna().all()
    assert distribution_frame({"rows": [{"status": "ok", "latency": {"quantiles_us": "x"}}]}).empty


@pytest.mark.parametrize("variants", [{"x": "text"}, {"x": {"folds": [7], "pooled": {}}},
                                      {"x": {"folds": [{"counts": 5}], "pooled": {}}}, {"x": {"folds": []}}])
def test_a_leave_one_record_out_file_of_another_shape_is_unavailable_with_the_fix(tmp_path, variants):
    path = tmp_path / "ecg_pvc_loro.json"
    path.write_text(json.dumps({"variants": variants}))
    with pytest.raises(DataUnavailableError, match="make validate-ecg"):
        loro_frame(path)


def test_drift_is_never_ok_over_a_window_it_could_not_compare():
    ok = (DriftResult("confidence", 400, "KS", status=DriftStatus.OK),)
    assert DriftReport("device", None, 400, ok).status is DriftStatus.OK
    caveats = unjudged_caveat(840, 0)
    assert caveats and "none of the 840 records was judged" in caveats[0] and not unjudged_caveat(840, 1)
    assert DriftReport("device", None, 840, ok, caveats=caveats).status is DriftStatus.INSUFFICIENT
    alert = (DriftResult("peak_to_peak", 400, "KS", status=DriftStatus.ALERT),)
    assert DriftReport("device", None, 840, alert, caveats=caveats).status is DriftStatus.ALERT  # still shown
