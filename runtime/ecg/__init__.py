"""Single-lead ECG on the device: resampling, quality checks, R-peak detection, beat classification.

numpy + onnxruntime + standard library only, like the rest of ``runtime``.
"""

from runtime.ecg.beat_inputs import BeatTrace, StreamInputs, declares_stream_inputs, stream_inputs
from runtime.ecg.decisions import DetectorConfig
from runtime.ecg.quality import QualityConfig, QualityFlag
from runtime.ecg.resample import ResamplerConfig, StreamingResampler
from runtime.ecg.rpeaks import RPeakDetector, detect_beats, detect_r_peaks, refine_peaks
from runtime.ecg.stream import RECORDING_CONFIG, EcgStream, SignalError, StreamClosedError, StreamConfig

__all__ = [
    "RECORDING_CONFIG",
    "BeatTrace",
    "DetectorConfig",
    "EcgStream",
    "QualityConfig",
    "QualityFlag",
    "RPeakDetector",
    "ResamplerConfig",
    "SignalError",
    "StreamClosedError",
    "StreamConfig",
    "StreamInputs",
    "StreamingResampler",
    "declares_stream_inputs",
    "detect_beats",
    "detect_r_peaks",
    "refine_peaks",
    "stream_inputs",
]
