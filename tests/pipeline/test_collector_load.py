"""The collector load test, small: a real PostgreSQL server and collector started by the benchmark itself, a few
seconds of uploads; every acknowledged aggregate stored once and counted in its hourly rollup, and the sustained
rate (load plus the rollup job's catch-up) no higher than the accepted one (no speed asserted)."""

from __future__ import annotations

from pipeline.benchmark.collector_load import LoadConfig, measure_collector_load, render_markdown
from tests.dashboard.store_locations import postgres_binaries


def test_a_short_load_stores_every_acknowledged_aggregate_once_and_rolls_it_up(ecg_build, tmp_path):
    postgres_binaries()  # installed first when missing (as root), else the test is skipped
    _, outcome = ecg_build
    config = LoadConfig(devices=12, duration_s=2.0, clients=1, connections=2, batch=4, collector_workers=1,
                        bundle=outcome.bundle_directory, bundles_folder=outcome.bundle_directory.parent)
    document = measure_collector_load(config, tmp_path / "load")
    check, rollups = document["verification"], document["rollups"]
    assert document["accepted_records"] > 0 and document["errors"] == 0
    assert check["acknowledged"] == check["stored"] == document["accepted_records"]
    assert (check["lost"], check["duplicated"]) == (0, 0)
    assert rollups["left"] == 0 and rollups["rollups_count_every_aggregate"]
    assert rollups["seconds_after_load"] >= 0
    assert 0 < document["sustained_records_per_s"] <= document["accepted_records_per_s"]
    assert document["meets_target"] == (document["sustained_records_per_s"] >= document["target_records_per_s"])
    text = render_markdown(document)
    assert "sustained aggregates/s" in text and f"{document['sustained_records_per_s']:,.0f}" in text
    assert document["load"].startswith("SYNTHETIC") and "a synthetic load" in text  # one real minute, replicated
