"""The CPUs a device may have that this machine is not: each one emulated by QEMU's user mode.

QEMU's user mode runs one program of another CPU on this one: it translates the program's instructions and shows
it the emulated CPU's feature bits (``cpuid`` on x86, the kernel's hardware capabilities on Arm), so numpy's and
ONNX Runtime's own dispatch picks the kernels that CPU would get (SSE4.2 only, AVX2, NEON without or with the dot
product). Its floating point follows the emulated architecture bit for bit, so the numbers are that CPU's; its
timings are not (several times slower, and not in proportion), and none is reported as a speed.

ONNX Runtime on Arm also reads ``/proc/cpuinfo`` (the ``cpuinfo`` library) to know the core it runs on, and the
device runtime reads it to warn when a reduced-precision variant runs on other features than it was validated on
(``runtime.cpu``). QEMU 7.2's user mode passes the host's text through: x86 text that the Arm library cannot parse
(its import crashes), or the host's x86 features rather than the emulated CPU's. So each target carries the lines a
real CPU of its kind shows (``cpuinfo_text``), served from the target's root folder.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

from pipeline.errors import UsageError

ARM = "aarch64"
X86 = "x86_64"
DEBIAN_ARCHITECTURES = {ARM: "arm64", X86: "amd64"}  # Debian's names for the sysroot packages
HOST = "host"  # this machine, not emulated: the reference every target is compared with

# QEMU 7.2 cannot emulate these Haswell features in user mode and warns once per thread about each: they are
# system features (page-table and interrupt controls) no user program sees, so they are switched off
_HASWELL_SYSTEM_ONLY = "-pcid,-x2apic,-tsc-deadline,-invpcid"


@dataclass(frozen=True)
class CpuTarget:
    """One CPU a device may have."""

    name: str  # the name on the command line and in the report
    architecture: str  # ARM or X86
    qemu_cpu: str | None  # QEMU's -cpu model; None: this machine itself
    instruction_sets: str  # what numpy and ONNX Runtime can use on it
    devices: str  # devices built on this core (what a reader recognises)
    features: str = ""  # /proc/cpuinfo "flags" (x86) or "Features" (Arm): what the emulated CPU has
    arm_part: int | None = None  # the core's MIDR part number (/proc/cpuinfo "CPU part"), Arm only

    @property
    def emulated(self) -> bool:
        return self.qemu_cpu is not None

    def cpuinfo_text(self, cores: int = 4) -> str:
        """``/proc/cpuinfo`` as a Linux kernel shows it on ``cores`` cores of this emulated CPU (QEMU 7.2's user mode
        would show the host's: on x86 a device would read features its emulated CPU does not have)."""
        if not self.emulated:
            raise ValueError(f"{self.name} is this machine: its /proc/cpuinfo is the real one")
        if self.architecture == ARM:
            core = ["BogoMIPS\t: 108.00", f"Features\t: {self.features}", "CPU implementer\t: 0x41",
                    "CPU architecture: 8", "CPU variant\t: 0x0", f"CPU part\t: {self.arm_part:#05x}",
                    "CPU revision\t: 1"]
        else:
            core = ["vendor_id\t: GenuineIntel", f"model name\t: QEMU {str(self.qemu_cpu).split(',')[0]} ({self.name})",
                    f"flags\t\t: {self.features}"]
        return "".join(f"processor\t: {index}\n" + "\n".join(core) + "\n\n" for index in range(cores))


_ARMV8_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
_SSE4_FLAGS = "fpu tsc cx8 cmov mmx fxsr sse sse2 syscall nx lm pni ssse3 cx16 sse4_1 sse4_2 popcnt lahf_lm"
TARGETS: tuple[CpuTarget, ...] = (
    CpuTarget("x86-64-sse4", X86, "Nehalem", "x86-64 with SSE4.2, no AVX",
              "Intel Atom and Celeron-class embedded x86 boards (e.g. Apollo Lake)", _SSE4_FLAGS),
    CpuTarget("x86-64-avx2", X86, f"Haswell-noTSX,{_HASWELL_SYSTEM_ONLY}", "x86-64 with AVX2 and FMA, no AVX-512",
              "most x86 laptops, mini PCs and medical carts since 2013",
              _SSE4_FLAGS + " movbe xsave avx f16c rdrand fma abm avx2 bmi1 bmi2"),
    CpuTarget("arm-cortex-a53", ARM, "cortex-a53", "Armv8.0-A with NEON, no dot product (in-order core)",
              "NXP i.MX 8M Mini / Nano, Raspberry Pi 3", _ARMV8_FEATURES, 0xD03),
    CpuTarget("arm-cortex-a72", ARM, "cortex-a72", "Armv8.0-A with NEON, no dot product",
              "Raspberry Pi 4, NXP i.MX 8QuadMax", _ARMV8_FEATURES, 0xD08),
    CpuTarget("arm-cortex-a76", ARM, "cortex-a76", "Armv8.2-A with NEON, the dot product and half-precision arithmetic",
              "Raspberry Pi 5, recent Arm single-board computers",
              _ARMV8_FEATURES + " atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp", 0xD0B),
)


def host_architecture() -> str:
    machine = platform.machine().lower()
    return {"amd64": X86, "arm64": ARM}.get(machine, machine)


def host_target(cpu_model: str) -> CpuTarget:
    """This machine (``cpu_model``), as the reference (not emulated)."""
    return CpuTarget(HOST, host_architecture(), None, f"this machine's CPU: {cpu_model}",
                     "the machine that built and validated the bundles")


def select_targets(names: str | None) -> tuple[CpuTarget, ...]:
    """The targets named (comma-separated), or all of them; an unknown name is a usage error listing the known."""
    if not names:
        return TARGETS
    known = {target.name: target for target in TARGETS}
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        raise UsageError(f"unknown CPU target(s): {', '.join(unknown) or '(none given)'}",
                         expected=f"some of {', '.join(known)}", fix="name targets from that list, comma-separated")
    return tuple(known[name] for name in dict.fromkeys(wanted))
