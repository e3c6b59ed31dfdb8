"""``make gpu-check``: every bundle on the CUDA (and TensorRT) execution provider, against its CPU answers.

Run from the separate GPU virtualenv (``onnxruntime-gpu``, never beside ``onnxruntime``). For each bundle:
verify it (trust store), open one session per provider on the verified bytes, feed the same seeded inputs
(SYNTHETIC: standard normal N(0,1) random values shaped by the bundle's contract, not real data — ``INPUTS``,
written into the report) through I/O binding (inputs bound from host memory, outputs kept on the
GPU and copied back once), and compare every output with the CPU provider's: max |Δ| within the tolerance
and the same decisions (argmax or threshold side). Writes a JSON + markdown report.

On a machine without an NVIDIA GPU it says so and exits 0 having measured nothing; a machine with a GPU
whose CUDA provider is missing or falls back to CPU is a failure (exit 1): the path was asked for and
does not run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from runtime.bundle import Bundle, load_bundle
from runtime.contract import TaskKind
from runtime.errors import EdgemedError
from runtime.session import CUDA_PROVIDER, GPU_PROVIDERS, TENSORRT_PROVIDER, full_provider_name, onnxruntime_errors
from runtime.trust import TrustPolicy

FP32_TOLERANCE = 1e-4  # CUDA kernels reorder sums: fp32 answers agree to about this
FP16_TOLERANCE = 2e-2  # an fp16 variant's answers on GPU and CPU round differently
BATCH_SIZES = (1, 32)
SEED = 0
INPUTS = (f"synthetic: seeded standard normal N(0,1) random inputs (seed {SEED}, batches "
          f"{', '.join(map(str, BATCH_SIZES))}) in the shapes of each bundle's contract, not real data: a parity check "
          "of the providers' answers, not a measure of accuracy")


@dataclass
class ProviderCheck:
    bundle: str
    variant: str
    provider: str
    ran_on: str = ""  # the provider the session reports first (a silent CPU fallback shows here)
    max_abs_difference: float | None = None
    tolerance: float = FP32_TOLERANCE
    decisions_agree: bool | None = None
    error: str | None = None

    @property
    def passed(self) -> bool:
        return (self.error is None and self.ran_on == self.provider and self.decisions_agree is True
                and self.max_abs_difference is not None and self.max_abs_difference <= self.tolerance)


@dataclass
class GpuReport:
    gpu: str  # what nvidia-smi said, or why there is none
    available_providers: list[str]
    checks: list[ProviderCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)


def detect_gpu() -> str | None:
    """The GPUs ``nvidia-smi -L`` lists, or None when there is no NVIDIA GPU (or no driver)."""
    command = shutil.which("nvidia-smi")
    if command is None:
        return None
    try:
        listing = subprocess.run([command, "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in listing.stdout.splitlines() if line.startswith("GPU ")]
    return "; ".join(lines) if listing.returncode == 0 and lines else None


def contract_inputs(bundle: Bundle, batch: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Seeded float32 inputs of the shapes the bundle's contract declares: standard normal, SYNTHETIC (``INPUTS``)."""
    generator = np.random.default_rng(seed)
    return {spec.name: generator.standard_normal((batch, *spec.sample_shape)).astype(np.float32)
            for spec in bundle.inputs}


def run_with_binding(bundle: Bundle, feed: dict[str, np.ndarray], device: str) -> list[np.ndarray]:
    """One run through I/O binding: inputs from host memory, outputs left on ``device`` and copied back once."""
    binding = bundle.session.io_binding()
    for name, value in feed.items():
        binding.bind_cpu_input(name, np.ascontiguousarray(value))
    for output in bundle.session.get_outputs():
        binding.bind_output(output.name, device)
    binding.synchronize_inputs()
    bundle.session.run_with_iobinding(binding)
    binding.synchronize_outputs()
    return binding.copy_outputs_to_cpu()


def decisions(bundle: Bundle, outputs: list[np.ndarray]) -> np.ndarray:
    """What the device would decide from the first output: argmax for multiclass, the threshold side otherwise."""
    first = np.asarray(outputs[0])
    rule = bundle.output.decision
    if bundle.output.task is TaskKind.MULTICLASS:
        return first.argmax(axis=-1)
    threshold = getattr(rule, "threshold", None)
    if threshold is None:
        return np.round(first, 3)  # regression: no decision, compare values at a coarse grid
    return first >= threshold


def check_bundle(path: Path, provider: str, trust: TrustPolicy) -> ProviderCheck:
    """``provider``'s answers for the bundle at ``path`` against the CPU provider's."""
    provider = full_provider_name(provider)
    check = ProviderCheck(bundle=path.name, variant="", provider=provider)
    try:
        reference = load_bundle(path, "cpu", trust=trust)
        candidate = load_bundle(path, provider, trust=trust)
    except (EdgemedError, *onnxruntime_errors(), RuntimeError, ValueError) as error:
        check.error = f"{type(error).__name__}: {error}"
        return check
    check.variant = reference.variant
    check.ran_on = candidate.provider
    check.tolerance = FP16_TOLERANCE if "fp16" in reference.variant else FP32_TOLERANCE
    device = "cuda" if provider in GPU_PROVIDERS else "cpu"
    differences, agree = [], True
    try:
        for batch in BATCH_SIZES:
            feed = contract_inputs(reference, batch)
            expected = reference.session.run(None, feed)
            actual = run_with_binding(candidate, feed, device)
            differences += [float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(e, np.float64))))
                            for a, e in zip(actual, expected, strict=True)]
            agree = agree and bool(np.array_equal(decisions(reference, expected), decisions(reference, actual)))
    except (*onnxruntime_errors(), RuntimeError, ValueError) as error:
        check.error = f"{type(error).__name__}: {error}"
        return check
    check.max_abs_difference = max(differences)
    check.decisions_agree = agree
    return check


def gpu_providers(available: list[str]) -> list[str]:
    """The GPU providers to check: CUDA always (its absence is a failure on a GPU machine), TensorRT if present."""
    return [CUDA_PROVIDER] + ([TENSORRT_PROVIDER] if TENSORRT_PROVIDER in available else [])


def write_report(report: GpuReport, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    data = {"gpu": report.gpu, "available_providers": report.available_providers, "passed": report.passed,
            "inputs": INPUTS, "inputs_synthetic": True,
            "checks": [asdict(check) | {"passed": check.passed} for check in report.checks]}
    for name, text in (("gpu_check.json", json.dumps(data, indent=2) + "\n"), ("gpu_check.md", _markdown(report))):
        temporary = output / f".{name}.tmp"
        temporary.write_text(text)
        temporary.replace(output / name)


def _markdown(report: GpuReport) -> str:
    lines = ["# GPU check", "", f"GPU: {report.gpu}", "",
             f"ONNX Runtime providers: {', '.join(report.available_providers)}", "",
             f"Inputs: {INPUTS}.", "",
             "| bundle | variant | provider | ran on | max abs Δ vs CPU | tolerance | decisions agree | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for check in report.checks:
        difference = "—" if check.max_abs_difference is None else f"{check.max_abs_difference:.2e}"
        verdict = "pass" if check.passed else f"FAIL {check.error or ''}".strip()
        lines.append(f"| {check.bundle} | {check.variant} | {check.provider} | {check.ran_on} | {difference} | "
                     f"{check.tolerance:g} | {check.decisions_agree} | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.benchmark.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--bundles", type=Path, default=Path("bundles"), help="folder of bundle folders")
    parser.add_argument("--trust-store", type=Path, default=Path(".edgemed-keys/dev/trust-store"))
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--providers", default=None,
                        help="comma-separated providers to compare with CPU (default: CUDA, and TensorRT if present)")
    arguments = parser.parse_args(argv)
    gpu = detect_gpu()
    if gpu is None and arguments.providers is None:
        print("gpu-check: no NVIDIA GPU on this machine (nvidia-smi missing or lists none): nothing was run or "
              "measured; run `make gpu-check` on a machine with a GPU", file=sys.stderr)
        return 0
    import onnxruntime

    available = list(onnxruntime.get_available_providers())
    providers = arguments.providers.split(",") if arguments.providers else gpu_providers(available)
    report = GpuReport(gpu=gpu or "none (forced providers)", available_providers=available)
    bundles = sorted(path for path in arguments.bundles.iterdir() if (path / "manifest.json").is_file()) \
        if arguments.bundles.is_dir() else []
    if not bundles:
        print(f"gpu-check: no bundles in {arguments.bundles}: run `make build` first", file=sys.stderr)
        return 1
    trust = TrustPolicy.from_store(arguments.trust_store)
    for path in bundles:
        for provider in providers:
            check = check_bundle(path, provider, trust)
            report.checks.append(check)
            print(f"{'✓' if check.passed else '✗'} {check.bundle} {check.variant} on {check.provider} "
                  f"(ran on {check.ran_on or '—'}): max |Δ| {check.max_abs_difference} "
                  f"{check.error or ''}".rstrip(), file=sys.stderr)
    write_report(report, arguments.output)
    print(f"gpu-check: {'passed' if report.passed else 'FAILED'} on {INPUTS}; report in "
          f"{arguments.output}/gpu_check.md", file=sys.stderr)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
