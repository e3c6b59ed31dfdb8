"""Every beat's model inputs on the device, computed as the bundle's manifest declares them.

``stream_inputs(bundle.inputs)`` reads the plan from the contract (``InputSpec.derived``): which input
is the beat window, the template residual or the RR features, the one beat-window geometry they share
and the RR and template settings training used. ``BeatInputStream`` then fills each beat's inputs with
the shared runtime functions (``RrFeatureStream``, ``RunningTemplate``; bit for bit what training's
``rr_features`` / ``template_residuals`` give on the same peaks):

* the beat window is the model-rate signal around the R-peak as float32 — the template is built from
  that same float32 window, as training builds it from its float32 windows;
* with RR features (``rr_features``, or the template's gate) a beat's inputs are known when the next
  beat arrives (its post-RR), so it is decided one beat late; ``finish`` (a gap, a flat line: lead off,
  the end of the stream) decides the held beat with its post-RR missing — its pre-RR stands in, as in
  training's batch function — and restarts the RR history and the template: the next beat is the
  first of a new segment, like the first beat of a training record;
* every beat passes through the RR history and the template (flagged ones too: training saw every
  detected beat), but with derived inputs only a beat without quality flags is judged;
* warm-up: after every (re)start a beat is flagged ``warming_up`` and not judged until (1) its pre-RR
  was measured and its local RR is the mean over the full ``rr.history_beats`` intervals — the statistic
  the model was trained on (virtually every training beat has a full history; a shorter mean is a
  noisier reference the model never learned to discount), about 10 s at the default of 10 — and (2) its
  running template holds ``min(template.history_beats, warm_up_template_beats)`` beats (10 by default:
  the median of 10 outvotes up to 4 ectopic members, and a normal beat's residual noise is within ~5 % of
  a full 30-beat template's, while waiting for 30 would blank ~30 s after every lead-off).

A bundle without any ``derived`` input keeps the stream's behaviour from before: its only input, a beat
window, is fed as cut; every beat is judged, flagged or not, except in a stretch that is not a readable ECG
(``noisy``, ``no_qrs``: ``runtime.ecg.noise``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from runtime.contract import InputSpec, UnsupportedBundleError
from runtime.contract.derived import WINDOW_FEATURES, RrFeatureConfig, StreamFeature, TemplateConfig
from runtime.ecg.beats import BeatBlock, BeatInputColumns, BeatRows
from runtime.ecg.quality import UNREADABLE_FLAGS, QualityFlag
from runtime.ecg.rr_columns import NO_INTERVAL, RrColumnStream, RrIntervals
from runtime.ecg.rr_features import PRE_TO_LOCAL, RR_FEATURE_NAMES
from runtime.ecg.template import zscore_windows
from runtime.ecg.template_members import TemplateMembers
from runtime.features import FeatureKind

LOCAL_RR = RR_FEATURE_NAMES.index("local_rr_s")
_FIX = "rebuild the bundle so that every input is derived from the stream with one window geometry and one set of " \
    "RR settings (or feed pre-cut inputs as an .npz: python -m runtime BUNDLE --input inputs.npz)"


@dataclass(frozen=True)
class StreamInputs:
    """What the stream computes for each beat of a bundle, from its manifest."""

    features: dict[str, StreamFeature]  # input name → what the stream computes for it (manifest order)
    shapes: dict[str, tuple[int, ...]]  # input name → one sample's shape
    sample_rate_hz: float  # the model rate: detection, windows and RR intervals are in its samples
    before: int  # window samples before the R-peak
    after: int  # window samples from the R-peak on
    rr: RrFeatureConfig | None  # when an input needs RR features (then decisions come one beat late)
    template: TemplateConfig | None  # when an input is a template residual
    declared: bool  # False: a single beat-window input without ``derived`` (the stream's behaviour before it)


@dataclass(frozen=True)
class BeatTrace:
    """One beat's model inputs exactly as fed (the stream's ``trace`` hook; for checks, never telemetry)."""

    peak: int  # model-rate R-peak index from the stream start (gaps included)
    time_s: float
    inputs: dict[str, np.ndarray]  # input name → float32 sample, shaped as the input's sample shape
    quality_flags: tuple[str, ...]
    judged: bool  # the model ran on it


def declares_stream_inputs(inputs: Sequence[InputSpec]) -> bool:
    """Whether the bundle says how the ECG stream derives its inputs per beat (``InputSpec.derived``); a
    ``signal_window`` input is the windowed stream's (``runtime.windows``), never the ECG stream's."""
    return any(spec.derived is not None and not spec.is_signal_window for spec in inputs)


def _one(values: set, what: str) -> object:
    if len(values) > 1:
        raise UnsupportedBundleError(f"the bundle's stream inputs disagree on {what}: {sorted(map(str, values))}",
                                     expected=f"one {what} for every input the stream derives", fix=_FIX)
    return next(iter(values), None)


def stream_inputs(inputs: Sequence[InputSpec]) -> StreamInputs:
    """The plan for a bundle's inputs; ``UnsupportedBundleError`` when the stream cannot compute them all."""
    windowed = [spec.name for spec in inputs if spec.is_signal_window]
    if windowed:
        raise UnsupportedBundleError(
            f"bundle inputs {', '.join(windowed)} are signal windows, which the windowed stream cuts, not the ECG "
            "stream", expected="a bundle whose inputs are all signal windows (runtime.windows) or all derived per "
            "beat (beat_window, template_residual, rr_features)", fix=_FIX)
    declared = declares_stream_inputs(inputs)
    if declared:
        fed = [spec.name for spec in inputs if spec.derived is None]
        if fed:
            raise UnsupportedBundleError(
                f"bundle inputs {', '.join(fed)} are not derived from the ECG stream (no 'derived' in the manifest)",
                expected="every input of a stream bundle derived: beat_window, template_residual or rr_features",
                fix=_FIX)
        features = {spec.name: spec.stream_feature for spec in inputs}
    else:
        spec = inputs[0] if len(inputs) == 1 else None
        if spec is None or spec.feature_kind is not FeatureKind.WAVEFORM or not spec.is_beat_window:
            raise UnsupportedBundleError(
                f"bundle inputs {', '.join(item.name for item in inputs)} are not one beat window",
                expected="a single beat-window input, or inputs whose manifest says how the stream derives them",
                fix=_FIX)
        features = {spec.name: StreamFeature.BEAT_WINDOW}
    windows = [spec for spec in inputs if features[spec.name] in WINDOW_FEATURES]
    if not windows:
        raise UnsupportedBundleError("the bundle has no beat-window input for the ECG stream",
                                     expected="a beat_window or template_residual input: its rate and window "
                                     "set the stream's model rate and cut", fix=_FIX)
    rate, before, samples = _one({(spec.sample_rate_hz, spec.r_peak_index, spec.window_samples) for spec in windows},
                                 "sample rate and beat window (rate, samples before, samples)")
    for spec in windows:
        if spec.sample_shape not in ((samples,), (samples, 1)):
            raise UnsupportedBundleError(f"input '{spec.name}' of shape {list(spec.shape)}",
                                         expected=f"[null, {samples}] or [null, {samples}, 1]: one lead", fix=_FIX)
    derivations = [spec.derived for spec in inputs if spec.derived is not None]
    return StreamInputs(
        features=features,
        shapes={spec.name: spec.sample_shape for spec in inputs},
        sample_rate_hz=float(rate),
        before=before,
        after=samples - before,
        rr=_one({item.rr for item in derivations if item.rr is not None}, "RR settings"),
        template=_one({item.template for item in derivations if item.template is not None}, "template settings"),
        declared=declared,
    )


class BeatInputStream:
    """Fills the inputs of a block's beats in time order, one segment at a time (see the module docstring).

    ``push`` and ``finish`` decide which beats are filled (their RR context is known) and keep the RR integers and
    the segments' ends; ``columns`` computes everything a filled beat's judgement needs — RR features, warm-up,
    template membership, z-scored windows — for all the beats filled since it last ran, in one pass (the stream
    calls it once per release); the template residual itself is computed when the beat is classified
    (``model_inputs``). Every number is the one a beat-by-beat computation gives: the arithmetic is row by row.
    """

    def __init__(self, plan: StreamInputs, warm_up_template_beats: int,
                 trace: Callable[[BeatTrace], None] | None = None) -> None:
        self.plan = plan
        self.trace = trace
        self._rr = None if plan.rr is None else RrColumnStream(plan.sample_rate_hz, plan.rr)
        self._template = None if plan.template is None else TemplateMembers(plan.template)
        self._template_minimum = 0 if plan.template is None else min(plan.template.history_beats,
                                                                     max(0, warm_up_template_beats))
        self._held: tuple[BeatBlock, int] | None = None  # (block, row) waiting for the next beat (its post-RR)
        self._filled: list[tuple[BeatBlock, int, int]] = []  # filled beats not yet computed: (block, first, end)
        self._intervals = RrIntervals()  # their RR integers, in the same order
        self._restarts: list[int] = []  # template segments begin before these of them
        self._count = 0  # beats in _filled
        self._computed: BeatInputColumns | None = None  # computed beats not yet taken (in order)

    def push(self, block: BeatBlock, first: int, end: int) -> None:
        """Rows ``first:end`` of ``block``, the segment's next beats: without RR they are filled now, with RR the held
        beat and all of them but the last are."""
        if end <= first:
            return
        if self._rr is None:
            self._fill(block, first, end)
            return
        if self._rr.push_into(block.peaks[first:end], self._intervals):
            if self._held is not None:
                self._fill(self._held[0], self._held[1], self._held[1] + 1)
            if end - 1 > first:
                self._fill(block, first, end - 1)
        self._held = (block, end - 1)

    def finish(self) -> None:
        """The segment ends: the held beat is filled (its post-RR missing); RR history and template restart."""
        if self._rr is not None and self._rr.finish_into(self._intervals) and self._held is not None:
            block, row = self._held
            self._fill(block, row, row + 1)
        self._held = None
        if self._template is not None:
            self._restarts.append(self._count)

    def _fill(self, block: BeatBlock, first: int, end: int) -> None:
        filled = self._filled
        if filled and filled[-1][0] is block and filled[-1][2] == first:
            filled[-1] = (block, filled[-1][1], end)
        else:
            filled.append((block, first, end))
        self._count += end - first
        block.filled = end

    def columns(self, count: int) -> BeatInputColumns:
        """The computed inputs of the next ``count`` filled beats (the oldest not taken yet), in order."""
        if self._filled:
            computed = self._compute()
            self._computed = computed if self._computed is None else BeatInputColumns.joined(self._computed, computed)
        available = 0 if self._computed is None else len(self._computed)
        if available < count:  # the stream releases only filled beats: a broken invariant, not bad input
            raise RuntimeError(f"the inputs of {count} beats were asked for; {available} were filled")
        taken, self._computed = self._computed.head(count)
        return taken

    def _compute(self) -> BeatInputColumns:
        """Everything a judgement needs, for the beats filled since the last call (one pass; see the class)."""
        parts, count = self._filled, self._count
        if len(parts) == 1:
            block, first, end = parts[0]
            windows, flags = block.windows[first:end], block.flags[first:end]
        else:
            windows = np.concatenate([block.windows[first:end] for block, first, end in parts])
            flags = [item for block, first, end in parts for item in block.flags[first:end]]
        warming = None
        rr_ms = np.full((count, 3), np.nan)
        rr = None
        if self._rr is not None:
            columns = self._intervals.columns(self.plan.sample_rate_hz)
            rr = columns.features
            warming = (columns.pre_samples == NO_INTERVAL) | (columns.history_intervals < self.plan.rr.history_beats)
            rate = self.plan.sample_rate_hz
            measured = np.stack([columns.pre_samples, columns.post_samples], axis=1)  # pre and post at once
            rr_ms[:, :2] = np.where(measured != NO_INTERVAL, 1000.0 * measured / rate, np.nan)
            rr_ms[:, 2] = np.where(columns.local_intervals > 0, 1000.0 * rr[:, LOCAL_RR].astype(np.float64), np.nan)
        scored = starts = stops = None
        if self._template is not None:
            scored = zscore_windows(windows, self._template.config)
            ratios = rr[:, PRE_TO_LOCAL] if rr is not None else np.ones(count, dtype=np.float32)
            starts, stops = self._template.add(scored, ratios, self._restarts)
            short = (stops - starts) < self._template_minimum
            warming = short if warming is None else warming | short
        if warming is not None and warming.any():
            flags = list(flags)
            for row in np.flatnonzero(warming).tolist():
                flags[row] = tuple(sorted({*flags[row], QualityFlag.WARMING_UP.value}))
        # with derived inputs only a beat without quality flags is judged; otherwise every beat in a readable ECG is
        if self.plan.declared:
            judged = np.array([not item for item in flags], dtype=bool)
        else:
            judged = np.array([UNREADABLE_FLAGS.isdisjoint(item) for item in flags], dtype=bool)
        self._filled, self._intervals, self._restarts, self._count = [], RrIntervals(), [], 0
        return BeatInputColumns(flags, judged, rr_ms, windows, rr, scored, starts, stops)

    def model_inputs(self, rows: BeatRows, positions: np.ndarray) -> dict[str, np.ndarray]:
        """Input name → the inputs of the beats at ``positions`` of ``rows``, shaped as the model takes them (every
        beat of ``rows`` is traced first, when a trace was asked for)."""
        if self.trace is not None:
            everything = self._inputs(rows, np.arange(len(rows)))
            for index, peak in enumerate(rows.peaks.tolist()):
                self.trace(BeatTrace(peak, rows.times[index], {name: values[index].copy() for name, values in
                                                                everything.items()},
                                     rows.flags[index], bool(rows.judged[index])))
            return {name: values[positions] for name, values in everything.items()}
        return self._inputs(rows, positions)

    def _inputs(self, rows: BeatRows, positions: np.ndarray) -> dict[str, np.ndarray]:
        count = len(positions)
        every = count == len(rows)  # every beat (positions is 0 … n−1): no gathering copy
        columns = rows.inputs
        values: dict[StreamFeature, np.ndarray | None] = dict.fromkeys(StreamFeature)
        wanted = set(self.plan.features.values())
        if StreamFeature.BEAT_WINDOW in wanted:
            values[StreamFeature.BEAT_WINDOW] = columns.windows if every else columns.windows[positions]
        if StreamFeature.TEMPLATE_RESIDUAL in wanted:
            if every:
                scored, starts, stops = columns.scored, columns.template_starts, columns.template_stops
            else:
                scored, starts = columns.scored[positions], columns.template_starts[positions]
                stops = columns.template_stops[positions]
            values[StreamFeature.TEMPLATE_RESIDUAL] = self._template.residuals(scored, starts, stops)
        if StreamFeature.RR_FEATURES in wanted:
            values[StreamFeature.RR_FEATURES] = columns.rr if every else columns.rr[positions]
        return {name: values[feature].reshape((count, *self.plan.shapes[name]))
                for name, feature in self.plan.features.items()}

    def forget_members(self) -> None:
        """Drop template members that neither the computed beats not taken yet nor the next beats can need."""
        if self._template is not None:
            reach = self._template.total - self._template.config.history_beats
            pending = self._computed
            if pending is not None and len(pending):
                reach = min(reach, int(pending.template_starts.min()))
            self._template.forget_before(reach)
