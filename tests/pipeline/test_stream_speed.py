"""The real-time-factor benchmark runs the real stream path and reports a breakdown (no speed asserted)."""

from __future__ import annotations

from pipeline.benchmark.stream_speed import StreamSpeedConfig, measure_stream_speed


def test_stream_speed_report_on_a_short_recording(ecg_build):
    _, outcome = ecg_build
    config = StreamSpeedConfig(hours=0.02, profiled_hours=0.01)
    report = measure_stream_speed(outcome.bundle_directory, config)
    assert report["recording_s"] == 0.02 * 3600
    assert report["beats"] > 60  # ~72 bpm over 72 s
    assert report["real_time_factor"] > 0 and report["wall_s"] > 0
    shares = report["time_share_by_stage"]
    assert {"inference", "detection", "telemetry"} <= set(shares)
    assert abs(sum(shares.values()) - 1.0) < 0.01
