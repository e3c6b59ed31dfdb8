"""``make gpu-check``'s checker: parity of a provider against CPU through I/O binding, and the no-GPU exit.

No GPU here: the provider compared is CPU itself (through I/O binding, as a GPU run would be), which proves
the comparison and the report; a provider that is not installed is a failure, never a silent pass.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.benchmark import gpu_check
from pipeline.build.publish import publish
from pipeline.build.signing import TRUST_STORE_FOLDER
from runtime.bundle import load_bundle
from runtime.contract import TaskKind
from tests.runtime.conftest import session_signing_key
from tests.runtime.hand_built import build_bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    key = session_signing_key(tmp_path_factory)
    root = tmp_path_factory.mktemp("gpu-check-bundles")
    for name, task in (("binary", TaskKind.BINARY), ("multiclass", TaskKind.MULTICLASS), ("two-input", None)):
        publish(build_bundle(root / "built" / name, task), root / "bundles" / name, key)
    return root / "bundles", key.path.parent / TRUST_STORE_FOLDER


def test_without_a_gpu_it_says_so_and_exits_0(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gpu_check, "detect_gpu", lambda: None)
    assert gpu_check.main(["--output", str(tmp_path / "out")]) == 0
    assert "no NVIDIA GPU" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing measured, nothing written


def test_io_binding_answers_equal_the_plain_run_for_every_bundle(bundles, tmp_path, capsys):
    root, store = bundles
    assert gpu_check.main(["--bundles", str(root), "--trust-store", str(store), "--providers", "cpu",
                           "--output", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["passed"] and len(report["checks"]) == 3
    for check in report["checks"]:
        assert check["ran_on"] == "CPUExecutionProvider" and check["decisions_agree"] is True
        assert check["max_abs_difference"] <= check["tolerance"]
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| binary |" in markdown
    # The inputs are seeded N(0,1) random values, not real data: the JSON, the report and the last line say so.
    assert report["inputs"] == gpu_check.INPUTS and report["inputs_synthetic"] is True
    assert gpu_check.INPUTS.startswith("synthetic: seeded standard normal N(0,1)")
    assert "not real data" in gpu_check.INPUTS
    assert f"Inputs: {gpu_check.INPUTS}." in markdown
    assert f"gpu-check: passed on {gpu_check.INPUTS}" in capsys.readouterr().err


def test_a_provider_that_is_not_installed_fails_with_its_reason(bundles, tmp_path, monkeypatch):
    import onnxruntime

    installed = [name for name in onnxruntime.get_available_providers() if name != "CUDAExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: installed)  # as where only the CPU one is
    root, store = bundles
    assert gpu_check.main(["--bundles", str(root), "--trust-store", str(store), "--providers", "cpu,cuda",
                           "--output", str(tmp_path)]) == 1
    checks = json.loads((tmp_path / "gpu_check.json").read_text())["checks"]
    failed = [check for check in checks if check["provider"] == "CUDAExecutionProvider"]
    assert len(failed) == 3 and all("not available" in check["error"] and not check["passed"] for check in failed)


def test_decisions_follow_the_bundle_task(bundles):
    root, store = bundles
    from runtime.trust import TrustPolicy

    trust = TrustPolicy.from_store(store)
    multiclass = load_bundle(root / "multiclass", trust=trust)
    binary = load_bundle(root / "binary", trust=trust)
    assert gpu_check.decisions(multiclass, [np.array([[0.1, 0.9], [0.8, 0.2]])]).tolist() == [1, 0]
    threshold = binary.output.decision.threshold
    assert gpu_check.decisions(binary, [np.array([[threshold], [threshold - 0.01]])]).ravel().tolist() == [True, False]
