"""A fast sample of ``python -m pipeline.benchmark.fuzz``: bad inputs of every kind and mutated manifests.

Every case runs ``runtime.__main__.main`` in this process with a timeout. Asserted: no traceback, no hang,
no exit-0 answer on an invalid sample (a flagged row is unjudged), the valid controls run, every malformed
HDF5 kind is refused with one clear message, and every mutation of a signed manifest is refused.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.benchmark.fuzz import CaseOutcome, fuzz_inputs, fuzz_manifests, memory_limit, run_case, summarise_inputs
from pipeline.benchmark.fuzz_inputs import H5_DEFECTS, KINDS, Expect, FuzzBundles, make_case
from pipeline.build.signing import TRUST_STORE_FOLDER
from runtime.__main__ import main as device_main
from tests.runtime.conftest import session_signing_key

SAMPLE_CASES = 3 * len(KINDS) * 5  # ~300 cases, a few seconds


@pytest.fixture(scope="module")
def bundles(ecg_bundle_path, breast_bundle_path, tmp_path_factory) -> FuzzBundles:
    store = session_signing_key(tmp_path_factory).path.parent / TRUST_STORE_FOLDER
    return FuzzBundles.of(ecg_bundle_path, breast_bundle_path, store)


def test_a_sample_of_bad_inputs_never_crashes_hangs_or_answers(bundles):
    import tracemalloc

    tracemalloc.start()
    try:
        outcomes = fuzz_inputs(bundles, SAMPLE_CASES, seed=3, timeout_s=30.0)
    finally:
        tracemalloc.stop()
    summary = summarise_inputs(outcomes)
    assert summary["cases"] == SAMPLE_CASES and set(summary["per_kind"]) == set(KINDS)
    assert summary["tracebacks"] == 0 and summary["hangs"] == 0
    assert summary["exit_0_answers_on_invalid"] == 0, [o for o in outcomes if o.silent_answer][:3]
    assert summary["valid_controls"] > 0 and summary["valid_controls_failed"] == 0
    assert summary["over_memory_bound"] == 0
    refused = [o for o in outcomes if o.expect == Expect.REFUSE.value]
    assert all(o.exit_code in (1, 2) for o in refused)


@pytest.mark.parametrize("defect", H5_DEFECTS)
def test_every_malformed_hdf5_kind_is_refused_with_one_message(bundles, defect, tmp_path, capsys, monkeypatch):
    pytest.importorskip("h5py")
    monkeypatch.setattr("pipeline.benchmark.fuzz_inputs.H5_DEFECTS", (defect,))
    case = make_case("h5_malformed", np.random.default_rng(0), tmp_path, bundles)
    outcome = run_case(case)
    assert (outcome.exit_code, outcome.traceback, outcome.hang) == (1, False, False)


@pytest.mark.parametrize(
    ("arguments", "status", "message"),
    [
        (["--sample-rate", "1e9"], 2, "outside the range"),
        (["--sample-rate", "nan"], 2, "outside the range"),
        (["--channel", "-1"], 2, "not an integer ≥ 0"),
    ],
)
def test_bad_options_are_usage_errors_before_anything_runs(bundles, arguments, status, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        device_main([str(bundles.ecg), "--input", "missing.npy", *arguments])
    assert exit_.value.code == status and message in capsys.readouterr().err


def test_a_multi_channel_array_runs_only_with_channel(bundles, tmp_path, capsys):
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as folder:
        case = make_case("valid_signal", rng, Path(folder), bundles)
        signal = np.load(case.arguments[2])
    noise = rng.normal(0, 1, signal.size)
    np.save(tmp_path / "three.npy", np.stack([noise, signal, noise], axis=1))
    common = [str(bundles.ecg), "--input", str(tmp_path / "three.npy"), "--sample-rate",
              case.arguments[case.arguments.index("--sample-rate") + 1], "--trust-store", str(bundles.trust_store),
              "--allow-unvalidated"]  # the synthetic ECG bundle
    assert device_main(common) == 1 and "holds 3 channels" in capsys.readouterr().err
    assert device_main([*common, "--channel", "1", "--output", str(tmp_path / "events.jsonl")]) == 0
    assert (tmp_path / "events.jsonl").read_text().count('"beat"') > 3


def test_fuzz_json_says_its_inputs_are_generated(tmp_path, monkeypatch, capsys):
    import logging

    from pipeline.benchmark import fuzz

    monkeypatch.setattr(logging, "basicConfig", lambda **settings: None)  # main's logging set-up stays in main
    monkeypatch.setattr(fuzz, "logger", logging.getLogger("tests.fuzz-main"))
    manifests = {key: 0 for key in ("signed_accepted", "signed_crashed", "unsigned_crashed",
                                    "unsigned_accepted_harmful")}
    stand_in = FuzzBundles(tmp_path / "ecg", tmp_path / "table", ("x",), tmp_path / "store")
    monkeypatch.setattr(fuzz, "build_bundles", lambda folder: stand_in)  # nothing built or run: only the labels
    monkeypatch.setattr(fuzz, "fuzz_inputs", lambda *arguments: [])
    monkeypatch.setattr(fuzz, "fuzz_manifests", lambda *arguments: manifests)
    output = tmp_path / "fuzz.json"
    assert fuzz.main(["--cases", "0", "--mutations", "0", "--output", str(output)]) == 0
    document = json.loads(output.read_text())
    assert document["synthetic"] is True and document["data"] == fuzz.FUZZ_DATA
    assert document["inputs"]["synthetic"] is True and summarise_inputs([])["synthetic"] is True
    assert fuzz.FUZZ_DATA.startswith("SYNTHETIC: every input is a generated fuzz case")
    assert "inputs (SYNTHETIC: generated fuzz cases): 0 cases" in capsys.readouterr().err


def test_a_case_over_its_memory_bound_is_counted_and_one_at_the_bound_is_not():
    """The bound grows with the input (a 1 MB file may use more than an empty one), and the summary counts exactly
    the cases whose peak heap passed their own input's bound."""
    assert memory_limit(10**6) > memory_limit(0) > 0

    def case(peak_bytes: int, input_bytes: int) -> CaseOutcome:
        return CaseOutcome("csv", Expect.REFUSE.value, 2, False, False, False, peak_bytes, input_bytes, 0.1)

    outcomes = [case(memory_limit(0), 0), case(memory_limit(0) + 1, 0), case(memory_limit(0) + 1, 10**6),
                case(memory_limit(10**6) + 1, 10**6)]
    assert summarise_inputs(outcomes)["over_memory_bound"] == 2


def test_every_mutation_of_a_signed_manifest_is_refused_and_none_crashes(bundles):
    result = fuzz_manifests(bundles.ecg, bundles.trust_store, mutations=60, seed=5)
    assert result["signed_refused"] == 60 and result["signed_accepted"] == 0
    assert result["signed_crashed"] == 0 and result["unsigned_crashed"] == 0
    assert result["unsigned_refused"] > 0  # the manifest's own checks refuse most edits without a signature
