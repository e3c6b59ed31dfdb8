"""The windowed stream for waveform models that are not beat-based (EEG, PPG, vital-sign series).

A bundle whose input declares ``derived.feature = "signal_window"`` (``runtime.contract.WindowConfig``) is
run on fixed windows cut every hop. Training builds its windows with the same functions
(``cut_windows``, ``window_quality``, ``normalize_windows``, or ``model_windows`` for all three), so the
device feeds the model exactly what it was trained and gated on. ``WindowStream`` (``runtime.windows.stream``)
is the device's stream: resampling, windows, quality flags, batched inference, one ``WindowEvent`` per window.
"""

from runtime.windows.cutting import ModelWindows, cut_windows, model_windows, normalize_windows, window_starts
from runtime.windows.quality import MIN_CLIPPED_SAMPLES, WindowFlag, window_quality
from runtime.windows.stream import (
    RECORDING_WINDOW_CONFIG,
    WindowSignalError,
    WindowStream,
    WindowStreamClosedError,
    WindowStreamConfig,
    window_input,
)

__all__ = [
    "MIN_CLIPPED_SAMPLES",
    "RECORDING_WINDOW_CONFIG",
    "ModelWindows",
    "WindowFlag",
    "WindowSignalError",
    "WindowStream",
    "WindowStreamClosedError",
    "WindowStreamConfig",
    "cut_windows",
    "model_windows",
    "normalize_windows",
    "window_input",
    "window_quality",
    "window_starts",
]
