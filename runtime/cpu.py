"""This CPU's instruction-set features, and whether a reduced-precision variant runs here on the kind of kernels it
was validated with.

ONNX Runtime picks its kernels by the CPU's features. For fp32 models the answers agree across CPUs to the last
digits; for fp16 and int8 models they do not. ``edgemed cpu-check`` measured it on the ecg-pvc model over the ten
MIT-BIH records (21 835 events, 2026-12-07, validated on an x86-64 CPU with AVX-512 and VNNI): fp32 gave the same
decisions on SSE4.2-only and AVX2 x86 and on Arm Cortex-A53/A72/A76; int8-dynamic changed 3 decisions (and 6 314
probabilities, by up to 0.98 where a class flipped) on AVX2 without VNNI; fp16 changed 2 on the Cortex-A76, which
computes in half precision natively. Int8 variants built since keep their weights to 7 bits, which ends the AVX2
saturation (the rebuilt int8-dynamic variant: bit for bit on AVX2, within 6e-5 on the Cortex-A76); other kernel
differences remain possible, so a device that runs a reduced-precision variant on a CPU whose features differ from
those of the machine that validated it still says so (``kernel_differences``), loudly, at every load.

Dependency rule: standard library only.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# ISA features that decide which kernels ONNX Runtime picks on x86 and Arm (as /proc/cpuinfo names them).
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "asimdhp",
    "fphp",
    "sve",
    "i8mm",
)
FULL_PRECISION_VARIANTS = frozenset({"fp32"})  # answers the same on every CPU measured (see the module docstring)
CPUINFO = Path("/proc/cpuinfo")


def cpu_model_and_flags(cpuinfo: Path = CPUINFO) -> tuple[str, list[str]]:
    """(CPU model name, the ``ISA_FLAGS`` it has, in that order) from ``cpuinfo``; the platform's names when it
    cannot be read."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "cpu model") and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model, [flag for flag in ISA_FLAGS if flag in flags]


def kernel_differences(variant: str, measured_on: Mapping[str, Any], architecture: str | None = None,
                       flags: list[str] | None = None) -> str | None:
    """How this CPU (``architecture`` and ``flags``: this machine's by default) differs from ``measured_on`` (the
    manifest's ``selection.measured_on``) in what decides ``variant``'s kernels; None for a full-precision variant, a
    manifest that does not say, or no difference."""
    recorded_architecture, recorded_flags = measured_on.get("architecture"), measured_on.get("isa_flags")
    if variant in FULL_PRECISION_VARIANTS or not isinstance(recorded_architecture, str):
        return None
    here = architecture or platform.machine()
    if here != recorded_architecture:
        return f"this CPU is {here}, the validating one {recorded_architecture}"
    if not isinstance(recorded_flags, list):
        return None
    mine = set(cpu_model_and_flags()[1] if flags is None else flags)
    missing = [flag for flag in ISA_FLAGS if flag in recorded_flags and flag not in mine]
    extra = [flag for flag in ISA_FLAGS if flag in mine and flag not in recorded_flags]
    parts = ([f"lacks {', '.join(missing)}"] if missing else []) + ([f"adds {', '.join(extra)}"] if extra else [])
    return f"this CPU {' and '.join(parts)}" if parts else None
