"""This CPU's features, and the warning a device gives when a reduced-precision variant runs on a CPU that differs
from the validating machine's in what decides its kernels (``runtime.cpu``)."""

from __future__ import annotations

import json
import logging
import platform

from runtime.bundle import load_bundle
from runtime.contract import MANIFEST_NAME, TaskKind
from runtime.cpu import ISA_FLAGS, cpu_model_and_flags, kernel_differences
from runtime.trust import TrustPolicy
from tests.runtime.hand_built import build_bundle

XEON = {"cpu_model": "Intel(R) Xeon(R) Processor", "architecture": "x86_64",
        "isa_flags": ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni"]}


def test_cpuinfo_gives_the_model_and_the_kernel_flags_in_order(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu avx2 sse4_2 avx512_vnni ht\n\n"
                   "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu_model_and_flags(x86) == ("Some CPU 9000", ["sse4_2", "avx2", "avx512_vnni"])
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm fphp asimdhp asimddp\nCPU part\t: 0xd0b\n")
    assert cpu_model_and_flags(arm)[1] == ["asimd", "asimddp", "asimdhp", "fphp"]
    model, flags = cpu_model_and_flags(tmp_path / "missing")
    assert model and flags == []
    assert set(cpu_model_and_flags()[1]) <= set(ISA_FLAGS)


def test_only_reduced_precision_on_a_differing_cpu_is_a_difference():
    same = XEON["isa_flags"]
    assert kernel_differences("fp32", XEON, "aarch64", []) is None  # fp32: the same answers on every CPU measured
    assert kernel_differences("int8-dynamic", XEON, "x86_64", same) is None
    assert kernel_differences("int8-dynamic", {}, "x86_64", same) is None  # a manifest that does not say
    avx2 = [flag for flag in same if flag not in ("avx512f", "avx512_vnni")]
    assert kernel_differences("int8-static", XEON, "x86_64", avx2) == "this CPU lacks avx512f, avx512_vnni"
    assert kernel_differences("fp16", XEON, "x86_64", [*same, "amx_int8"]) == "this CPU adds amx_int8"
    assert kernel_differences("fp16", XEON, "aarch64", ["asimd", "fphp"]) == (
        "this CPU is aarch64, the validating one x86_64")


def _bundle_with(folder, variant: str, measured_on: dict):
    build_bundle(folder, TaskKind.MULTICLASS)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["variants"] = {variant: manifest["variants"]["fp32"]}
    manifest["variant"] = variant
    manifest["selection"]["measured_on"] = measured_on
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    return folder


def test_a_device_warns_when_a_reduced_precision_variant_runs_on_another_kind_of_cpu(tmp_path, caplog):
    elsewhere = {**XEON, "architecture": "riscv64" if platform.machine() != "riscv64" else "x86_64"}
    with caplog.at_level(logging.WARNING, logger="runtime.bundle"):
        load_bundle(_bundle_with(tmp_path / "int8", "int8-dynamic", elsewhere), trust=TrustPolicy.development())
    warning = [record.getMessage() for record in caplog.records if "validated on" in record.getMessage()]
    assert len(warning) == 1
    assert "ships the int8-dynamic variant, validated on Intel(R) Xeon(R) Processor" in warning[0]
    assert "the validating one" in warning[0] and "before clinical use" in warning[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="runtime.bundle"):
        load_bundle(_bundle_with(tmp_path / "fp32", "fp32", elsewhere), trust=TrustPolicy.development())
    assert not [record for record in caplog.records if "validated on" in record.getMessage()]
