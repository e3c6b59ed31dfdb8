"""The windowed stream for waveform models that are not beat-based (EEG, PPG, vital-sign series).

A bundle whose input declares ``derived.feature = "signal_window"`` (``runtime.contract.WindowConfig``) is
run on fixed windows cut every hop. Training builds its windows with the same functions
(``cut_windows``, ``window_quality``, ``normalize_windows``, or ``model_windows`` for all three), so the
device feeds the model exactly what it was trained and gated on.
"""

from runtime.windows.cutting import ModelWindows, cut_windows, model_windows, normalize_windows, window_starts
from runtime.windows.quality import WindowFlag, window_quality

__all__ = [
    "ModelWindows",
    "WindowFlag",
    "cut_windows",
    "model_windows",
    "normalize_windows",
    "window_quality",
    "window_starts",
]
