"""ECG beat classification on a live single-lead stream.

``EcgStream.feed(chunk)`` accepts any number of samples at the source rate and
returns the events that became final. Internally the signal is repaired and
checked at the source rate (exact per sample), resampled to the model's rate
(exact per sample), and then processed in fixed blocks aligned to the stream
start: flat-line checks, QRS detection, beat windows cut exactly as in training,
each beat's model inputs as the bundle declares them (``runtime.ecg.beat_inputs``:
beat window, template residual, RR features — one beat late when RR is used), and
batched inference with every input fed by name. Because every decision is made per
fixed block, the events are identical however the recording is split into chunks.

A declared gap or a flat line (lead off) ends a segment: the R-peak detector, the
heart rate, the RR history and the running template all start afresh after it, and
the first beats of the new segment are flagged ``warming_up``.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from runtime.decide import require_single_label
from runtime.ecg.beat_inputs import BeatInputStream, BeatTrace, declares_stream_inputs, stream_inputs
from runtime.ecg.beats import BeatBlock, BeatRows, HeartRate, classify
from runtime.ecg.decisions import DetectorConfig
from runtime.ecg.noise import NoiseConfig, NoiseDetector
from runtime.ecg.quality import (
    FlatLineDetector,
    Interval,
    IntervalLog,
    QualityConfig,
    QualityFlag,
    SourceClock,
    SourceConditioner,
)
from runtime.ecg.resample import ResamplerConfig, StreamingResampler
from runtime.ecg.rpeaks import RPeakDetector, minimum_peak_spacing, refine_peaks, spaced_peaks, windows_at
from runtime.errors import EdgemedError
from runtime.events import BeatEvent, QualityEvent
from runtime.features import FeatureKind
from runtime.readers import InputError

logger = logging.getLogger(__name__)


TOO_SHORT = "too_short"  # a segment shorter than the detector's learning period, without a beat: nothing judged
MAX_GAP_S = 365.0 * 86_400  # a gap (declared, or a timestamp jump) longer than a year is refused: positions are int64


class SignalError(InputError):
    """A chunk or a stream setting cannot be used (wrong type, shape or rate)."""


class StreamClosedError(EdgemedError):
    """``feed`` or ``gap`` was called after ``flush``."""


@dataclass(frozen=True)
class StreamConfig:
    block_s: float = 2.0  # decisions are made per block of this much signal: latency vs. per-call overhead
    batch_size: int = 32  # beats per inference call: throughput vs. latency
    max_batch_wait_s: float = 6.0  # a partial batch runs once its oldest beat waited this long (stream time)
    refine_s: float = 0.05  # R-peak moved to the largest |signal − median| within ± this (training alignment)
    history_s: float = 20.0  # model-rate signal kept for search-back and beat windows
    heart_rate_window_s: float = 60.0  # the "1-minute" heart rate counts the beats in this window
    minimum_source_rate_hz: float = 100.0  # slower sources do not resolve a QRS complex: refused
    summary_features: bool = False  # attach the window's summary features to every beat (telemetry)
    warm_up_template_beats: int = 10  # derived template residuals: judged once the template holds this many beats
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)  # is the signal a readable ECG (runtime.ecg.noise)
    resampler: ResamplerConfig = field(default_factory=ResamplerConfig)


# Whole recordings (files, Holter downloads): latency does not matter, throughput does. The decisions do not depend
# on the block or the batch (checked on the ten vendored MIT-BIH records: the same beats, classes, probabilities and
# flags with 2/10/30/60/120-s blocks); only how often a stream hands events over does. 60-s blocks and batches of 256
# beats cut the per-call overhead of 10-s blocks and 64 (``edgemed bench-stream``, 24 h: 95–98 → 62–63 µs per beat).
RECORDING_CONFIG = StreamConfig(block_s=60.0, batch_size=256, max_batch_wait_s=240.0)


class EcgStream:
    """Streaming beat detection and classification with an ECG bundle.

    The bundle's inputs are a single beat window, or inputs the manifest says how to derive per beat
    (``InputSpec.derived``). ``trace``, when given, receives every beat's inputs exactly as fed
    (``BeatTrace``, in time order) — for checks against training, never for telemetry.
    """

    def __init__(
        self,
        bundle,
        source_rate_hz: float,
        batch_size: int | None = None,
        config: StreamConfig | None = None,
        adc_range: tuple[float, float] | None = None,
        trace: Callable[[BeatTrace], None] | None = None,
    ) -> None:
        self.config = config or StreamConfig()
        if not declares_stream_inputs(bundle.inputs):
            _check_beat_window(bundle.input_spec)  # one input, or UnsupportedBundleError
        plan = stream_inputs(bundle.inputs)
        require_single_label(bundle.output, "ECG stream")
        rate = float(source_rate_hz) if isinstance(source_rate_hz, numbers.Real) else math.nan
        if not math.isfinite(rate) or rate < self.config.minimum_source_rate_hz:
            raise SignalError(
                f"source sample rate {source_rate_hz} Hz is too low for QRS detection",
                expected=f"at least {self.config.minimum_source_rate_hz} Hz (the model runs at "
                f"{plan.sample_rate_hz} Hz)",
                fix="record at a higher sample rate, or pass the real rate",
            )
        self.bundle = bundle
        self.plan = plan
        self.source_rate = rate
        self.rate = plan.sample_rate_hz
        self.before = plan.before
        self.after = plan.after
        self._window_offsets = np.arange(-self.before, self.after)  # a beat window's samples around its R-peak
        self._inputs = BeatInputStream(plan, self.config.warm_up_template_beats, trace)
        self._minimum_spacing = minimum_peak_spacing(self.rate, self.config.detector)
        self._coarse_count = 0  # coarse R-peaks handed to _pending since the stream began
        self._finalised_count = 0  # of which finalised (refined, kept or dropped)
        self._breaks: list[int] = []  # a flat line ends a segment after this many coarse peaks
        self.batch_size = max(1, int(batch_size or self.config.batch_size))
        quality = self.config.quality
        self._segment = max(1, round(quality.flat_segment_s * self.rate))
        self._block = self._segment * max(1, round(self.config.block_s / quality.flat_segment_s))
        self._guard = math.ceil((quality.merge_gap_s + quality.clip_min_run_s) * self.rate) + 2
        self._reach = round(self.config.refine_s * self.rate)
        self._resampler = StreamingResampler(rate, self.rate, self.config.resampler)
        self._conditioner = SourceConditioner(rate, quality, adc_range)
        self._flat = FlatLineDetector(quality)
        self._noise = NoiseDetector(self.rate, self._segment, self.config.noise)
        self._detector = RPeakDetector(self.rate, self.config.detector)
        self._log = IntervalLog(merge_gap=math.ceil(quality.merge_gap_s * self.rate))
        self._clock = SourceClock(rate, quality)
        self._heart_rate = HeartRate(self.rate, self.config.heart_rate_window_s)
        self._queue: list[tuple[int, BeatBlock | QualityEvent]] = []  # (queued at, item), released in order
        self._closed = False
        self._start_segment(0)

    # -- public interface -------------------------------------------------------------------------------------

    def feed(self, chunk: np.ndarray, timestamp_s: float | None = None) -> list[BeatEvent | QualityEvent]:
        """Add samples (at the source rate); returns the events that became final."""
        samples = self._as_samples(chunk)
        events: list[BeatEvent | QualityEvent] = []
        if timestamp_s is not None:
            if not isinstance(timestamp_s, numbers.Real):
                raise SignalError(f"timestamp {timestamp_s!r}", expected="seconds as a number", fix="pass a float")
            if not math.isfinite(timestamp_s):
                raise SignalError(f"timestamp {timestamp_s!r}", expected="a finite number of seconds",
                                  fix="pass the chunk's time in seconds, or no timestamp")
            # checked before the clock takes the chunk: a caller that goes on after the refusal keeps its time base
            if not self._clock.gap_before(float(timestamp_s)) <= MAX_GAP_S:
                raise SignalError(f"timestamp {timestamp_s!r} s jumps "
                                  f"{self._clock.gap_before(float(timestamp_s)):.3g} s past the stream's clock",
                                  expected=f"chunk timestamps in seconds, at most {MAX_GAP_S:.0f} s (a year) apart",
                                  fix="pass timestamps in seconds; after a longer interruption start a new EcgStream")
            gap = self._clock.check(float(timestamp_s), samples.size)
            if gap > 0:
                events += self._gap(gap)
            if self._clock.rate_suspect:
                self._flag_chunk(QualityFlag.RATE_MISMATCH, samples.size)
        if samples.size:
            repaired, marks = self._conditioner.process(samples)
            self._mark_source(marks)
            self._source_count += samples.size
            self._append(self._resampler.process(repaired))
            events += self._run_blocks(final=False)
        return events

    def gap(self, seconds: float) -> list[BeatEvent | QualityEvent]:
        """Declare ``seconds`` of missing signal: finish the current stretch, flag the gap, start afresh."""
        if self._closed:
            raise StreamClosedError("gap() after flush()", expected="gap() before flush()", fix="use a new EcgStream")
        length = float(seconds) if isinstance(seconds, numbers.Real) else math.nan
        if not math.isfinite(length) or length < 0 or length > MAX_GAP_S:
            raise SignalError(f"gap of {seconds} s", expected=f"a finite duration from 0 to {MAX_GAP_S:.0f} s (a year)",
                              fix="pass the gap in seconds; for a longer interruption start a new EcgStream")
        self._clock.restart()  # the caller's timestamps, if any, start a new time base
        return self._gap(length)

    def _gap(self, length: float) -> list[BeatEvent | QualityEvent]:
        events = self._end_segment()
        start = self._available_end
        samples = max(1, round(length * self.rate))
        self._log.add(QualityFlag.GAP, start, start + samples)
        events.extend(self._quality_event(interval) for interval in self._log.pop_closed(start, final=True))
        self._start_segment(start + samples)
        return events

    def flush(self) -> list[BeatEvent | QualityEvent]:
        """End of the recording: decide and classify everything left. The stream is closed afterwards."""
        if self._closed:
            return []
        events = self._end_segment()
        self._closed = True
        return events

    # -- input handling ---------------------------------------------------------------------------------------

    def _as_samples(self, chunk: np.ndarray) -> np.ndarray:
        if self._closed:
            raise StreamClosedError("feed() after flush()", expected="feed() before flush()", fix="use a new EcgStream")
        array = np.asarray(chunk)
        if array.dtype.kind not in "biuf":
            raise SignalError(f"chunk of {array.dtype} values", expected="numbers", fix="pass a numeric numpy array")
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim > 1:
            raise SignalError(f"chunk of shape {array.shape}", expected="one lead: (samples,)", fix="pass one lead")
        return array.reshape(-1).astype(np.float64)

    def _to_model(self, source_index: float) -> float:
        return self._origin + source_index * self._resampler.output_per_input

    def _flag_chunk(self, flag: QualityFlag, count: int) -> None:
        start = self._to_model(self._source_count)
        self._log.add(flag, math.floor(start), math.ceil(self._to_model(self._source_count + max(count, 1))))

    def _mark_source(self, marks: list[tuple[QualityFlag, int, int]]) -> None:
        margin = self._resampler.half_width
        for flag, start, end in marks:
            first = max(self._origin, math.floor(self._to_model(start - margin)))
            self._log.add(flag, first, math.ceil(self._to_model(end + margin)))

    # -- segments and blocks ----------------------------------------------------------------------------------

    def _start_segment(self, origin: int) -> None:
        self._origin = origin
        self._resampler.reset()
        self._conditioner.reset()
        self._detector.reset(origin)
        self._signal = np.zeros(0)
        self._signal_start = origin
        self._next_block = origin
        self._pending: list[int] = []
        self._source_count = 0
        self._segment_beats = 0  # beats kept since the segment began
        self._heart_rate.interrupt(origin)
        self._noise.reset(origin)

    @property
    def _available_end(self) -> int:
        return self._signal_start + self._signal.size

    def _append(self, values: np.ndarray) -> None:
        if values.size:
            self._signal = np.concatenate([self._signal, values])

    def _end_segment(self) -> list[BeatEvent | QualityEvent]:
        """Decide everything left of the segment; one too short for the detector to learn its levels in which no
        beat was found is reported (``too_short``), never passed over in silence."""
        self._append(self._resampler.flush())
        events = self._run_blocks(final=True)
        length = self._available_end - self._origin
        if 0 < length < self._detector.learning and not self._segment_beats:
            events.append(QualityEvent(self._origin / self.rate, length / self.rate, TOO_SHORT))
        return events

    def _run_blocks(self, final: bool) -> list[BeatEvent | QualityEvent]:
        events: list[BeatEvent | QualityEvent] = []
        while self._next_block + self._block + self._guard <= self._available_end:
            events += self._process_block(self._next_block + self._block, last=False)
        if final:
            while self._next_block + self._block < self._available_end:
                events += self._process_block(self._next_block + self._block, last=False)
            events += self._process_block(self._available_end, last=True)
        return events

    def _process_block(self, end: int, last: bool) -> list[BeatEvent | QualityEvent]:
        start = self._next_block
        coarse: list[int] = []
        runs = self._non_flat_runs(start, end)
        for run_start, run_end in runs:
            if self._detector.position != run_start:  # a flat line lies between
                coarse += self._restart_detection(run_start, len(coarse))
            coarse += self._detector.process(self._view(run_start, run_end), run_start)
        if last:
            coarse += self._detector.finish()
        elif not runs or runs[-1][1] != end:  # a flat line began: decide now what came before it, not when it ends
            coarse += self._restart_detection(end, len(coarse))
        self._pending.extend(coarse)
        self._coarse_count += len(coarse)
        self._next_block = end
        for flag, noise_start, noise_end in self._noise.decide(final=last):
            self._log.add(flag, noise_start, noise_end)
        # a beat, and a flagged stretch that may still grow, wait until the noise check has decided every segment
        # they touch
        known = end if last else min(end, self._noise.decided_until)
        self._finalise_beats(known, last)
        for interval in self._log.pop_closed(known, final=last):
            self._enqueue(self._quality_event(interval), end)
        self._trim()
        return self._release(end, last)

    def _restart_detection(self, position: int, found: int) -> list[int]:
        """A flat line ends the detector's run: the QRS complexes before it, decided as if the signal ended
        there; detection, heart rate, RR history and template restart (at ``position``, after ``found`` peaks
        of this block). A detector that saw nothing since its last restart is only moved."""
        fresh = self._detector.position == self._detector.origin
        peaks = [] if fresh else self._detector.finish()
        self._detector.reset(position)
        if not fresh:
            self._heart_rate.interrupt(position)
            self._breaks.append(self._coarse_count + found + len(peaks))  # RR and template restart after these
        return peaks

    def _view(self, start: int, end: int) -> np.ndarray:
        return self._signal[start - self._signal_start : end - self._signal_start]

    def _non_flat_runs(self, start: int, end: int) -> list[tuple[int, int]]:
        whole = (end - start) // self._segment
        segments = self._view(start, start + whole * self._segment).reshape(whole, self._segment)
        flat = self._flat.flat_segments(segments)
        self._noise.push(segments, flat)
        if not any(flat):  # the usual case: one run over the whole block
            return [(start, end)] if end > start else []
        runs: list[tuple[int, int]] = []
        for index, segment_start in enumerate(range(start, end, self._segment)):
            segment_end = min(segment_start + self._segment, end)
            if index < whole and flat[index]:
                self._log.add(QualityFlag.FLAT_LINE, segment_start, segment_end)
            elif runs and runs[-1][1] == segment_start:
                runs[-1] = (runs[-1][0], segment_end)
            else:
                runs.append((segment_start, segment_end))
        return runs

    def _trim(self) -> None:
        oldest = min([self._next_block - round(self.config.history_s * self.rate), *self._pending])
        keep_from = max(self._signal_start, oldest - self.before - self._reach - self.after)
        self._signal = self._signal[keep_from - self._signal_start :]
        self._signal_start = keep_from
        self._log.forget_before(keep_from)

    # -- beats ------------------------------------------------------------------------------------------------

    def _finalise_beats(self, end: int, last: bool) -> None:
        count = len(self._pending) if last else sum(
            1 for peak in self._pending if peak + self._reach + self.after <= end)
        ready, self._pending = self._pending[:count], self._pending[count:]
        first_count, self._finalised_count = self._finalised_count, self._finalised_count + count
        kept = self._keep(ready) if ready else []
        self._segment_beats += len(kept)
        if kept:
            block = self._block_of([peak for _, peak in kept])
            self._enqueue(block, end)
            coarse = [first_count + position for position, _ in kept]
            first = 0
            while first < len(kept):  # runs of beats between the flat lines that end segments
                self._end_segments(coarse[first])
                boundary = self._breaks[0] if self._breaks else math.inf
                stop = next((index for index in range(first, len(kept)) if coarse[index] >= boundary), len(kept))
                self._inputs.push(block, first, stop)
                first = stop
        self._end_segments(self._finalised_count)
        if last:
            self._inputs.finish()

    def _block_of(self, peaks: list[int]) -> BeatBlock:
        """The kept beats of a block as columns: windows, quality flags and heart rates."""
        positions = np.asarray(peaks, dtype=np.int64)
        if peaks[0] - self.before >= max(self._origin, self._signal_start) and peaks[-1] + self.after <= (
                self._available_end):  # the usual case: every window inside the signal (peaks are increasing)
            windows = windows_at(self._signal, positions - (self.before + self._signal_start),
                                 self.before + self.after).astype(np.float32)
            if not self._log:
                heart_rate, per_minute = self._heart_rate.beats(positions)
                return BeatBlock(positions, [()] * len(peaks), heart_rate, per_minute, windows, self.rate)
            partial = [False] * len(peaks)
        else:
            rows = positions[:, None] + self._window_offsets
            np.minimum(np.maximum(rows, self._origin, out=rows), self._available_end - 1, out=rows)
            rows -= self._signal_start
            windows = self._signal[rows].astype(np.float32)
            partial = ((positions - self.before < self._origin) | (positions + self.after > self._available_end)
                       ).tolist()
        flags: list[tuple[str, ...]] = []
        for peak, cut in zip(peaks, partial, strict=True):
            overlapping = self._log.flags_between(peak - self.before, peak + self.after) if self._log else ()
            if not overlapping and not cut:
                flags.append(())
                continue
            names = {flag.value for flag in overlapping}
            if cut:
                names.add(QualityFlag.PARTIAL_WINDOW.value)
            flags.append(tuple(sorted(names)))
        heart_rate, per_minute = self._heart_rate.beats(positions)
        return BeatBlock(positions, flags, heart_rate, per_minute, windows, self.rate)

    def _keep(self, ready: list[int]) -> list[tuple[int, int]]:
        """(position in ``ready``, refined R-peak) of the coarse peaks kept: refined as in training, outside flat
        lines, and spaced from the previous beat (``spaced_peaks``, training's rule too)."""
        first = max(self._signal_start, min(ready) - self.before - self._reach)
        local = self._signal[first - self._signal_start :]
        context = (self.before, self.after)
        refined = refine_peaks(local, np.asarray(ready) - first, self.rate, self.config.refine_s, context) + first
        outside = list(enumerate(refined.tolist()))
        if self._log:  # no beat inside a flat line
            outside = [(position, peak) for position, peak in outside if not self._log.inside(QualityFlag.FLAT_LINE,
                                                                                               peak)]
        spaced = spaced_peaks([peak for _, peak in outside], self._heart_rate.last, self._minimum_spacing)
        return [outside[index] for index in spaced]

    def _end_segments(self, coarse_count: int) -> None:
        """Finish the RR history and template at every flat line that the first ``coarse_count`` peaks precede."""
        while self._breaks and self._breaks[0] <= coarse_count:
            self._breaks.pop(0)
            self._inputs.finish()

    def _quality_event(self, interval: Interval) -> QualityEvent:
        duration = (interval.end - interval.start) / self.rate
        return QualityEvent(interval.start / self.rate, duration, interval.flag.value)

    def _enqueue(self, item: BeatBlock | QualityEvent, position: int) -> None:
        self._queue.append((position, item))

    def _release(self, end: int, last: bool) -> list[BeatEvent | QualityEvent]:
        """What is queued before the first beat still waiting for its inputs (the next beat's RR), once its beats
        are classified: a full batch, a long wait, or the end (where every beat has its inputs)."""
        waiting, prefix, parts = len(self._queue), len(self._queue), []
        for index, (_, item) in enumerate(self._queue):
            if isinstance(item, BeatBlock):
                if item.filled > item.released:
                    parts.append((item, item.released, item.filled))
                if item.filled < len(item):  # its next beat waits: the entries before it, and its filled beats
                    waiting, prefix = index, index + (item.filled > item.released)
                    break
        beats = sum(stop - first for _, first, stop in parts)
        waited = prefix > 0 and end - self._queue[0][0] >= self.config.max_batch_wait_s * self.rate
        if not prefix or not (last or not beats or beats >= self.batch_size or waited):
            return []
        events = iter(classify(self.bundle, BeatRows.gather(parts, self._inputs.columns(beats)),
                               self._inputs.model_inputs, self.batch_size, self.config.summary_features)
                      if beats else [])
        released: list[BeatEvent | QualityEvent] = []
        for _, item in self._queue[:prefix]:
            if isinstance(item, BeatBlock):
                released += [next(events) for _ in range(item.filled - item.released)]
                item.released = item.filled
            else:
                released.append(item)
        self._queue = self._queue[waiting:]
        self._inputs.forget_members()
        return released


def _check_beat_window(spec) -> None:
    """A bundle without derived inputs runs on the stream when its only input is a beat window."""
    if spec.feature_kind is not FeatureKind.WAVEFORM or not spec.is_beat_window:
        what = "a waveform without a beat window" if spec.feature_kind is FeatureKind.WAVEFORM else (
            f"{spec.feature_kind.value}, not a waveform")
        raise SignalError(
            f"bundle input '{spec.name}' is {what}",
            expected="an ECG bundle whose input is a beat window (window_before_s / window_after_s), or whose inputs "
            "say how the stream derives them",
            fix="use the tabular runner for tabular bundles; a waveform bundle for the stream needs its beat "
            "window in the manifest (rebuild it with one)",
        )
