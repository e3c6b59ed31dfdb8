"""The windowed stream: a waveform model that is not beat-based, judged on fixed windows of a live signal.

``WindowStream(bundle, input_rate_hz).feed(chunk)`` accepts any number of samples at the input rate
(``(samples,)``, or ``(samples, channels)`` for a multi-channel model) and returns the events that became
final; ``flush()`` ends the recording. The bundle's one input declares ``derived.feature = "signal_window"``
(``runtime.contract.WindowConfig``): its shape gives the window (axis 1) and channels (axis 2), its
``sample_rate_hz`` the model rate, ``hop_s`` the hop.

1. The input is resampled to the model rate (``runtime.resample``: exact under any chunking; NaN samples
   stay NaN and spread over the filter's half width, so the windows around a gap are flagged).
2. Model-rate samples wait in a buffer that keeps, between feeds, only what the next window needs (the samples
   from its start on: fewer than one window). Whole windows are cut, flagged and normalised by ``model_windows``
   — the function training uses — on the buffer from the next window's start, so every window is exactly what
   training makes of the same resampled signal.
3. Windows are run in fixed batches by their number (windows ``[k·B, (k+1)·B)`` of a segment; B is
   ``batch_size`` or fewer, so that no window waits more than ``max_batch_wait_s`` of signal for its batch):
   one ``session.run`` per batch, the flagged windows left out. The batches, and so every number of every
   event, are the same however the signal is split into chunks.
4. Each window gets a ``WindowEvent``: the task kind's result (``runtime.results.results_for``, the row
   runner's decision path: every task kind), or — for a window with quality flags (non-finite, flat line,
   clipped, rate mismatch, outside the values the model was developed on: ``runtime.domain``) or a non-finite
   model output — its flags and no result: the device never gives a class to a window it cannot judge.

Rates. An input rate below ``minimum_rate_fraction`` × the model rate is refused (``WindowSignalError``):
upsampling invents nothing above the input's Nyquist frequency, and a model trained on more bandwidth
would judge a signal it never saw. Faster inputs are low-pass filtered and downsampled (any ratio whose
kernel fits ``runtime.resample.MAX_KERNEL_ELEMENTS``); a rate outside ``SIGNAL_RATE_RANGE_HZ`` is refused.
These are errors, not per-window flags: the declared rate is one fact about the whole stream. What *is* a
per-window flag is ``rate_mismatch``: chunk timestamps (``feed(chunk, timestamp_s)``) that contradict the
declared rate (``runtime.ecg.quality.SourceClock``, the ECG stream's check with its settings).

Segments. A gap (``gap(seconds)``, or a jump in the timestamps) ends a segment: its last windows are
judged (the resampler holds its right edge), the signal after its last whole window is reported as a
``partial_window`` quality event, and the window grid starts afresh after the gap (``QualityEvent`` ``gap``).
A segment too short for one window gives no window and a ``too_short`` quality event (the command line prints a
warning for it).
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from runtime.contract import InputSpec, UnsupportedBundleError
from runtime.domain import outside_rows
from runtime.ecg.quality import QualityConfig, SourceClock
from runtime.errors import EdgemedError
from runtime.events import QualityEvent, WindowEvent
from runtime.features import FeatureKind, summary_features
from runtime.readers import SIGNAL_RATE_RANGE_HZ, InputError
from runtime.resample import ChannelResampler, ResampleRatioError, ResamplerConfig
from runtime.results import OUT_OF_DOMAIN, OUTPUT_NOT_FINITE, results_for
from runtime.windows.cutting import model_windows
from runtime.windows.quality import WindowFlag

logger = logging.getLogger(__name__)


class WindowSignalError(InputError):
    """A chunk or a stream setting cannot be used: wrong type, channels, or a rate the stream cannot honour."""


class WindowStreamClosedError(EdgemedError):
    """``feed`` or ``gap`` was called after ``flush``."""


@dataclass(frozen=True)
class WindowStreamConfig:
    batch_size: int = 32  # at most this many windows per inference call: throughput vs. latency
    max_batch_wait_s: float = 2.0  # … and no window waits for more than this much signal for its batch
    minimum_rate_fraction: float = 0.5  # the input rate must be at least this share of the model rate
    summary_features: bool = False  # attach the model input's summary features to every judged window (telemetry)
    resampler: ResamplerConfig = field(default_factory=ResamplerConfig)
    timestamps: QualityConfig = field(default_factory=QualityConfig)  # its gap / rate-check settings (SourceClock)


# Whole recordings (files): latency does not matter, throughput does.
RECORDING_WINDOW_CONFIG = WindowStreamConfig(batch_size=64, max_batch_wait_s=3600.0)


def window_input(bundle) -> InputSpec:
    """The bundle's only input when it is a signal window; ``UnsupportedBundleError`` otherwise."""
    inputs = bundle.inputs
    if len(inputs) != 1 or not inputs[0].is_signal_window:
        names = ", ".join(f"{spec.name} ({spec.stream_feature or spec.feature_kind})" for spec in inputs)
        raise UnsupportedBundleError(
            f"the windowed stream needs a bundle with one signal_window input; this one has {names}",
            expected="one waveform input with derived.feature 'signal_window' (runtime.contract.WindowConfig)",
            fix="feed pre-cut inputs as an .npz (one array per input name), or rebuild the bundle with a "
            "signal_window input",
        )
    return inputs[0]


class _Window(NamedTuple):
    """A window cut and judged for quality, waiting for its batch (model input kept until then)."""

    index: int  # from the stream's start
    start: int  # model-rate sample of the segment
    inputs: np.ndarray  # float32, the input's sample shape
    flags: tuple[str, ...]


class _SampleBuffer:
    """Model-rate samples ``[start, end)`` of the segment, in a growable array reused between feeds."""

    def __init__(self, channels: int) -> None:
        self._values = np.zeros((0, channels))
        self._offset = 0  # row of ``start`` in _values
        self.start = 0
        self.end = 0
        self._skip = 0  # samples still to drop as they arrive (a hop longer than the window)

    def append(self, block: np.ndarray) -> None:
        drop = min(self._skip, len(block))
        block, self._skip = block[drop:], self._skip - drop
        self.start += drop
        self.end += drop
        length = self.end - self.start
        if self._offset + length + len(block) > len(self._values):
            live = self._values[self._offset : self._offset + length]
            capacity = max(len(self._values), length + len(block))
            values = self._values if capacity <= len(self._values) else np.empty((2 * capacity, live.shape[1]))
            values[:length] = live  # numpy copies an overlapping move through a temporary
            self._values, self._offset = values, 0
        self._values[self._offset + length : self._offset + length + len(block)] = block
        self.end += len(block)

    def view(self, count: int) -> np.ndarray:
        """The first ``count`` samples from ``start``."""
        return self._values[self._offset : self._offset + count]

    def drop_before(self, position: int) -> None:
        kept_from = min(position, self.end)
        self._offset += kept_from - self.start
        self._skip = position - kept_from
        self.start = kept_from


class WindowStream:
    """Windowed inference on a live waveform with a ``signal_window`` bundle (see the module docstring)."""

    def __init__(self, bundle, input_rate_hz: float, config: WindowStreamConfig | None = None) -> None:
        self.config = config or WindowStreamConfig()
        self.bundle = bundle
        self.spec = window_input(bundle)
        self.rate = float(self.spec.sample_rate_hz)
        self.input_rate = self._checked_rate(input_rate_hz)
        self.channels = self.spec.channels
        self.window = self.spec.window_samples
        self.hop = self.spec.hop_samples
        try:
            self._resampler = ChannelResampler(self.input_rate, self.rate, self.channels, self.config.resampler)
        except ResampleRatioError as error:
            raise WindowSignalError(f"input rate {self.input_rate:g} Hz cannot be resampled to the model's "
                                    f"{self.rate:g} Hz ({error.what})", expected=error.expected,
                                    fix="pass the recording's real rate") from error
        wait = math.floor(self.config.max_batch_wait_s * self.rate / self.hop)
        self.batch_windows = max(1, min(int(self.config.batch_size), 1 + wait))
        self._clock = SourceClock(self.input_rate, self.config.timestamps)
        self._index = 0  # windows cut since the stream began
        self._origin_s = 0.0  # input time at which the segment began
        self._closed = False
        self._start_segment()

    def _checked_rate(self, value: object) -> float:
        rate = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
        low, high = SIGNAL_RATE_RANGE_HZ
        if not math.isfinite(rate) or not low <= rate <= high:
            raise WindowSignalError(f"input rate {value!r} Hz", expected=f"a rate from {low:g} to {high:g} Hz",
                                    fix="pass the recording's real sample rate")
        lowest = self.config.minimum_rate_fraction * self.rate
        if rate < lowest:
            raise WindowSignalError(
                f"input rate {rate:g} Hz is too low for this model, trained at {self.rate:g} Hz",
                expected=f"at least {lowest:g} Hz ({self.config.minimum_rate_fraction:g} × the model rate): "
                "resampling up cannot restore the bandwidth the model was trained on",
                fix="record at a rate closer to the model's, or pass the real rate if this one is wrong",
            )
        return rate

    # -- public interface -------------------------------------------------------------------------------------

    @property
    def seconds_per_model_sample(self) -> float:
        """Input time of one model-rate sample (the resampler's exact ratio)."""
        return self._resampler.down / (self._resampler.up * self.input_rate)

    def feed(self, chunk: np.ndarray, timestamp_s: float | None = None) -> list[WindowEvent | QualityEvent]:
        """Add samples at the input rate (``timestamp_s``: the device clock at the first); returns final events."""
        samples = self._as_samples(chunk)
        events: list[WindowEvent | QualityEvent] = []
        if timestamp_s is not None:
            if not isinstance(timestamp_s, numbers.Real) or isinstance(timestamp_s, bool):
                raise WindowSignalError(f"timestamp {timestamp_s!r}", expected="seconds as a number",
                                        fix="pass a float")
            gap = self._clock.check(float(timestamp_s), len(samples))
            if gap > 0:
                events += self._gap(gap)
            if self._clock.rate_suspect and len(samples):
                self._mark_rate_mismatch(len(samples))
        if len(samples):
            self._input_count += len(samples)
            with np.errstate(invalid="ignore", over="ignore"):  # NaN and ±inf samples: their windows are flagged
                self._buffer.append(self._resampler.process(samples))
            events += self._cut(final=False)
        return events

    def gap(self, seconds: float) -> list[WindowEvent | QualityEvent]:
        """Declare ``seconds`` of missing signal: finish the segment, report the gap, start a new window grid."""
        self._check_open("gap")
        length = float(seconds) if isinstance(seconds, numbers.Real) and not isinstance(seconds, bool) else math.nan
        if not math.isfinite(length) or length < 0:
            raise WindowSignalError(f"gap of {seconds!r} s", expected="a finite, non-negative duration",
                                    fix="pass seconds")
        self._clock.restart()  # the caller's timestamps, if any, start a new time base
        return self._gap(length)

    def flush(self) -> list[WindowEvent | QualityEvent]:
        """End of the recording: judge every window left. The stream is closed afterwards."""
        if self._closed:
            return []
        events = self._end_segment()
        self._closed = True
        return events

    # -- segments ---------------------------------------------------------------------------------------------

    def _start_segment(self) -> None:
        self._buffer = _SampleBuffer(self.channels)
        self._resampler.reset()
        self._input_count = 0  # input samples of the segment
        self._next_start = 0  # model-rate sample of the segment where the next window starts
        self._segment_windows = 0
        self._pending: list[_Window] = []
        self._rate_marks: list[tuple[int, int]] = []  # model-rate stretches the timestamps called into question

    def _end_segment(self) -> list[WindowEvent | QualityEvent]:
        with np.errstate(invalid="ignore", over="ignore"):
            self._buffer.append(self._resampler.flush())
        events = self._cut(final=True)
        duration = self._input_count / self.input_rate
        judged_until = (self._next_start - self.hop + self.window) * self.seconds_per_model_sample
        if self._input_count and not self._segment_windows:
            logger.info("%.3g s of signal at %s is shorter than one window of the model (%.3g s): nothing in it "
                        "was judged", duration, f"{self._origin_s:.3f} s", self.window / self.rate)
            events.append(QualityEvent(self._origin_s, duration, WindowFlag.TOO_SHORT.value))
        elif self._segment_windows and duration - judged_until > 0.5 * self.seconds_per_model_sample:
            events.append(QualityEvent(self._origin_s + judged_until, duration - judged_until,
                                       WindowFlag.PARTIAL_WINDOW.value))
        self._origin_s += duration
        self._start_segment()
        return events

    def _gap(self, seconds: float) -> list[WindowEvent | QualityEvent]:
        events = self._end_segment()
        events.append(QualityEvent(self._origin_s, seconds, WindowFlag.GAP.value))
        self._origin_s += seconds
        return events

    # -- input and windows ------------------------------------------------------------------------------------

    def _check_open(self, call: str) -> None:
        if self._closed:
            raise WindowStreamClosedError(f"{call}() after flush()", expected=f"{call}() before flush()",
                                          fix="use a new WindowStream")

    def _as_samples(self, chunk: np.ndarray) -> np.ndarray:
        self._check_open("feed")
        array = np.asarray(chunk)
        if array.dtype.kind not in "biuf":
            raise WindowSignalError(f"chunk of {array.dtype} values", expected="numbers",
                                    fix="pass a numeric numpy array")
        if array.ndim == 1 and self.channels == 1:
            array = array[:, None]
        if array.ndim != 2 or array.shape[1] != self.channels:
            found = f"{array.shape[1]} channels" if array.ndim == 2 else f"shape {array.shape}"
            raise WindowSignalError(
                f"chunk with {found}; the model takes {self.channels} channel(s)",
                expected=f"(samples, {self.channels})" + (" or (samples,)" if self.channels == 1 else ""),
                fix=f"feed the {self.channels} channel(s) the model was trained on, one column each",
            )
        return array.astype(np.float64)

    def _mark_rate_mismatch(self, count: int) -> None:
        per_input = self._resampler.output_per_input
        margin = self._resampler.half_width
        first = max(0, math.floor((self._input_count - margin) * per_input))
        self._rate_marks.append((first, math.ceil((self._input_count + count + margin) * per_input)))

    def _cut(self, final: bool) -> list[WindowEvent | QualityEvent]:
        """Cut every whole window the buffer holds, at most one batch at a time; run each batch once full."""
        events: list[WindowEvent | QualityEvent] = []
        while True:
            available = (self._buffer.end - self._next_start - self.window) // self.hop + 1
            count = min(max(0, available), self.batch_windows - len(self._pending))
            if count > 0:
                self._add(count)
            if len(self._pending) == self.batch_windows or (final and self._pending and count <= 0):
                events += self._run_batch()
            if count <= 0:
                return events

    def _add(self, count: int) -> None:
        length = (count - 1) * self.hop + self.window
        cut = model_windows(self._buffer.view(length), self.spec)
        outside = outside_rows(self.spec, cut.inputs).tolist()  # windows unlike any the model was developed on
        for offset, flags in enumerate(cut.flags):
            start = self._next_start + offset * self.hop
            if outside[offset]:
                flags = (*flags, OUT_OF_DOMAIN)
            if self._rate_marks and any(first < start + self.window and start < end for first, end in self._rate_marks):
                flags = (*flags, WindowFlag.RATE_MISMATCH.value)
            self._pending.append(_Window(self._index, start, cut.inputs[offset], flags))
            self._index += 1
        self._segment_windows += count
        self._next_start += count * self.hop
        self._buffer.drop_before(self._next_start)
        self._rate_marks = [(first, end) for first, end in self._rate_marks if end > self._next_start]

    def _run_batch(self) -> list[WindowEvent]:
        windows, self._pending = self._pending, []
        judged = [window for window in windows if not window.flags]
        results, features, latency_us = iter(()), iter(()), 0.0
        if judged:
            batch = np.stack([window.inputs for window in judged])
            started = time.perf_counter()
            outputs = self.bundle.predict({self.spec.name: batch})
            latency_us = (time.perf_counter() - started) * 1e6 / len(judged)
            results = iter(results_for(self.bundle.output, outputs))
            if self.config.summary_features:
                columns = {name: np.asarray(values, dtype=np.float64).tolist()
                           for name, values in summary_features(batch, FeatureKind.WAVEFORM).items()}
                features = iter([dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)])
        events = []
        step = self.seconds_per_model_sample
        for window in windows:
            result, flags, summary, latency = None, window.flags, None, 0.0
            if not flags:
                result, summary, latency = next(results), next(features, None), latency_us
                if result is None:
                    flags = (OUTPUT_NOT_FINITE,)
            start_s = self._origin_s + window.start * step
            events.append(WindowEvent(window.index, start_s, start_s + self.window * step,
                                      self.bundle.output.task.value, result, flags, latency, summary))
        return events
