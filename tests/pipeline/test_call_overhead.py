"""The per-call overhead benchmark: real sessions on an Identity graph, both runtimes, written atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")


def test_identity_graph_copies_its_input(tmp_path):
    import onnxruntime

    from pipeline.benchmark.call_overhead import identity_onnx

    path = identity_onnx(tmp_path / "identity.onnx", 7)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    features = np.arange(7, dtype=np.float32).reshape(1, 7)
    np.testing.assert_array_equal(session.run(None, {"features": features})[0], features)


def test_measures_every_runtime_and_writes_the_report(tmp_path, monkeypatch):
    from pipeline.benchmark import call_overhead
    from pipeline.benchmark.statistics import QUICK_STABILITY

    monkeypatch.setattr(call_overhead, "StabilityConfig", lambda: QUICK_STABILITY)
    output = tmp_path / "results" / "call_overhead.json"
    assert call_overhead.main(["--width", "4", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    figures = report["microseconds_per_call"]
    assert set(figures) >= {"onnxruntime io-binding", "onnxruntime run"}
    assert any(name.startswith("litert") for name in figures) and len(figures) == 3
    assert all(value > 0 for value in figures.values())
    assert all(report["statistics"][name]["iterations"] > 0 for name in figures)
    assert "(1, 4)" in report["what"] and report["machine"]


def test_refuses_a_width_below_one(capsys):
    from pipeline.benchmark.call_overhead import main

    with pytest.raises(SystemExit):
        main(["--width", "0"])
    assert "expected a positive number of features" in capsys.readouterr().err


def test_a_runtime_that_answers_wrongly_is_reported_in_one_line(tmp_path, monkeypatch, capsys):
    from pipeline.benchmark import call_overhead
    from pipeline.benchmark.statistics import QUICK_STABILITY

    def broken_tflite(path, width):  # a LiteRT model that does not copy its input: a negation
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec([1, width], tf.float32, name="features")])
        def negated(features):
            return -features

        holder = tf.Module()
        holder.negated = negated
        converter = tf.lite.TFLiteConverter.from_concrete_functions([negated.get_concrete_function()], holder)
        path.write_bytes(converter.convert())
        return path

    monkeypatch.setattr(call_overhead, "StabilityConfig", lambda: QUICK_STABILITY)
    monkeypatch.setattr(call_overhead, "identity_tflite", broken_tflite)
    output = tmp_path / "call_overhead.json"
    assert call_overhead.main(["--output", str(output)]) == 1
    error = capsys.readouterr().err
    assert "the LiteRT identity model did not return its input" in error and "Traceback" not in error
    assert not output.exists()
