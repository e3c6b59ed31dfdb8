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
window, is fed as cut; every beat is judged, flagged or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from runtime.contract import InputSpec, UnsupportedBundleError
from runtime.contract.derived import WINDOW_FEATURES, RrFeatureConfig, StreamFeature, TemplateConfig
from runtime.ecg.beats import BeatBlock, BeatRows
from runtime.ecg.quality import QualityFlag
from runtime.ecg.rr_columns import NO_INTERVAL, RrColumns, RrColumnStream
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

    Everything a beat's judgement needs (RR features, warm-up, template membership) is decided when it is filled; the
    template residual itself is computed when the beat is classified (``model_inputs``), for a release at a time.
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

    def push(self, block: BeatBlock, first: int, end: int) -> None:
        """Rows ``first:end`` of ``block``, the segment's next beats: without RR they are filled now, with RR the held
        beat and all of them but the last are."""
        if end <= first:
            return
        if self._rr is None:
            self._fill([(block, first, end)], None)
            return
        completed = self._rr.push(block.peaks[first:end])
        parts = [] if self._held is None else [(self._held[0], self._held[1], self._held[1] + 1)]
        if end - 1 > first:
            parts.append((block, first, end - 1))
        if completed is not None:
            self._fill(parts, completed)
        self._held = (block, end - 1)

    def finish(self) -> None:
        """The segment ends: the held beat is filled (its post-RR missing); RR history and template restart."""
        if self._rr is not None:
            completed = self._rr.finish()
            if completed is not None and self._held is not None:
                block, row = self._held
                self._fill([(block, row, row + 1)], completed)
        self._held = None
        if self._template is not None:
            self._template.restart()

    def _fill(self, parts: list[tuple[BeatBlock, int, int]], rr: RrColumns | None) -> None:
        windows = np.concatenate([block.windows[first:end] for block, first, end in parts])
        count = len(windows)
        warming = np.zeros(count, dtype=bool)
        rr_ms = np.full((count, 3), np.nan)
        if rr is not None:
            warming |= (rr.pre_samples == NO_INTERVAL) | (rr.history_intervals < self.plan.rr.history_beats)
            rate = self.plan.sample_rate_hz
            measured = np.stack([rr.pre_samples, rr.post_samples], axis=1)  # pre and post at once
            rr_ms[:, :2] = np.where(measured != NO_INTERVAL, 1000.0 * measured / rate, np.nan)
            rr_ms[:, 2] = np.where(rr.local_intervals > 0, 1000.0 * rr.features[:, LOCAL_RR].astype(np.float64),
                                   np.nan)
        scored = starts = stops = None
        if self._template is not None:
            scored = zscore_windows(windows, self._template.config)
            ratios = rr.features[:, PRE_TO_LOCAL] if rr is not None else np.ones(count, dtype=np.float32)
            starts, stops = self._template.add(scored, ratios)
            warming |= (stops - starts) < self._template_minimum
        offset = 0
        for block, first, end in parts:
            rows = slice(offset, offset + end - first)
            if rr is not None:
                if block.rr is None:
                    block.rr = np.zeros((len(block), len(RR_FEATURE_NAMES)), dtype=np.float32)
                block.rr[first:end] = rr.features[rows]
            block.rr_ms[first:end] = rr_ms[rows]
            if scored is not None:
                if block.scored is None:
                    block.scored = np.zeros(block.windows.shape)
                block.scored[first:end] = scored[rows]
                block.template_starts[first:end] = starts[rows]
                block.template_stops[first:end] = stops[rows]
            for row in (first + np.flatnonzero(warming[rows])).tolist():
                block.flags[row] = tuple(sorted({*block.flags[row], QualityFlag.WARMING_UP.value}))
            # with derived inputs only a beat without quality flags is judged; otherwise every beat is
            block.judged[first:end] = [not flags for flags in block.flags[first:end]] if self.plan.declared else True
            block.filled = end
            offset += end - first

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
        values: dict[StreamFeature, np.ndarray | None] = {StreamFeature.BEAT_WINDOW: None,
                                                         StreamFeature.TEMPLATE_RESIDUAL: None,
                                                         StreamFeature.RR_FEATURES: None}
        wanted = set(self.plan.features.values())
        if StreamFeature.BEAT_WINDOW in wanted:
            values[StreamFeature.BEAT_WINDOW] = rows.column("windows")[positions]
        if StreamFeature.TEMPLATE_RESIDUAL in wanted:
            values[StreamFeature.TEMPLATE_RESIDUAL] = self._template.residuals(
                rows.column("scored")[positions], rows.column("template_starts")[positions],
                rows.column("template_stops")[positions])
        if StreamFeature.RR_FEATURES in wanted:
            values[StreamFeature.RR_FEATURES] = rows.column("rr")[positions]
        return {name: values[feature].reshape((count, *self.plan.shapes[name]))
                for name, feature in self.plan.features.items()}

    def forget_members(self, pending_starts: int | None) -> None:
        """Drop template members that neither the beats still to classify (their first member at
        ``pending_starts``) nor the next beats can need."""
        if self._template is not None:
            reach = self._template.total - self._template.config.history_beats
            self._template.forget_before(reach if pending_starts is None else min(reach, pending_starts))
