"""How the device derives a model input from the ECG stream, with every setting training used.

An ``InputSpec`` whose ``derived`` is set is not fed as given: the ECG stream computes it for every
detected beat (``runtime.ecg.beat_inputs``) with the same runtime functions training called on the
same detector's peaks (``runtime.ecg.rr_features``, ``runtime.ecg.template``):

* ``beat_window`` — the signal around the R-peak, cut as the input's window says (float32);
* ``template_residual`` — the z-scored beat window minus the running template of earlier beats, which
  a beat joins only when its pre-RR / local RR passes ``TemplateConfig.minimum_pre_to_local`` (so it
  needs the RR settings too);
* ``rr_features`` — ``RR_FEATURE_NAMES`` of the beat; its post-RR needs the next beat, so a bundle
  with RR-derived inputs is decided one beat late.

Waveform models that are not beat-based (EEG, PPG, vital-sign series) declare ``signal_window``: the
windowed stream (``runtime.windows``) cuts fixed windows every ``WindowConfig.hop_s`` seconds, flags the
ones it cannot judge (non-finite samples, flat line, clipping) and normalises them as training did.

The settings (``RrFeatureConfig``, ``TemplateConfig``) are defined here, once: training builds the
inputs with them and the manifest carries every field, so the device never assumes a code default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from runtime.contract.errors import invalid, show
from runtime.contract.fields import Fields, is_integer, is_number

RR_FEATURE_NAMES = ("pre_rr_s", "post_rr_s", "local_rr_s", "pre_to_local", "post_to_local", "pre_to_post")
MAX_HISTORY_BEATS = 10_000  # RR and template histories are at most this long
MAX_SECONDS = 1e6  # RR settings in seconds stay below this

T = TypeVar("T")


class StreamFeature(StrEnum):
    """What the ECG stream computes for an input, per detected beat."""

    BEAT_WINDOW = "beat_window"  # the signal around the R-peak (window_before_s / window_after_s)
    TEMPLATE_RESIDUAL = "template_residual"  # z-scored window minus the running template of earlier beats
    RR_FEATURES = "rr_features"  # RR_FEATURE_NAMES; the post-RR needs the next beat
    SIGNAL_WINDOW = "signal_window"  # a fixed window every hop_s seconds (runtime.windows), not beat-based


WINDOW_FEATURES = frozenset({StreamFeature.BEAT_WINDOW, StreamFeature.TEMPLATE_RESIDUAL})  # waveform inputs
RR_FEATURES_NEEDED = frozenset({StreamFeature.RR_FEATURES, StreamFeature.TEMPLATE_RESIDUAL})  # need RrFeatureConfig


def _count(value: object) -> bool:
    return is_integer(value) and 0 <= value <= MAX_HISTORY_BEATS


def _positive(value: object) -> bool:
    return is_number(value) and 0 < value < MAX_SECONDS


@dataclass(frozen=True)
class RrFeatureConfig:
    """RR features (``runtime.ecg.rr_features``): training and the device compute them with these."""

    history_beats: int = 10  # local RR = mean of up to this many intervals before the beat's pre-RR
    max_rr_s: float = 3.0  # longer intervals (pauses, gaps) are clipped to this and left out of the local mean
    default_rr_s: float = 1.0  # every interval of a one-beat segment (there is none to measure)

    def __post_init__(self) -> None:
        if not _count(self.history_beats):
            raise invalid("history_beats", show(self.history_beats), f"an integer from 0 to {MAX_HISTORY_BEATS}")
        for name in ("max_rr_s", "default_rr_s"):
            if not _positive(getattr(self, name)):
                raise invalid(name, show(getattr(self, name)), "positive seconds")

    def to_dict(self) -> dict:
        return {"history_beats": self.history_beats, "max_rr_s": self.max_rr_s, "default_rr_s": self.default_rr_s}

    @classmethod
    def from_fields(cls, fields: Fields) -> RrFeatureConfig:
        config = cls(fields.integer("history_beats", minimum=0), fields.number("max_rr_s"),
                     fields.number("default_rr_s"))
        fields.done()
        return config


@dataclass(frozen=True)
class TemplateConfig:
    """The running beat template (``runtime.ecg.template``): training and the device use these."""

    history_beats: int = 30  # the template is the per-sample median of this many previous beats (~30 s)
    minimum_std: float = 1e-6  # a window flatter than this is divided by this instead (no division by zero)
    minimum_pre_to_local: float = 0.0  # a beat joins the template only if its pre-RR / local RR is at least this

    def __post_init__(self) -> None:
        if not _count(self.history_beats) or self.history_beats < 1:
            raise invalid("history_beats", show(self.history_beats), f"an integer from 1 to {MAX_HISTORY_BEATS}")
        if not _positive(self.minimum_std):
            raise invalid("minimum_std", show(self.minimum_std), "a small positive number")
        if not is_number(self.minimum_pre_to_local) or not 0 <= self.minimum_pre_to_local < MAX_SECONDS:
            raise invalid("minimum_pre_to_local", show(self.minimum_pre_to_local), "a ratio ≥ 0 (0: every beat joins)")

    def to_dict(self) -> dict:
        return {"history_beats": self.history_beats, "minimum_std": self.minimum_std,
                "minimum_pre_to_local": self.minimum_pre_to_local}

    @classmethod
    def from_fields(cls, fields: Fields) -> TemplateConfig:
        config = cls(fields.integer("history_beats", minimum=1), fields.number("minimum_std"),
                     fields.number("minimum_pre_to_local"))
        fields.done()
        return config


class WindowNormalization(StrEnum):
    """What the device does to a window before the model (training did the same, with the same function)."""

    NONE = "none"  # fed in the signal's own units (the graph normalises, or the model wants units)
    ZSCORE = "zscore"  # per window and channel: (x - mean) / max(std, minimum_std)


@dataclass(frozen=True)
class WindowConfig:
    """The windowed stream (``runtime.windows``): training cuts and judges windows with these, and so does
    the device. Window length is the input's shape (axis 1) at its ``sample_rate_hz``.

    The quality checks are unit-free (a device's ADC counts and the build's units give the same flags):
    a window is *flat* when at least ``flat_fraction`` of its successive differences are 0 or its spread is
    below ``minimum_std`` (in input units); *clipped* when at least ``clipping_fraction`` of its samples, and at
    least 3 (``runtime.windows.quality.MIN_CLIPPED_SAMPLES``), sit at its own minimum or maximum — within
    ``clipping_band`` of the window's range of it (0: exactly at it). A saturated amplifier jitters a few counts on
    its rail and resampling overshoots it, so a scenario whose recordings do that sets a band; a smooth peak also
    has samples near its top (a sine: ~3 % per side within 0.2 % of its range, more in a window holding only its
    crest), so the band is checked against the scenario's clean windows, not assumed; *non-finite* when
    any sample is NaN/inf (a gap), or the normalised window is not finite in float32. A flagged window is never
    given a class: the stream reports its flags instead.
    """

    hop_s: float  # a window starts every hop_s seconds (≤ window: overlapping or touching windows)
    normalization: WindowNormalization = WindowNormalization.ZSCORE
    minimum_std: float = 1e-6  # z-score divides by at least this; a spread below it is a flat window
    flat_fraction: float = 0.9  # share of zero successive differences that makes a window flat
    clipping_fraction: float = 0.05  # share of samples at the window's own min or max that makes it clipped
    clipping_band: float = 0.0  # "at" the extreme: within this share of the window's range (max - min) of it

    def __post_init__(self) -> None:
        if not _positive(self.hop_s):
            raise invalid("hop_s", show(self.hop_s), "positive seconds")
        if self.normalization not in tuple(WindowNormalization):
            raise invalid("normalization", show(self.normalization), f"one of {', '.join(WindowNormalization)}")
        object.__setattr__(self, "normalization", WindowNormalization(self.normalization))
        if not _positive(self.minimum_std):
            raise invalid("minimum_std", show(self.minimum_std), "a small positive number")
        for name in ("flat_fraction", "clipping_fraction"):
            value = getattr(self, name)
            if not is_number(value) or not 0 < value <= 1:
                raise invalid(name, show(value), "a fraction in (0, 1]")
        if not is_number(self.clipping_band) or not 0 <= self.clipping_band < 0.5:
            raise invalid("clipping_band", show(self.clipping_band), "a share of the window's range in [0, 0.5)")

    def to_dict(self) -> dict:
        return {"hop_s": self.hop_s, "normalization": self.normalization.value, "minimum_std": self.minimum_std,
                "flat_fraction": self.flat_fraction, "clipping_fraction": self.clipping_fraction,
                "clipping_band": self.clipping_band}

    @classmethod
    def from_fields(cls, fields: Fields) -> WindowConfig:
        config = cls(
            hop_s=fields.number("hop_s"),
            normalization=fields.choice("normalization", WindowNormalization,
                                        tuple(item.value for item in WindowNormalization)),
            minimum_std=fields.number("minimum_std"),
            flat_fraction=fields.number("flat_fraction"),
            clipping_fraction=fields.number("clipping_fraction"),
            clipping_band=fields.number("clipping_band"),
        )
        fields.done()
        return config


@dataclass(frozen=True)
class Derivation:
    """How the stream computes one input: the feature and the settings it needs (no others)."""

    feature: StreamFeature
    rr: RrFeatureConfig | None = None  # rr_features and template_residual (its gate); None otherwise
    template: TemplateConfig | None = None  # template_residual only
    window: WindowConfig | None = None  # signal_window only

    def __post_init__(self) -> None:
        if self.feature not in tuple(StreamFeature):
            raise invalid("feature", show(self.feature), f"one of {', '.join(StreamFeature)}")
        object.__setattr__(self, "feature", StreamFeature(self.feature))
        for name, kind, needed in (("rr", RrFeatureConfig, self.feature in RR_FEATURES_NEEDED),
                                   ("template", TemplateConfig, self.feature is StreamFeature.TEMPLATE_RESIDUAL),
                                   ("window", WindowConfig, self.feature is StreamFeature.SIGNAL_WINDOW)):
            value = getattr(self, name)
            if needed and not isinstance(value, kind):
                raise invalid(name, show(value), f"the {kind.__name__} training used (a {self.feature} input needs it)")
            if not needed and value is not None:
                raise invalid(name, show(value), f"null: a {self.feature} input does not use it")

    @classmethod
    def beat_window(cls) -> Derivation:
        return cls(StreamFeature.BEAT_WINDOW)

    @classmethod
    def rr_features(cls, rr: RrFeatureConfig) -> Derivation:
        return cls(StreamFeature.RR_FEATURES, rr=rr)

    @classmethod
    def template_residual(cls, template: TemplateConfig, rr: RrFeatureConfig) -> Derivation:
        return cls(StreamFeature.TEMPLATE_RESIDUAL, rr=rr, template=template)

    @classmethod
    def signal_window(cls, window: WindowConfig) -> Derivation:
        return cls(StreamFeature.SIGNAL_WINDOW, window=window)

    def to_dict(self) -> dict:
        # "window" is written only when set, so beat-stream manifests read on runtimes that predate it
        return {"feature": self.feature.value,
                "rr": None if self.rr is None else self.rr.to_dict(),
                "template": None if self.template is None else self.template.to_dict(),
                } | ({} if self.window is None else {"window": self.window.to_dict()})

    @classmethod
    def from_fields(cls, fields: Fields) -> Derivation:
        derivation = cls(
            feature=fields.choice("feature", StreamFeature, tuple(feature.value for feature in StreamFeature)),
            rr=_nullable(fields, "rr", RrFeatureConfig.from_fields),
            template=_nullable(fields, "template", TemplateConfig.from_fields),
            window=fields.optional_section("window", WindowConfig.from_fields),
        )
        fields.done()
        return derivation


def _nullable(fields: Fields, key: str, parse: Callable[[Fields], T]) -> T | None:
    """A nested object or null; the key itself must be there (every key of a derivation is written)."""
    if fields.value(key, "an object or null") is None:
        return None
    return fields.section(key, parse)

