"""The ECG stream's resampler: ``runtime.resample`` (shared with the windowed stream), re-exported here so that
``from runtime.ecg.resample import …`` keeps working."""

from runtime.resample import (
    MAX_KERNEL_ELEMENTS,
    ChannelResampler,
    ResampleRatioError,
    ResamplerConfig,
    StreamingResampler,
    rational_ratio,
)

__all__ = [
    "MAX_KERNEL_ELEMENTS",
    "ChannelResampler",
    "ResampleRatioError",
    "ResamplerConfig",
    "StreamingResampler",
    "rational_ratio",
]
