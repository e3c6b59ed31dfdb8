"""The contract of stream-derived inputs: ``InputSpec.derived`` round-trips with every RR and template setting,
refuses what the device could not compute as training did, and leaves manifests without it unchanged; the
stream's plan refuses bundles whose derived inputs disagree."""

from __future__ import annotations

import copy
import json

import pytest

from runtime.contract import BundleManifest, InputSpec, ManifestError, UnsupportedBundleError
from runtime.contract.derived import RR_FEATURE_NAMES, Derivation, RrFeatureConfig, StreamFeature
from runtime.ecg import declares_stream_inputs, stream_inputs
from runtime.ecg.rr_features import RR_FEATURE_NAMES as RUNTIME_RR_FEATURE_NAMES
from runtime.features import FeatureKind
from tests.runtime.hand_built import TWO_INPUT
from tests.runtime.pvc_bundle import OUTPUT, RESIDUAL, RR, RR_INPUT, TEMPLATE, THREE_INPUTS, WINDOW
from tests.runtime.test_contract import manifest


def as_json(value) -> dict:
    return json.loads(json.dumps(value.to_dict()))


def refused_document(document: dict) -> ManifestError:
    with pytest.raises(ManifestError) as raised:
        BundleManifest.from_dict(document)
    return raised.value


def test_three_derived_inputs_round_trip_with_every_setting_written():
    original = manifest(OUTPUT, inputs=THREE_INPUTS)
    document = as_json(original)
    parsed = BundleManifest.from_dict(document)
    assert parsed == original and parsed.to_dict() == document
    window, residual, rr = document["inputs"]
    assert window["derived"] == {"feature": "beat_window", "rr": None, "template": None}
    assert residual["derived"] == {
        "feature": "template_residual",
        "rr": {"history_beats": 10, "max_rr_s": 3.0, "default_rr_s": 1.0},
        "template": {"history_beats": 30, "minimum_std": 1e-6, "minimum_pre_to_local": 0.9},
    }
    assert rr["derived"]["feature"] == "rr_features" and rr["derived"]["rr"] == RR.to_dict()
    assert [spec.stream_feature for spec in parsed.inputs] == [feature for feature in StreamFeature
                                                               if feature is not StreamFeature.SIGNAL_WINDOW]
    assert RR_FEATURE_NAMES == RUNTIME_RR_FEATURE_NAMES  # one definition, re-exported by the runtime


def test_inputs_without_derived_keep_their_manifest_and_run_as_before():
    original = manifest(OUTPUT, inputs=TWO_INPUT)
    document = as_json(original)
    assert all("derived" not in spec for spec in document["inputs"])  # older runtimes still read it
    parsed = BundleManifest.from_dict(document)
    assert all(spec.derived is None and spec.stream_feature is None for spec in parsed.inputs)
    document["inputs"][0]["derived"] = None  # null reads like absent
    assert BundleManifest.from_dict(document) == original
    assert not declares_stream_inputs(parsed.inputs)


@pytest.mark.parametrize(("path", "value", "field"), [
    (("derived", "rr"), "missing", "inputs[1].derived.rr"),
    (("derived", "rr", "max_rr_s"), "missing", "inputs[1].derived.rr.max_rr_s"),
    (("derived", "rr", "history_beats"), 2.5, "inputs[1].derived.rr.history_beats"),
    (("derived", "template", "history_beats"), 0, "inputs[1].derived.template.history_beats"),
    (("derived", "template", "minimum_pre_to_local"), -0.1, "inputs[1].derived.template.minimum_pre_to_local"),
    (("derived", "template", "gate"), 0.9, "inputs[1].derived.template.gate"),
    (("derived", "template"), None, "inputs[1].derived.template"),
    (("derived", "feature"), "rr_intervals", "inputs[1].derived.feature"),
])
def test_every_setting_the_device_needs_is_required_and_checked(path, value, field):
    document = as_json(manifest(OUTPUT, inputs=THREE_INPUTS))
    section = document["inputs"][1]
    for key in path[:-1]:
        section = section[key]
    if value == "missing":
        del section[path[-1]]
    else:
        section[path[-1]] = value
    assert refused_document(copy.deepcopy(document)).field == field


def test_a_derivation_must_fit_its_input():
    with pytest.raises(ManifestError) as raised:
        InputSpec("rr", (None, 3), FeatureKind.TABULAR, feature_names=("pre", "post", "local"),
                  derived=Derivation.rr_features(RR))
    assert raised.value.field == "feature_names" and "pre_to_local" in raised.value.expected
    with pytest.raises(ManifestError) as raised:
        InputSpec("residual", (None, 6), FeatureKind.TABULAR, feature_names=RR_FEATURE_NAMES,
                  derived=Derivation.template_residual(TEMPLATE, RR))
    assert raised.value.field == "derived.feature" and "beat window" in raised.value.expected
    with pytest.raises(ManifestError) as raised:
        InputSpec("signal", (None, 252, 1), FeatureKind.WAVEFORM, sample_rate_hz=360.0,
                  derived=Derivation.beat_window())  # no window geometry
    assert raised.value.field == "derived.feature"
    with pytest.raises(ManifestError) as raised:
        InputSpec("beat", (None, 252, 2), FeatureKind.WAVEFORM, sample_rate_hz=360.0, window_before_s=0.25,
                  window_after_s=0.45, derived=Derivation.beat_window())
    assert raised.value.field == "shape" and "one lead" in raised.value.expected


def test_a_derivation_carries_exactly_the_settings_its_feature_uses():
    with pytest.raises(ManifestError) as raised:
        Derivation(StreamFeature.TEMPLATE_RESIDUAL, rr=RR)
    assert raised.value.field == "template"
    with pytest.raises(ManifestError) as raised:
        Derivation(StreamFeature.RR_FEATURES)
    assert raised.value.field == "rr" and "RrFeatureConfig" in raised.value.expected
    with pytest.raises(ManifestError) as raised:
        Derivation(StreamFeature.BEAT_WINDOW, rr=RR)
    assert raised.value.field == "rr" and "null" in raised.value.expected
    with pytest.raises(ManifestError) as raised:
        RrFeatureConfig(max_rr_s=0.0)
    assert raised.value.field == "max_rr_s"


def test_the_stream_plan_reads_geometry_and_settings_from_the_manifest():
    plan = stream_inputs(THREE_INPUTS)
    assert plan.declared and (plan.sample_rate_hz, plan.before, plan.after) == (360.0, 90, 162)
    assert plan.rr == RR and plan.template == TEMPLATE
    assert plan.shapes == {"window": (252, 1), "residual": (252, 1), "rr": (6,)}
    legacy = stream_inputs((InputSpec("beat", (None, 252, 1), FeatureKind.WAVEFORM, sample_rate_hz=360.0,
                                      window_before_s=0.25, window_after_s=0.45),))
    assert not legacy.declared and legacy.features == {"beat": StreamFeature.BEAT_WINDOW} and legacy.rr is None


@pytest.mark.parametrize(("inputs", "message"), [
    ((RESIDUAL, InputSpec("rr", (None, 6), FeatureKind.TABULAR, feature_names=RR_FEATURE_NAMES,
                          derived=Derivation.rr_features(RrFeatureConfig(history_beats=5)))), "RR settings"),
    ((InputSpec("window", (None, 200, 1), FeatureKind.WAVEFORM, sample_rate_hz=250.0, window_before_s=0.3,
                window_after_s=0.5, derived=Derivation.beat_window()), RESIDUAL, RR_INPUT), "beat window"),
    ((WINDOW, InputSpec("age", (None, 1), FeatureKind.TABULAR, feature_names=("age",))), "not derived"),
    ((RR_INPUT,), "no beat-window input"),
])
def test_the_stream_refuses_derived_inputs_it_cannot_compute_as_one(inputs, message):
    with pytest.raises(UnsupportedBundleError, match=message):
        stream_inputs(inputs)
