"""Standard lead and electrode names, and the check that a recording's lead is one its bundle was validated on.

A model's figures hold for the leads it was validated on: a PVC model developed on MIT-BIH's modified limb
lead II (MLII) sees other QRS shapes on V1 or V5. A bundle's waveform inputs declare those leads
(``InputSpec.leads``, the leads of the recordings its held-out gate measured); a recording whose file names
another lead is refused before a sample is judged (``check_recording_lead``), and one that names none runs with
a log line saying the lead was not checked. Names are compared in their standard form (``recorded_channel``):
'Lead II' is II, which is not MLII — a different electrode placement is a different lead.

The names: ECG limb, augmented, chest and Holter modified limb leads (PhysioNet's MLII …), EEG 10-20 electrodes
and bipolar pairs of them. A header cell is named only when it is one of these (compared without case, spaces,
quotes, a unit suffix or a "lead" prefix); any other cell is never shown: a header row may hold a patient's name
or record number.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from runtime.errors import EdgemedError

logger = logging.getLogger(__name__)

_ECG_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6", "MLI", "MLII", "MLIII")
_EEG_ELECTRODES = ("Fp1", "Fp2", "Fpz", "F7", "F3", "Fz", "F4", "F8", "T3", "T4", "T5", "T6", "T7", "T8", "C3", "Cz",
                   "C4", "P7", "P3", "Pz", "P4", "P8", "O1", "Oz", "O2", "A1", "A2", "M1", "M2")
RECORDED_CHANNEL_NAMES = {name.lower(): name for name in _ECG_LEADS + _EEG_ELECTRODES}
_UNIT_SUFFIX = re.compile(r"\([a-zµμ]{1,3}\)$")  # 'V5 (mV)', 'Fp1 (uV)': a unit after the name


def recorded_channel(cell: str) -> str | None:
    """The standard name (``RECORDED_CHANNEL_NAMES``) of a header cell such as 'MLII', "'MLII'" (PhysioNet's CSV
    export quotes its names), 'Lead II', 'V5 (mV)' or 'Fp1-F7' (a bipolar EEG pair), or None when the cell is no
    lead or electrode name."""
    text = _UNIT_SUFFIX.sub("", "".join(cell.split()).strip("'\"").lower())
    text = text.removeprefix("lead")
    pair = text.split("-")
    if len(pair) == 2 and all(part in RECORDED_CHANNEL_NAMES for part in pair):
        return "-".join(RECORDED_CHANNEL_NAMES[part] for part in pair)
    return RECORDED_CHANNEL_NAMES.get(text)


def is_standard_lead(name: object) -> bool:
    """``name`` is a lead or electrode name exactly as ``recorded_channel`` writes it ('MLII', 'V5', 'Fp1-F7')."""
    return isinstance(name, str) and recorded_channel(name) == name


class UnvalidatedLeadError(EdgemedError):
    """The recording names a lead the bundle's model was not validated on: no sample of it is judged."""

    def __init__(self, what: str, *, lead: str, validated: tuple[str, ...], expected: str, fix: str) -> None:
        super().__init__(what, expected=expected, fix=fix)
        self.lead = lead
        self.validated = validated


class LeadStatementError(EdgemedError):
    """The lead stated for a recording is no lead name, or contradicts the one its file names."""


def stated_lead(from_file: str | None, given: str | None, source: str) -> str | None:
    """The recording's lead: what the file names, else what the device says (``--lead``, standard-named); a stated
    lead that is no lead name, or that differs from the file's, is refused (``LeadStatementError``)."""
    if given is None:
        return from_file
    named = recorded_channel(given)
    if named is None:
        raise LeadStatementError(
            f"--lead {given!r} is no standard lead or electrode name",
            expected="a lead such as MLII, II or V5, or an EEG electrode pair such as Fp1-F7 (runtime.leads)",
            fix="pass the lead the device records, by its standard name",
        )
    if from_file is not None and from_file != named:
        raise LeadStatementError(
            f"{source} names lead {from_file}, and --lead says {named}",
            expected="one lead for the recording",
            fix="leave out --lead (the file names its lead), or correct the file's header",
        )
    return named


def validated_leads(inputs: Iterable[object]) -> tuple[str, ...]:
    """The leads the bundle's inputs were validated on (the manifest makes every declaring input name the same
    ones); () when no input declares leads."""
    return next((tuple(spec.leads) for spec in inputs if getattr(spec, "leads", ())), ())


def check_recording_lead(inputs: Iterable[object], lead: str | None, source: str) -> None:
    """Refuse a recording that names a lead its bundle was not validated on (``UnvalidatedLeadError``). A recording
    that names no lead runs, with a log line saying its lead was not checked; a bundle that declares no leads
    (an older or a user's bundle, synthetic data) checks nothing."""
    validated = validated_leads(list(inputs))
    if not validated:
        return
    listed = " or ".join(validated)
    if lead is None:
        logger.info("the input does not name its lead: not checked (this bundle was validated on %s)", listed)
        return
    if lead not in validated:
        raise UnvalidatedLeadError(
            f"{source} is lead {lead}; this bundle's model was validated on {listed} only, and judges no "
            "sample of another lead",
            lead=lead, validated=validated,
            expected=f"a recording of {listed} (the bundle manifest's inputs[].leads)",
            fix=f"record {listed} (or pick that column with --channel N); a model for {lead} needs a bundle built and "
                f"validated on {lead} recordings",
        )
