"""A device's software on an emulated CPU: QEMU's user mode, a Python of that architecture, and exactly what the
device installs (numpy, onnxruntime and cryptography, at this machine's versions) beside a copy of ``runtime/``.

For this machine's own architecture the interpreter is this machine's base Python. For another architecture it is
Debian's, unpacked from the Debian packages (the same release as this machine) into a root folder QEMU reads its
files from (``-L``); the packages come through a private apt state of that architecture, so this machine's own
package configuration is not changed. The wheels are the package index's (manylinux) builds for that architecture.
Everything is kept in the cache folder (git-ignored) and reused while the versions match; each part is written
into a temporary folder and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pipeline.portability.targets import DEBIAN_ARCHITECTURES, CpuTarget, host_architecture
from runtime.errors import EdgemedError

REPOSITORY = Path(__file__).resolve().parents[2]
DEVICE_PACKAGES = ("numpy", "onnxruntime", "cryptography")  # what a device installs besides runtime/ (pyproject)
SYSROOT_PACKAGES = ("python3", "libstdc++6")  # Debian packages (with their dependencies) of a foreign sysroot
_GLIBC_TAGS = range(17, 37)  # manylinux tags a Debian 12 root (glibc 2.36) can load
_STAMP = "environment.json"
_STAMP_FORMAT = 2  # 2: this machine's architecture has a root folder too (its targets' /proc/cpuinfo)
_TIMEOUT_S = 900
# QEMU 7.2's user mode mis-decodes an AVX2 gather (VSIB) whose index register is xmm4/ymm4: index 100 means "no
# index" in an ordinary SIB byte but names a register in a VSIB one, and QEMU reads every lane from the base. numpy's
# AVX2 argsort and argpartition (x86-simd-sort) gather through it: unsorted orders or a crash there, right on real
# AVX2 silicon. One sort under the emulated CPU tells whether this emulator has the defect.
_GATHER_PROBE = ("import numpy; a = numpy.random.default_rng(0).standard_normal(4096); "
                 "print(bool((numpy.diff(a[numpy.argsort(a)]) >= 0).all()))")


class EmulationError(EdgemedError):
    """The emulated device could not be set up (QEMU, the Debian packages or the wheels)."""


@dataclass(frozen=True)
class EmulationSettings:
    cache: Path = REPOSITORY / ".cpu-check"  # sysroots, device packages, the device's copy of runtime/ (git-ignored)
    install_qemu: bool = True  # apt-get install qemu-user-static when it is missing (needs root and apt-get)


@dataclass(frozen=True)
class DeviceEnvironment:
    """How to run ``python -m runtime`` as a device of one architecture would."""

    architecture: str
    python: Path  # the interpreter (inside ``sysroot`` for a foreign architecture)
    site: Path  # the device packages for that interpreter
    code: Path  # a folder that holds a copy of runtime/ and nothing else
    sysroot: Path | None  # QEMU's -L root folder: the foreign architecture's files, or only proc/ for this one's
    qemu: str | None  # qemu-<architecture>(-static); None when only this machine itself is run
    versions: dict[str, str]

    def command(self, target: CpuTarget, arguments: list[str]) -> list[str]:
        """The command line running ``python -m runtime ARGUMENTS`` on ``target`` (natively when not emulated)."""
        program = [str(self.python), "-S", "-m", "runtime", *arguments]  # -S: PYTHONPATH only, no site-packages
        return self._on(target, program)

    def _on(self, target: CpuTarget, program: list[str]) -> list[str]:
        if not target.emulated:
            return program
        if self.qemu is None:
            raise EmulationError(f"no QEMU for {self.architecture} was set up", expected="a prepared environment",
                                 fix="prepare the environment with the targets that will run")
        root = ["-L", str(self.sysroot)] if self.sysroot is not None else []
        return [self.qemu, "-cpu", str(target.qemu_cpu), *root, *program]

    def emulator_defect(self, target: CpuTarget) -> str | None:
        """What the emulator gets wrong on ``target`` that the real CPU gets right (``_GATHER_PROBE``), or None."""
        if not target.emulated:
            return None
        command = self._on(target, [str(self.python), "-S", "-c", _GATHER_PROBE])
        with self.presenting(target):
            try:
                result = subprocess.run(command, env=self.variables(), cwd=self.code, capture_output=True, text=True,
                                        timeout=_TIMEOUT_S, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired) as error:
                return f"the emulator's self-test did not run ({error})"
        if result.returncode == 0 and result.stdout.strip() == "True":
            return None
        return ("numpy's argsort is wrong under this QEMU (its AVX2 gathers indexed by xmm4/ymm4 are mis-emulated; a "
                "real CPU of this kind sorts right): a difference or failure on this CPU may be the emulator's")

    def variables(self) -> dict[str, str]:
        """The command's whole environment: nothing of this machine's Python setup leaks in (run it in ``code``: the
        folder ``-m`` puts first on the path holds the copy of runtime/, not a checkout with pipeline beside it)."""
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                "PYTHONPATH": f"{self.site}{os.pathsep}{self.code}", "PYTHONNOUSERSITE": "1",
                "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}

    @contextlib.contextmanager
    def presenting(self, target: CpuTarget) -> Iterator[None]:
        """Within the block, programs run for ``target`` see its ``/proc/cpuinfo`` (see ``targets``), served from
        the architecture's root folder. The root is shared by the architecture's targets, so the block holds it:
        two checks at once on targets of one architecture (Cortex-A53 and A76) take turns run by run instead of
        showing each other's CPU."""
        if not target.emulated or self.sysroot is None:
            yield
            return
        with _locked(self.sysroot.parent / ".presenting.lock"):
            proc = self.sysroot / "proc"
            proc.mkdir(exist_ok=True)
            (proc / "cpuinfo").write_text(target.cpuinfo_text())
            yield


def _run(command: list[str], what: str, fix: str, cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S, cwd=cwd,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EmulationError(f"{what}: {error}", fix=fix) from None
    if result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
        raise EmulationError(f"{what} failed (exit {result.returncode}): {' | '.join(last)}", fix=fix)
    return result.stdout


def qemu_for(architecture: str, settings: EmulationSettings) -> str:
    """The QEMU user-mode emulator of ``architecture``, installed with apt-get when missing and allowed."""
    names = (f"qemu-{architecture}-static", f"qemu-{architecture}")
    found = next((shutil.which(name) for name in names if shutil.which(name)), None)
    if found:
        return found
    fix = "install it: sudo apt-get install qemu-user-static (Debian, Ubuntu), or name only the targets it has"
    if not (settings.install_qemu and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0):
        raise EmulationError(f"QEMU's user-mode emulator for {architecture} ({names[0]}) is not installed",
                             expected="qemu-user-static", fix=fix)
    print("cpu-check: installing qemu-user-static with apt-get", file=sys.stderr, flush=True)
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "install", "-y", "-q", "qemu-user-static"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "qemu-user-static"]):
        result = subprocess.run(command, capture_output=True, text=True, env=environment, stdin=subprocess.DEVNULL,
                                timeout=_TIMEOUT_S)
        if command[1] == "install" and result.returncode == 0:
            break
    found = next((shutil.which(name) for name in names if shutil.which(name)), None)
    if not found:
        raise EmulationError(f"apt-get could not install qemu-user-static ({names[0]} still missing)", fix=fix)
    return found


def device_versions() -> dict[str, str]:
    """The device packages' versions as installed here: the emulated device gets the same."""
    try:
        return {name: metadata.version(name) for name in DEVICE_PACKAGES}
    except metadata.PackageNotFoundError as error:
        raise EmulationError(f"{error.name} is not installed in this environment",
                             expected=f"{', '.join(DEVICE_PACKAGES)} (the device's packages)",
                             fix="run from the project's virtualenv (make setup)") from None


def _apt_options(folder: Path, architecture: str) -> list[str]:
    debian = DEBIAN_ARCHITECTURES[architecture]
    status = folder / "status"
    for part in ("state/lists/partial", "cache/archives/partial"):
        (folder / part).mkdir(parents=True, exist_ok=True)
    status.touch()
    settings = {"Dir::State": folder / "state", "Dir::Cache": folder / "cache", "Dir::State::status": status,
                "APT::Architecture": debian, "APT::Architectures::": debian, "APT::Sandbox::User": "root",
                "Debug::NoLocking": "1"}
    return [item for key, value in settings.items() for item in ("-o", f"{key}={value}")]


def _sysroot(folder: Path, architecture: str) -> Path:
    """Debian's Python of ``architecture`` unpacked into ``folder``/root (apt in a private state)."""
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise EmulationError(f"a Python for {architecture} comes from Debian packages, and this machine has no apt",
                             expected="a Debian or Ubuntu machine (apt-get, dpkg-deb)",
                             fix="run cpu-check there, or name only targets of this machine's architecture")
    options = _apt_options(folder / "apt", architecture)
    fix = "check that the Debian mirror in /etc/apt/sources.list(.d) is reachable"
    _run(["apt-get", *options, "update", "-q"], f"apt-get update for {architecture}", fix)
    listing = _run(["apt-cache", *options, "depends", "--recurse", "--no-recommends", "--no-suggests",
                    "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *SYSROOT_PACKAGES],
                   f"the dependencies of {', '.join(SYSROOT_PACKAGES)} for {architecture}", fix)
    packages = sorted({line.strip() for line in listing.splitlines() if line and not line[0].isspace()
                       and not line.startswith("<")})
    debs = folder / "debs"
    debs.mkdir()
    _run(["apt-get", *options, "download", "-q", *packages], f"downloading {len(packages)} Debian packages", fix,
         cwd=debs)
    root = folder / "root"
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}", fix)
    shutil.rmtree(debs)
    return root


def _python_in(root: Path) -> Path:
    found = sorted(path for path in (root / "usr" / "bin").glob("python3.*") if path.name[len("python3."):].isdigit())
    if not found:
        raise EmulationError(f"no python3.N interpreter in {root}/usr/bin", expected="Debian's python3 package",
                             fix=f"delete {root.parent} and run again")
    return found[-1]


def _install(site: Path, versions: dict[str, str], architecture: str | None, python_version: str | None) -> None:
    """The device packages at ``versions`` into ``site`` (for another architecture: its manylinux wheels)."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-warn-conflicts",
               "--target", str(site), "--only-binary=:all:", *(f"{name}=={version}" for name, version in
                                                                versions.items())]
    if architecture is not None:
        platforms = [f"manylinux_2_{minor}_{architecture}" for minor in _GLIBC_TAGS] + [f"manylinux2014_{architecture}"]
        command += [item for platform_tag in platforms for item in ("--platform", platform_tag)]
        command += ["--python-version", str(python_version), "--implementation", "cp"]
    _run(command, f"installing {', '.join(versions)} for {architecture or 'this machine'}",
         "check that the package index (or pip's cache) is reachable")


def _prepared(folder: Path, versions: dict[str, str]) -> dict | None:
    """The folder's stamp when it was set up for these versions and its interpreter is still there."""
    try:
        stamp = json.loads((folder / _STAMP).read_text())
    except (OSError, ValueError):
        return None
    if (not isinstance(stamp, dict) or stamp.get("format") != _STAMP_FORMAT or stamp.get("versions") != versions
            or not (folder / stamp["python"]).is_file()):
        return None
    return stamp


def _architecture_folder(architecture: str, settings: EmulationSettings, versions: dict[str, str]) -> dict:
    """Set up (or reuse) one architecture's interpreter and packages; its stamp."""
    folder = settings.cache / architecture
    stamp = _prepared(folder, versions)
    if stamp is not None:
        return stamp
    building = settings.cache / f".{architecture}.partial"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    print(f"cpu-check: setting up a {architecture} device environment in {folder} (once)", file=sys.stderr,
          flush=True)
    if architecture == host_architecture():  # this machine's base interpreter (its packages: the wheels for it)
        python = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
        _install(building / "site", versions, None, None)
        (building / "root").mkdir()  # only proc/cpuinfo: every other path falls through to this machine's
        stamp = {"format": _STAMP_FORMAT, "versions": versions, "python": str(python), "sysroot": "root"}
    else:  # the python (a path inside the folder) decides the wheels
        root = _sysroot(building, architecture)
        python = _python_in(root)
        _install(building / "site", versions, architecture, python.name[len("python"):])
        stamp = {"format": _STAMP_FORMAT, "versions": versions, "python": str(python.relative_to(building)),
                 "sysroot": "root"}
    (building / _STAMP).write_text(json.dumps(stamp, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    building.rename(folder)
    return stamp


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One holder at a time (a process, or a thread with its own handle): the cache's setup (a check and a test run
    at once would build the same folders), an architecture's root while a target's program runs."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(targets: tuple[CpuTarget, ...], scratch: Path, settings: EmulationSettings = EmulationSettings()
            ) -> dict[str, DeviceEnvironment]:
    """One environment per architecture the targets (and this machine, the reference) need; the device's copy of
    runtime/ (alone: no pipeline, no tests) goes into ``scratch``, this run's own folder."""
    settings.cache.mkdir(parents=True, exist_ok=True)
    versions = device_versions()
    code = scratch / "device-code"
    shutil.copytree(REPOSITORY / "runtime", code / "runtime", ignore=shutil.ignore_patterns("__pycache__"))
    architectures = dict.fromkeys([host_architecture(), *(target.architecture for target in targets)])
    with _locked(settings.cache / ".lock"):
        return _environments(architectures, targets, settings, versions, code)


def _environments(architectures: dict[str, None], targets: tuple[CpuTarget, ...], settings: EmulationSettings,
                  versions: dict[str, str], code: Path) -> dict[str, DeviceEnvironment]:
    environments = {}
    for architecture in architectures:
        if architecture not in DEBIAN_ARCHITECTURES:
            raise EmulationError(f"no emulation set up for {architecture}",
                                 expected=f"one of {', '.join(DEBIAN_ARCHITECTURES)}",
                                 fix="run cpu-check on an x86-64 or Arm64 Linux machine")
        emulated = any(target.architecture == architecture and target.emulated for target in targets)
        qemu = qemu_for(architecture, settings) if emulated else None
        stamp = _architecture_folder(architecture, settings, versions)
        folder = settings.cache / architecture
        environments[architecture] = DeviceEnvironment(
            architecture, folder / stamp["python"], folder / "site", code,
            folder / stamp["sysroot"] if stamp["sysroot"] else None, qemu, versions)
    return environments
