"""Execution-provider choice, the session factory and the shared summary features."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.bundle import MODEL_NAME
from runtime.features import FeatureKind, summary_features
from runtime.session import (
    CPU_PROVIDER,
    PROVIDER_NAMES,
    ProviderError,
    available_providers,
    full_provider_name,
    onnxruntime_errors,
    open_session,
    resolve_provider,
    short_provider_name,
)


def test_best_available_provider_is_installed_and_cpu_is_always_there():
    assert "CPUExecutionProvider" in available_providers()
    assert resolve_provider(None) in available_providers()
    assert resolve_provider("cpu") == "CPUExecutionProvider"


def test_missing_provider_names_the_installed_ones():
    if "TensorrtExecutionProvider" in available_providers():
        pytest.skip("TensorRT is installed here")
    with pytest.raises(ProviderError) as error:
        resolve_provider("tensorrt")
    assert "CPUExecutionProvider" in str(error.value) and "onnxruntime-gpu" in str(error.value)


def test_provider_names_map_both_ways():
    assert list(PROVIDER_NAMES) == ["cpu", "cuda", "tensorrt"]  # the benchmark's default order
    assert full_provider_name("CUDA") == "CUDAExecutionProvider" and full_provider_name("cpu") == CPU_PROVIDER
    assert full_provider_name("OpenVINOExecutionProvider") == "OpenVINOExecutionProvider"  # passed through
    assert [short_provider_name(name) for name in PROVIDER_NAMES.values()] == ["CPU", "CUDA", "Tensorrt"]


def test_open_session_keeps_the_given_options_and_raises_onnxruntime_errors(breast_bundle_path, tmp_path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = open_session(breast_bundle_path / MODEL_NAME, "cpu", options)
    assert session.get_providers() == [CPU_PROVIDER]
    assert session.get_session_options().intra_op_num_threads == 1
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(onnxruntime_errors()):
        open_session(broken)


def test_waveform_features_match_numpy_definitions_and_ignore_gain_and_offset():
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(5, 100, 1))
    features = summary_features(windows, FeatureKind.WAVEFORM)
    flat = windows[:, :, 0]
    z = (flat - flat.mean(axis=1, keepdims=True)) / flat.std(axis=1, keepdims=True)
    assert np.allclose(features["peak_to_peak"], np.ptp(z, axis=1))
    assert np.allclose(features["difference_rms"], np.sqrt((np.diff(z, axis=1) ** 2).mean(axis=1)))
    assert np.allclose(features["kurtosis"], (z**4).mean(axis=1))
    rescaled = summary_features(windows * 800.0 + 32_000.0, FeatureKind.WAVEFORM)  # ADC counts
    assert all(np.allclose(features[name], rescaled[name]) for name in features)


def test_flat_window_gives_finite_features():
    features = summary_features(np.full((2, 50), 7.0), FeatureKind.WAVEFORM)
    assert all(np.all(np.isfinite(values)) for values in features.values())


def test_tabular_features_are_the_named_columns():
    rows = np.arange(12, dtype=float).reshape(4, 3)
    features = summary_features(rows, FeatureKind.TABULAR, ("a", "b", "c"))
    assert list(features) == ["a", "b", "c"] and np.array_equal(features["b"], rows[:, 1])


def test_a_thread_count_onnxruntime_cannot_be_given_is_refused_with_the_limit():
    from runtime.session import MAX_THREADS, SessionSettings, SessionSettingsError

    assert SessionSettings(intra_op_threads=MAX_THREADS).intra_op_threads == MAX_THREADS
    for value in (MAX_THREADS + 1, 99_999_999_999, -1, 2.5, True):
        with pytest.raises(SessionSettingsError, match=f"from 0 .* to {MAX_THREADS}"):
            SessionSettings(intra_op_threads=value)
    from runtime.__main__ import build_parser

    with pytest.raises(SystemExit) as exit_code:
        build_parser().parse_args(["bundle", "--input", "x.csv", "--threads", "100000"])
    assert exit_code.value.code == 2  # a usage error before anything is opened
