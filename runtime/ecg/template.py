"""A causal running beat template: each beat minus the median of the beats before it (batch and streaming).

A device can keep the last ``history_beats`` beat windows of its own patient and report how a new
beat differs from their per-sample median: an ectopic (ventricular) beat differs in shape from the
patient's usual beat even when its absolute shape looks ordinary across patients. Windows are
z-scored first (mean 0, standard deviation 1 over time), so the residual is in units of the beat's
own spread and does not depend on the front end's gain or baseline.

The template of beat i is the median of the z-scored windows of the last ``history_beats`` beats
before it that joined the template. With ``minimum_pre_to_local = 0`` every detected beat joins
(whatever its class: the device does not know it). With a gate such as 0.9, a premature beat — its
pre-RR under that share of the local mean RR (``runtime.ecg.rr_features``: ``pre_to_local``) —
does not join, so in bigeminy the template stays the patient's own normal beat instead of a blend
of normal and ectopic beats. A beat before any beat joined has no template and a residual of zeros.
``template_residuals`` (training) and ``RunningTemplate`` (device) share the arithmetic and agree
bit for bit. On the device the pre-to-local ratio is known when the beat's RR features are.
"""

from __future__ import annotations

import numpy as np

from runtime.contract.derived import TemplateConfig
from runtime.errors import EdgemedError

__all__ = ["DEFAULT_TEMPLATE", "RunningTemplate", "TemplateConfig", "TemplateError", "template_residuals",
           "zscore_windows"]


class TemplateError(EdgemedError):
    """Beat windows of the wrong shape or type for the running template."""


DEFAULT_TEMPLATE = TemplateConfig()


def zscore_windows(windows: np.ndarray, config: TemplateConfig = DEFAULT_TEMPLATE) -> np.ndarray:
    """Each row minus its mean, divided by its standard deviation (float64, same shape)."""
    values = np.asarray(windows, dtype=np.float64)
    width = values.shape[1]  # means as np.mean computes them (a sum, divided by the count), without its overhead
    mean = np.add.reduce(values, axis=1, keepdims=True)
    mean /= width
    centred = values - mean
    squares = centred * centred
    spread = np.add.reduce(squares, axis=1, keepdims=True)
    spread /= width
    np.sqrt(spread, out=spread)
    np.maximum(spread, config.minimum_std, out=spread)
    centred /= spread
    return centred


def _as_windows(windows: np.ndarray) -> np.ndarray:
    values = np.asarray(windows)
    if values.ndim != 2 or values.dtype.kind not in "biuf" or values.shape[1] < 2:
        raise TemplateError(f"beat windows of {values.dtype} {values.shape}", expected="(beats, samples) numbers",
                            fix="pass one window per row")
    return values


def _joins(pre_to_local: float, config: TemplateConfig) -> bool:
    return bool(config.history_beats) and not pre_to_local < config.minimum_pre_to_local  # NaN joins


def template_residuals(
    windows: np.ndarray, pre_to_local: np.ndarray | None = None, config: TemplateConfig = DEFAULT_TEMPLATE
) -> np.ndarray:
    """z-scored window minus the median of the earlier template beats: float32, (beats, samples).

    ``pre_to_local``: each beat's pre-RR / local-RR ratio (None: every beat counts as 1.0 and joins).
    """
    values = _as_windows(windows)
    ratios = np.ones(values.shape[0]) if pre_to_local is None else np.asarray(pre_to_local, dtype=np.float64)
    if ratios.shape != (values.shape[0],):
        raise TemplateError(f"{ratios.shape} pre-to-local ratios for {values.shape[0]} windows",
                            expected="one ratio per window", fix="pass rr_features(...)[:, 3]")
    scored = zscore_windows(values, config)
    residuals = np.zeros(scored.shape, dtype=np.float32)
    members: list[int] = []
    for index in range(scored.shape[0]):
        if members:
            template = np.median(scored[members[-config.history_beats :]], axis=0)
            residuals[index] = (scored[index] - template).astype(np.float32)
        if _joins(float(ratios[index]), config):
            members.append(index)
    return residuals


class RunningTemplate:
    """Streaming ``template_residuals``: ``push`` each beat window in time order; ``reset`` at a gap.

    The history is a ring of columns (samples × beats, each sample's history contiguous), so the per-sample median
    is one ``np.partition`` along rows at the middle rank(s) — the values ``np.median`` picks (and averages, for an
    even count, as ``(a + b) / 2`` like it): bit for bit ``template_residuals``' median, at a third of its cost.
    """

    def __init__(self, config: TemplateConfig = DEFAULT_TEMPLATE) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        self._ring: np.ndarray | None = None  # (samples, history_beats), allocated at the first beat
        self._count = 0  # beats in the template (≤ history_beats)
        self._next = 0  # the ring column the next joining beat overwrites

    @property
    def size(self) -> int:
        """Beats in the template now (the median the next beat is compared with)."""
        return self._count

    def _median(self) -> np.ndarray:
        history = self._ring if self._count == self._ring.shape[1] else self._ring[:, : self._count]
        middle = self._count // 2
        if self._count % 2:
            return np.partition(history, middle, axis=1)[:, middle]
        ranked = np.partition(history, (middle - 1, middle), axis=1)
        return (ranked[:, middle - 1] + ranked[:, middle]) / 2

    def push(self, window: np.ndarray, pre_to_local: float = 1.0) -> np.ndarray:
        """This beat's residual (float32, like the window); then the beat joins the template if its
        pre-RR / local-RR ratio passes the gate."""
        scored = zscore_windows(_as_windows(np.asarray(window)[None, :]), self.config)[0]
        if self._count:
            residual = (scored - self._median()).astype(np.float32)
        else:
            residual = np.zeros(scored.shape, dtype=np.float32)
        if _joins(float(pre_to_local), self.config):
            width = max(1, self.config.history_beats)
            if self._ring is None or self._ring.shape[0] != scored.shape[0]:
                self._ring, self._count, self._next = np.empty((scored.shape[0], width)), 0, 0
            self._ring[:, self._next] = scored
            self._next = (self._next + 1) % width
            self._count = min(self._count + 1, width)
        return residual
