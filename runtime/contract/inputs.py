"""One model input of a bundle: its graph name, shape, dtype and what the device feeds it.

A bundle lists one ``InputSpec`` per graph input (a model may take a beat window and a row of
RR features). Waveform inputs carry their sample rate and, for beat windows, the seconds before
and after the R-peak; tabular inputs carry their column names. ``derived`` says how the ECG stream
computes the input per beat (``runtime.contract.derived``: a beat window, a template residual, RR
features, with the settings training used); None: the input is fed as given (rows, ``.npz`` arrays,
or — for a bundle's only input, when it is a beat window — the stream's window, as before ``derived``).
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.contract.derived import RR_FEATURE_NAMES, WINDOW_FEATURES, Derivation, StreamFeature
from runtime.contract.domain import DomainScale, InputDomain
from runtime.contract.errors import invalid, show
from runtime.contract.fields import Fields, is_integer, is_number
from runtime.features import FeatureKind
from runtime.leads import is_standard_lead

DTYPES = ("float32",)  # what the runtime feeds; ONNX Runtime takes it without a cast
MAX_DIMENSION = 1 << 24
MAX_RATE_HZ = 1e6  # rates in Hz and windows in seconds stay below this


def _positive(value: float | None) -> bool:
    return value is not None and is_number(value) and 0 < value < MAX_RATE_HZ


@dataclass(frozen=True)
class InputSpec:
    """One graph input and how the device fills it."""

    name: str  # the ONNX graph input's name
    shape: tuple[int | None, ...]  # batch axis first, as None; every other axis fixed
    feature_kind: FeatureKind  # waveform windows or tabular rows (also picks the summary features)
    dtype: str = "float32"
    sample_rate_hz: float | None = None  # waveform: the rate the model was trained at
    window_before_s: float | None = None  # beat windows: seconds before the R-peak
    window_after_s: float | None = None  # beat windows: seconds after the R-peak (R-peak excluded)
    feature_names: tuple[str, ...] = ()  # tabular: the column order
    derived: Derivation | None = None  # how the ECG stream computes it per beat; None: fed as given
    domain: InputDomain | None = None  # the values it was developed on (None: not range-checked; older bundles)
    # waveform: the recorded leads (standard names, runtime.leads) its held-out figures were measured on; a
    # recording that names another lead is refused. (): not declared (a user's model, older bundles, synthetic data)
    leads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        object.__setattr__(self, "leads", tuple(self.leads))
        if self.feature_kind not in tuple(FeatureKind):
            raise invalid("feature_kind", show(self.feature_kind), f"one of {', '.join(FeatureKind)}")
        object.__setattr__(self, "feature_kind", FeatureKind(self.feature_kind))
        if not isinstance(self.name, str) or not self.name.strip():
            raise invalid("name", show(self.name), "the graph input's name")
        shape = self.shape
        if len(shape) < 2 or shape[0] is not None or not all(
            is_integer(d) and 0 < d < MAX_DIMENSION for d in shape[1:]
        ):
            raise invalid("shape", show(list(shape)), "[null (the batch axis), positive integers…]")
        if self.dtype not in DTYPES:
            raise invalid("dtype", show(self.dtype), f"one of {', '.join(DTYPES)}")
        if self.feature_kind is FeatureKind.WAVEFORM:
            self._check_waveform()
        else:
            self._check_tabular()
        if self.derived is not None:
            self._check_derived()
        if self.domain is not None:
            self._check_domain()
        if self.leads:
            self._check_leads()

    def _check_waveform(self) -> None:
        if not _positive(self.sample_rate_hz):
            raise invalid("sample_rate_hz", show(self.sample_rate_hz), "a waveform input's positive rate in Hz")
        windows = (self.window_before_s, self.window_after_s)
        if windows == (None, None):
            return
        for field, value in zip(("window_before_s", "window_after_s"), windows, strict=True):
            if not _positive(value):
                raise invalid(field, show(value), "positive seconds (a beat window needs both sides)")
        if self.window_samples != self.shape[1]:
            raise invalid("shape", f"{list(self.shape)}, but the beat window is {self.window_samples} samples",
                          "axis 1 = round(before × rate) + round(after × rate)")

    def _check_tabular(self) -> None:
        if len(self.shape) != 2:
            raise invalid("shape", show(list(self.shape)), "[null, features] for a tabular input")
        for field in ("sample_rate_hz", "window_before_s", "window_after_s"):
            if getattr(self, field) is not None:
                raise invalid(field, show(getattr(self, field)), "null for a tabular input")
        names = self.feature_names
        if len(names) != self.shape[1] or len(set(names)) != len(names) or not all(
            isinstance(name, str) and name for name in names
        ):
            raise invalid("feature_names", show(list(names)), f"{self.shape[1]} distinct column names")

    def _check_derived(self) -> None:
        if not isinstance(self.derived, Derivation):
            raise invalid("derived", show(self.derived), "a Derivation or null")
        feature = self.derived.feature
        if feature in WINDOW_FEATURES:
            if self.feature_kind is not FeatureKind.WAVEFORM or not self.is_beat_window:
                raise invalid("derived.feature", show(feature.value),
                              "a waveform input with its beat window (window_before_s, window_after_s) for it")
            if self.sample_shape not in ((self.window_samples,), (self.window_samples, 1)):
                raise invalid("shape", show(list(self.shape)),
                              f"[null, {self.window_samples}] or [null, {self.window_samples}, 1]: one lead")
        elif feature is StreamFeature.SIGNAL_WINDOW:
            if self.feature_kind is not FeatureKind.WAVEFORM or self.is_beat_window:
                raise invalid("derived.feature", show(feature.value),
                              "a waveform input without a beat window (window_before_s/window_after_s null)")
            if len(self.shape) not in (2, 3):
                raise invalid("shape", show(list(self.shape)),
                              "[null, samples] or [null, samples, channels] for a signal window")
            if self.hop_samples < 1:
                raise invalid("derived.window.hop_s", show(self.derived.window.hop_s),
                              f"at least one sample at {self.sample_rate_hz} Hz")
        elif feature is StreamFeature.RR_FEATURES and (
            self.feature_kind is not FeatureKind.TABULAR or self.feature_names != RR_FEATURE_NAMES
        ):
            raise invalid("feature_names", show(list(self.feature_names)),
                          f"a tabular input of {list(RR_FEATURE_NAMES)} (runtime.ecg.rr_features) for rr_features")

    def _check_domain(self) -> None:
        if not isinstance(self.domain, InputDomain):
            raise invalid("domain", show(self.domain), "an InputDomain or null")
        tabular = self.feature_kind is FeatureKind.TABULAR
        columns = self.shape[1] if tabular else self.channels
        if self.domain.columns != columns:
            raise invalid("domain.low", f"{self.domain.columns} column(s)",
                          f"{columns}: one per {'feature' if tabular else 'channel'} of input '{self.name}'")
        if tabular and self.domain.scale is not DomainScale.AS_FED:
            raise invalid("domain.scale", show(self.domain.scale.value), "as_fed for a tabular input")
        if self.domain.has_spread == tabular:
            raise invalid("domain.spread_low", "a list" if tabular else "null",
                          "null for a tabular input, per-channel spreads for a waveform")

    def _check_leads(self) -> None:
        if self.feature_kind is not FeatureKind.WAVEFORM:
            raise invalid("leads", show(list(self.leads)), "[] for a tabular input (only a waveform has a lead)")
        if not all(is_standard_lead(lead) for lead in self.leads) or len(set(self.leads)) != len(self.leads):
            raise invalid("leads", show(list(self.leads)),
                          "distinct standard lead or electrode names, e.g. [\"MLII\"] (runtime.leads)")

    @property
    def stream_feature(self) -> StreamFeature | None:
        """What the ECG stream computes for this input (None: fed as given)."""
        return None if self.derived is None else self.derived.feature

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample (no batch axis)."""
        return tuple(int(d) for d in self.shape[1:])

    @property
    def is_beat_window(self) -> bool:
        """A waveform window centred on an R-peak (the ECG stream cuts these)."""
        return self.window_before_s is not None and self.window_after_s is not None

    @property
    def r_peak_index(self) -> int:
        """Index of the R-peak in a beat window: round(before × rate), as in training."""
        if not self.is_beat_window:
            raise invalid("window_before_s", "null", f"a beat window on input '{self.name}'")
        return round(float(self.window_before_s) * float(self.sample_rate_hz))

    @property
    def window_samples(self) -> int:
        """Samples in a window: a beat window's R-peak index plus round(after × rate); a signal window's axis 1."""
        if not self.is_beat_window and self.feature_kind is FeatureKind.WAVEFORM:
            return int(self.shape[1])
        return self.r_peak_index + round(float(self.window_after_s) * float(self.sample_rate_hz))

    @property
    def is_signal_window(self) -> bool:
        """A fixed window cut every hop by the windowed stream (``runtime.windows``)."""
        return self.stream_feature is StreamFeature.SIGNAL_WINDOW

    @property
    def hop_samples(self) -> int:
        """A signal window's hop in samples at the model rate: round(hop_s × rate)."""
        if not self.is_signal_window:
            raise invalid("derived", show(self.stream_feature), f"a signal_window derivation on input '{self.name}'")
        return round(float(self.derived.window.hop_s) * float(self.sample_rate_hz))

    @property
    def channels(self) -> int:
        """Channels of a waveform window: axis 2, or 1 for a [null, samples] input."""
        return int(self.shape[2]) if len(self.shape) == 3 else 1

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "feature_kind": self.feature_kind.value,
            "sample_rate_hz": self.sample_rate_hz,
            "window_before_s": self.window_before_s,
            "window_after_s": self.window_after_s,
            "feature_names": list(self.feature_names),
        } | ({} if self.derived is None else {"derived": self.derived.to_dict()}) | (
            {} if self.domain is None else {"domain": self.domain.to_dict()}) | (
            {"leads": list(self.leads)} if self.leads else {})

    @classmethod
    def from_dict(cls, data: object) -> InputSpec:
        fields = data if isinstance(data, Fields) else Fields(data)
        shape = fields.value("shape")
        if not isinstance(shape, list):
            raise invalid("shape", show(shape), "[null (the batch axis), positive integers…]")
        spec = cls(
            name=fields.text("name"),
            shape=tuple(shape),
            feature_kind=fields.choice("feature_kind", FeatureKind, tuple(kind.value for kind in FeatureKind)),
            dtype=fields.choice("dtype", str, DTYPES),
            sample_rate_hz=fields.number("sample_rate_hz", optional=True),
            window_before_s=fields.number("window_before_s", optional=True),
            window_after_s=fields.number("window_after_s", optional=True),
            feature_names=fields.texts("feature_names", optional=True),
            derived=_derivation(fields),
            domain=fields.optional_section("domain", InputDomain.from_fields),  # absent: built before domains
            leads=fields.added_texts("leads"),  # absent: not declared (written only when declared)
        )
        fields.done()
        return spec


def _derivation(fields: Fields) -> Derivation | None:
    """``derived``: absent or null is an input fed as given. Written only when set, so a manifest without
    one reads on runtimes that predate the key (a runtime that cannot derive refuses the key it does not know)."""
    return fields.optional_section("derived", Derivation.from_fields)
