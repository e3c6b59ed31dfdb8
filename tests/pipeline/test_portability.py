"""``edgemed cpu-check``: event comparison, targets, the report, and a real run of two tiny bundles on an emulated
Arm Cortex-A72 and an AVX2-only x86 CPU (QEMU user mode, set up by the check itself; skipped outside CI when it
cannot be set up here, e.g. offline)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from pipeline.build.signing import TRUST_STORE_FOLDER
from pipeline.cli import main
from pipeline.errors import UsageError
from pipeline.portability.check import CheckConfig, check
from pipeline.portability.compare import NUMBER_TOLERANCE, compare_events
from pipeline.portability.environment import EmulationError, prepare
from pipeline.portability.report import render_markdown
from pipeline.portability.targets import TARGETS, host_architecture, host_target, select_targets
from runtime.contract import MANIFEST_NAME
from tests.runtime.conftest import resign, session_signing_key, tiny_bundle

BEAT = {"type": "beat", "time_s": 1.25, "class": "V", "probability": 0.91, "probabilities": {"non-V": 0.09, "V": 0.91},
        "quality_flags": [], "low_confidence": False, "latency_us": 40.0}


def test_identical_events_pass_and_timings_are_ignored():
    other = {**BEAT, "latency_us": 900.0}
    result = compare_events([BEAT, BEAT], [BEAT, other])
    assert result.passed and result.differing_events == 0 and result.largest_difference == 0


def test_numbers_within_the_tolerance_pass_and_beyond_it_fail():
    close = {**BEAT, "probabilities": {"non-V": 0.09, "V": 0.91 + NUMBER_TOLERANCE / 2}}
    result = compare_events([BEAT], [close])
    assert result.passed and result.max_differences["probabilities.V"] == pytest.approx(NUMBER_TOLERANCE / 2)
    far = {**BEAT, "probability": 0.9}
    result = compare_events([BEAT], [far])
    assert not result.passed and result.differing_events == 1 and result.decision_changes == 0
    assert "probability 0.91 → 0.9" in result.first_difference


def test_a_changed_class_or_flag_is_a_decision_change_and_a_missing_event_fails():
    flipped = {**BEAT, "class": "non-V"}
    flagged = {**BEAT, "quality_flags": ["clipping"]}
    result = compare_events([BEAT, BEAT, BEAT], [flipped, flagged, BEAT])
    assert (result.differing_events, result.decision_changes) == (2, 2) and not result.passed
    assert "class 'V' → 'non-V'" in result.first_difference
    shorter = compare_events([BEAT, BEAT], [BEAT])
    assert not shorter.passed and "1 events, the reference 2" in shorter.first_difference


def test_targets_are_selected_by_name_and_arm_ones_show_their_core():
    assert select_targets(None) == TARGETS
    chosen = select_targets("arm-cortex-a53,x86-64-avx2")
    assert [target.name for target in chosen] == ["arm-cortex-a53", "x86-64-avx2"]
    assert "CPU part\t: 0xd03" in chosen[0].cpuinfo_text() and "processor\t: 3" in chosen[0].cpuinfo_text()
    with pytest.raises(UsageError, match=r"unknown CPU target.*pentium"):
        select_targets("pentium")
    assert "flags\t\t: " in chosen[1].cpuinfo_text() and " avx2 " in chosen[1].cpuinfo_text()
    assert "avx512" not in chosen[1].cpuinfo_text()
    with pytest.raises(ValueError, match="this machine"):
        host_target("x").cpuinfo_text()


def test_the_command_refuses_bad_requests_with_exit_2(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["cpu-check", "--trust-store", str(tmp_path), "--targets", "pentium"])
    assert result.exit_code == 2 and "unknown CPU target" in result.output
    result = runner.invoke(main, ["cpu-check", "--trust-store", str(tmp_path), "--bundles", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no bundle folder" in result.output


@pytest.fixture(scope="module")
def emulated_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("cpu-check")
    for name in ("ecg-pvc", "breast-cancer"):
        shutil.copytree(tiny_bundle(name, tmp_path_factory), root / "bundles" / name)
    # the breast-cancer bundle again, its manifest saying int8: a device on another kind of CPU must warn
    relabelled = root / "bundles" / "breast-cancer-int8"
    shutil.copytree(root / "bundles" / "breast-cancer", relabelled)
    manifest = json.loads((relabelled / MANIFEST_NAME).read_text())
    manifest["variants"]["int8-dynamic"] = manifest["variants"].pop(manifest["variant"])
    manifest["variant"] = "int8-dynamic"
    (relabelled / MANIFEST_NAME).write_text(json.dumps(manifest))
    resign(relabelled, session_signing_key(tmp_path_factory))
    store = session_signing_key(tmp_path_factory).path.parent / TRUST_STORE_FOLDER
    config = CheckConfig(store, root / "bundles", select_targets("arm-cortex-a72,x86-64-avx2"), seconds=30.0,
                         cases_per_bundle=2)
    versions = store / "bundle-versions.json"
    before = versions.read_bytes() if versions.exists() else None
    try:
        report = check(config)
        # the check is not a device: the trust store's rollback state is left as it was (variants of one lineage,
        # published side by side, would otherwise refuse each other as downgrades)
        assert (versions.read_bytes() if versions.exists() else None) == before
        return report
    except EmulationError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"the emulated devices could not be set up here: {error}")


def test_tiny_bundles_give_the_same_answers_on_emulated_arm_and_avx2_cpus(emulated_report):
    report = emulated_report
    assert report["passed"], render_markdown(report)
    by_target = {(item["bundle"], item["target"]): item for item in report["summaries"]}
    assert set(by_target) == {(bundle, target) for bundle in ("breast-cancer", "breast-cancer-int8", "ecg-pvc")
                              for target in ("host", "arm-cortex-a72", "x86-64-avx2")}
    for (bundle, _target), item in by_target.items():
        reference = by_target[(bundle, "host")]
        assert item["cases"] == item["passed"] == (2 if bundle == "ecg-pvc" else 1)
        assert item["events"] == reference["events"] > 0 and item["decision_changes"] == 0
        assert item["largest_difference"] <= NUMBER_TOLERANCE
        assert item["ec57_gross"] == reference["ec57_gross"]
    assert by_target[("ecg-pvc", "host")]["ec57_gross"]["qrs_sensitivity"] > 0.9  # real MIT-BIH beats were scored
    # every figure names the bundle it measured, as it stood: id, variant, hashes and its real-data status
    identities = report["bundles"]
    assert set(identities) == {"breast-cancer", "breast-cancer-int8", "ecg-pvc"}
    assert identities["breast-cancer-int8"]["variant"] == "int8-dynamic"
    assert all(len(item["manifest_sha256"]) == 64 and item["bundle_id"] and item["real_data"]
               for item in identities.values())
    # the device reads the emulated CPU's /proc/cpuinfo: on the other architecture an int8 bundle warns, fp32 never
    other = "arm-cortex-a72" if host_architecture() == "x86_64" else "x86-64-avx2"
    assert by_target[("breast-cancer-int8", other)]["device_warned"] == 1
    assert not any(item["device_warned"] for (bundle, target), item in by_target.items()
                   if bundle != "breast-cancer-int8" or target == "host")
    markdown = render_markdown(report)
    assert "every emulated CPU gave the same decisions" in markdown and "Raspberry Pi 4" in markdown
    assert f"- `ecg-pvc`: {identities['ecg-pvc']['bundle_id']}, variant fp32" in markdown
    # the emulator's self-test: a target listed is one whose emulator sorts wrong (QEMU 7.2's AVX2 gathers), and the
    # report says so; the answers above hold there all the same (the template's tie order is a stable sort)
    defects = report["emulator_defects"]
    assert set(defects) <= {"arm-cortex-a72", "x86-64-avx2"}
    for name, defect in defects.items():
        assert f"**Emulator defect on `{name}`**: numpy's argsort is wrong under this QEMU" in markdown, defect
    assert "MIT-BIH Arrhythmia Database (real" in markdown and "Wisconsin Diagnostic Breast Cancer" in markdown


def test_a_differing_case_is_listed_and_fails_the_report(emulated_report):
    report = {**emulated_report, "passed": False,
              "results": [*emulated_report["results"],
                          {"bundle": "ecg-pvc", "case": "100", "source": "x", "target": "arm-cortex-a72",
                           "status": "different", "error": None, "first_difference": "event 3 (at 2.5): class"}]}
    markdown = render_markdown(report)
    assert "NOT every CPU agreed" in markdown
    assert "| ecg-pvc | 100 | arm-cortex-a72 | different | event 3 (at 2.5): class |" in markdown


def test_the_device_environment_sees_the_runtime_copy_and_its_packages_only(emulated_report, tmp_path):
    environment = prepare((), tmp_path)[host_architecture()]
    probe = ("import importlib.util, sys, runtime, numpy, onnxruntime, cryptography\n"
             "print(runtime.__file__)\n"
             "print([name for name in ('pipeline', 'exporters', 'dashboard', 'tensorflow', 'pytest', 'click')"
             " if importlib.util.find_spec(name)])")
    command = [*environment.command(host_target("this machine"), [])[:2], "-c", probe]
    result = subprocess.run(command, env=environment.variables(), cwd=environment.code, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    location, importable = result.stdout.splitlines()
    assert location.startswith(str(environment.code)) and importable == "[]"
    assert environment.emulator_defect(host_target("this machine")) is None  # nothing emulated: nothing to probe


def test_targets_of_one_architecture_take_turns_with_its_root(tmp_path):
    """Two checks at once on two Arm cores share one root folder: a run holds it, so neither shows the other's
    /proc/cpuinfo to its device."""
    import threading

    from pipeline.portability.environment import DeviceEnvironment

    root = tmp_path / "aarch64" / "root"
    root.mkdir(parents=True)
    environment = DeviceEnvironment("aarch64", tmp_path / "python", tmp_path / "site", tmp_path / "code", root,
                                    "qemu-aarch64-static", {})
    first, second = select_targets("arm-cortex-a53,arm-cortex-a76")
    cpuinfo = root / "proc" / "cpuinfo"
    holding, seen_by_second = threading.Event(), []

    def second_check() -> None:
        holding.wait(10)
        with environment.presenting(second):
            seen_by_second.append(cpuinfo.read_text())

    other = threading.Thread(target=second_check)
    other.start()
    with environment.presenting(first):
        holding.set()
        other.join(0.5)
        assert other.is_alive()  # waiting for the root while the first check's program runs
        assert cpuinfo.read_text() == first.cpuinfo_text()
    other.join(10)
    assert seen_by_second == [second.cpuinfo_text()] and first.cpuinfo_text() != second.cpuinfo_text()
