"""The values a model input was developed on: what the device may give a class to, and what it must flag.

A model answers for any numbers it is fed, with full confidence: a breast-biopsy row in the wrong units, or a
signal window of another shape than any it learnt from, gets a class like any other. ``InputDomain`` records,
per input and per column (a tabular input's features; a waveform's channels), the range of the values the model
was developed on, widened by a ``margin`` of that range on each side; for a waveform also the range of each
window's spread (its maximum − minimum per channel, widened by the same share). A waveform whose graph normalises
each window (a per-window z-score) is blind to units and offset: its domain is measured on the z-scored windows
(``DomainScale.WINDOW_ZSCORE``) and bounds their shape only. The build measures it on the development rows
(training, validation and calibration splits; never the test split) and checks how many rows of the held-out
test split fall outside (``held_out_outside`` of ``held_out_rows``): a domain that refuses real held-out rows is
too tight, and the report says so.

On the device a row, beat or window whose model input falls outside is flagged ``out_of_domain`` and gets no
class (``runtime.domain``): it is reported, never judged. A manifest without a domain (a bundle built before it)
is not range-checked.

Dependency rule: the standard library and ``runtime.contract``'s own modules only (no numpy here).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from runtime.contract.errors import invalid, show
from runtime.contract.fields import Fields, is_number


class DomainScale(StrEnum):
    """How a row's values are seen before they are compared with the domain."""

    AS_FED = "as_fed"  # the values the model is fed (units matter: the model does not normalise them away)
    # Each window and channel z-scored over time first, as a graph that normalises its input per window does: the
    # model is blind to units and offset, so the domain bounds only the window's shape (its extremes in standard
    # deviations, and its range in them).
    WINDOW_ZSCORE = "window_zscore"


DEFAULT_DOMAIN_MARGIN = 0.25  # share of the development range added on each side
MAX_DOMAIN_MARGIN = 10.0


def _finite(values: tuple[float, ...]) -> bool:
    return all(is_number(value) for value in values)  # is_number: finite, never a boolean


@dataclass(frozen=True)
class InputDomain:
    """The accepted values of one input, per column (tabular: feature; waveform: channel)."""

    low: tuple[float, ...]  # a value below is outside
    high: tuple[float, ...]  # a value above is outside
    spread_low: tuple[float, ...] | None = None  # waveform: a window whose max − min (per channel) is below
    spread_high: tuple[float, ...] | None = None  # waveform: … or above is outside
    margin: float = DEFAULT_DOMAIN_MARGIN  # what was added to the development range (a share of it, each side)
    scale: DomainScale = DomainScale.AS_FED  # how the values are seen first (waveforms may be z-scored per window)
    basis: str = ""  # what the range was measured on, e.g. "development rows (training, validation, …): 14,027"
    held_out_rows: int = 0  # rows of the held-out test split checked against the domain at build time
    held_out_outside: int = 0  # … of which outside (the device would flag them)

    def __post_init__(self) -> None:
        for name in ("low", "high", "spread_low", "spread_high"):
            value = getattr(self, name)
            if isinstance(value, list | tuple) and _finite(tuple(value)):
                object.__setattr__(self, name, tuple(float(item) for item in value))
        columns = len(self.low) if isinstance(self.low, tuple) else 0
        for name in ("low", "high"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not value or not _finite(value) or len(value) != columns:
                raise invalid(name, show(value), "one finite number per column (features, or channels)")
        if any(low > high for low, high in zip(self.low, self.high, strict=True)):
            raise invalid("high", show(list(self.high)), "at least low in every column")
        spreads = (self.spread_low, self.spread_high)
        if (spreads[0] is None) != (spreads[1] is None):
            raise invalid("spread_high" if spreads[1] is None else "spread_low", "null",
                          "both spread bounds, or neither (tabular inputs have none)")
        if spreads[0] is not None:
            for name, value in zip(("spread_low", "spread_high"), spreads, strict=True):
                if not isinstance(value, tuple) or len(value) != columns or not _finite(value) or min(value) < 0:
                    raise invalid(name, show(value), "one finite number ≥ 0 per channel")
            if any(low > high for low, high in zip(*spreads, strict=True)):
                raise invalid("spread_high", show(list(self.spread_high)), "at least spread_low in every channel")
        if self.scale not in tuple(DomainScale):
            raise invalid("scale", show(self.scale), f"one of {', '.join(DomainScale)}")
        object.__setattr__(self, "scale", DomainScale(self.scale))
        if not is_number(self.margin) or not 0 <= self.margin <= MAX_DOMAIN_MARGIN:
            raise invalid("margin", show(self.margin), f"a share of the range from 0 to {MAX_DOMAIN_MARGIN:g}")
        if not isinstance(self.basis, str):
            raise invalid("basis", show(self.basis), "a description of the rows the range was measured on")
        for name in ("held_out_rows", "held_out_outside"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise invalid(name, show(value), "a count ≥ 0")
        if self.held_out_outside > self.held_out_rows:
            raise invalid("held_out_outside", show(self.held_out_outside), f"at most held_out_rows "
                          f"({self.held_out_rows})")

    @property
    def columns(self) -> int:
        return len(self.low)

    @property
    def has_spread(self) -> bool:
        return self.spread_low is not None

    def to_dict(self) -> dict:
        return {"low": list(self.low), "high": list(self.high),
                "spread_low": None if self.spread_low is None else list(self.spread_low),
                "spread_high": None if self.spread_high is None else list(self.spread_high),
                "margin": self.margin, "scale": self.scale.value, "basis": self.basis,
                "held_out_rows": self.held_out_rows, "held_out_outside": self.held_out_outside}

    @classmethod
    def from_fields(cls, fields: Fields) -> InputDomain:
        spread_low = fields.value("spread_low", "a list of numbers or null")
        spread_high = fields.value("spread_high", "a list of numbers or null")
        domain = cls(
            low=fields.numbers("low"),
            high=fields.numbers("high"),
            spread_low=None if spread_low is None else fields.numbers("spread_low"),
            spread_high=None if spread_high is None else fields.numbers("spread_high"),
            margin=fields.number("margin"),
            scale=fields.choice("scale", DomainScale, tuple(scale.value for scale in DomainScale)),
            basis=fields.text("basis", empty=True),
            held_out_rows=fields.integer("held_out_rows", minimum=0),
            held_out_outside=fields.integer("held_out_outside", minimum=0),
        )
        fields.done()
        return domain
