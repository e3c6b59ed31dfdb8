"""The dependency rule: importing the runtime pulls in numpy, onnxruntime, cryptography and the standard library only.

Three checks, from strongest to cheapest:

* a clean virtualenv with ``pip install edgemed[cpu]`` from the package index or pip's cache (about a minute;
  in every run: skipped only outside CI when pip cannot install, e.g. offline — in CI that fails);
* a virtualenv without pip that sees nothing but numpy, onnxruntime, cryptography (with its
  compiled cffi backend) and a copy of ``runtime/`` (no network; ``pipeline`` and friends do not
  even exist there), where a bundle signature is also verified;
* a subprocess of the development venv, where everything is installed, checking
  which modules the imports actually load.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
MODULES = ["runtime", "runtime.bundle", "runtime.ecg.stream", "runtime.tabular", "runtime.runner", "runtime.readers",
           "runtime.trust"]
# Top-level modules that verifying a signature may load besides the standard library (cryptography's Rust
# extension registers ``_openssl``; ``_cffi_backend`` is cffi's compiled core).
VERIFY_ALLOWED = {"runtime", "numpy", "cryptography", "_cffi_backend", "_openssl"}
VERIFY = (
    "import sys\n"
    "from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey\n"
    "from runtime.trust import SignatureFile, TrustedKey, TrustPolicy, check_signature, key_id\n"
    "from runtime.trust.signature import raw_public_bytes\n"
    "private = Ed25519PrivateKey.generate()\n"
    "identifier = key_id(raw_public_bytes(private.public_key()))\n"
    "policy = TrustPolicy({identifier: TrustedKey(identifier, private.public_key(), None)})\n"
    "signature = SignatureFile(identifier, private.sign(b'manifest')).to_bytes()\n"
    "assert check_signature(policy, b'manifest', signature, 'test').verified\n"
    "loaded = {name.split('.')[0] for name in sys.modules} - set(sys.stdlib_module_names)\n"
    "print(sorted(name for name in loaded if not name.startswith('__')))\n"
)
FORBIDDEN = {
    "tensorflow",
    "keras",
    "tf2onnx",
    "onnx",
    "click",
    "streamlit",
    "pipeline",
    "exporters",
    "dashboard",
    "scipy",
    "h5py",
    "sklearn",
    "neurokit2",
    "pandas",
    "torch",
}
CHECK = (
    f"import sys, {', '.join(MODULES)}\n"
    "loaded = {name.split('.')[0] for name in sys.modules}\n"
    f"print(sorted(loaded & set({sorted(FORBIDDEN)!r})))\n"
)


def _forbidden_loaded(python: Path | str, environment: dict | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(python), "-c", CHECK], capture_output=True, text=True, timeout=120, env=environment, cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _make_venv(folder: Path, with_pip: bool) -> Path:
    command = [sys.executable, "-m", "venv", str(folder)] + ([] if with_pip else ["--without-pip"])
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return folder / "bin" / "python"


def test_development_venv_imports_stay_pure():
    assert _forbidden_loaded(sys.executable, cwd=REPOSITORY) == "[]"


def test_runtime_alone_with_numpy_and_onnxruntime(tmp_path):
    """No pipeline, exporters, scipy… exist here: any import of them would fail the import itself."""
    python = _make_venv(tmp_path / "venv", with_pip=False)
    packages = tmp_path / "site"
    packages.mkdir()
    installed = Path(sysconfig.get_paths()["purelib"])
    for name in ("numpy", "numpy.libs", "onnxruntime", "cryptography", *(path.name for path in installed.glob(
            "_cffi_backend*"))):
        if (installed / name).exists():
            (packages / name).symlink_to(installed / name)
    shutil.copytree(REPOSITORY / "runtime", packages / "runtime", ignore=shutil.ignore_patterns("__pycache__"))
    environment = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(packages)}
    assert _forbidden_loaded(python, environment, cwd=tmp_path) == "[]"
    verified = subprocess.run([str(python), "-c", VERIFY], capture_output=True, text=True, timeout=120,
                              env=environment, cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert set(ast.literal_eval(verified.stdout)) <= VERIFY_ALLOWED, verified.stdout  # nothing heavy loads


def test_clean_pip_install_of_the_cpu_extra_stays_pure(tmp_path):
    """``pip install edgemed[cpu]`` in an empty venv: numpy + onnxruntime only, and a pure ``import runtime``.

    About a minute (pip installs numpy and onnxruntime from its cache or the index).
    """
    python = _make_venv(tmp_path / "venv", with_pip=True)
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPOSITORY / name, source / name)
    for package in ("runtime", "pipeline", "exporters", "dashboard"):
        if (REPOSITORY / package).is_dir():
            shutil.copytree(REPOSITORY / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [str(python), "-m", "pip", "install", "--quiet", "--retries", "0", "--timeout", "20"]
    result = subprocess.run([*pip, f"{source}[cpu]"], capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        pytest.skip(f"pip could not install edgemed[cpu] (offline?): {result.stderr.strip()[-300:]}")
    assert result.returncode == 0, result.stderr[-2000:]
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True)
    installed = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert {"numpy", "onnxruntime", "cryptography", "edgemed"} <= installed
    assert not installed & {"tensorflow", "keras", "tf2onnx", "onnx", "click", "streamlit", "scikit-learn", "scipy"}
    assert _forbidden_loaded(python, {"PATH": os.environ.get("PATH", "")}, cwd=tmp_path) == "[]"
    scripts = python.parent
    device = subprocess.run([str(scripts / "edgemed-device"), "--help"], capture_output=True, text=True, timeout=120)
    assert device.returncode == 0 and device.stdout.startswith("usage: edgemed-device"), device.stderr[-2000:]
    build = subprocess.run([str(scripts / "edgemed"), "--help"], capture_output=True, text=True, timeout=120)
    assert build.returncode == 2 and "Traceback" not in build.stderr  # the build machine's command, told in a line
    assert "edgemed-device BUNDLE" in build.stderr and "pip install 'edgemed[cpu,build,dashboard]'" in build.stderr
