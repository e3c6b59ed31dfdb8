"""``choose_conv_layout``: ship the 1-D or the 2-D form of a convolution stack, by measurement.

The fp32 passes leave 1-D convolutions (``conv1d-native``), which every runtime reads
and the int8 kernels prefer. ONNX Runtime's NCHWc fp32 kernels only take 2-D
convolutions, so the ``conv1d-as-2d`` pass may be faster in fp32 — on the synthetic
``ecg-arrhythmia`` model on this project's AVX2 machine it took about a third off, and
``ecg-pvc`` ran at 0.69× on an AVX-512 machine — or not (a model with one convolution, a
CPU without those kernels). Both forms are timed together in rotating rounds on this
machine and the 2-D form ships only when it is at least ``margin`` faster.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from exporters._files import atomic_destination, scratch_directory
from exporters.inputs import ModelInputs, as_float32, select
from exporters.optimization.graph_passes import optimize_for_speed
from exporters.passes import PassName
from exporters.task_detection import TaskKind
from exporters.timing import InterleavedTiming, measure_interleaved, onnx_runner

ONE_D, TWO_D = "1-D convolutions", "2-D convolutions (conv1d-as-2d)"
DEFAULT_TIMING = InterleavedTiming(rounds=21, runs_per_round=100, warmup_runs=100)


def choose_conv_layout(
    source: Path,
    destination: Path,
    inputs: ModelInputs,
    timing: InterleavedTiming = DEFAULT_TIMING,
    threads: int = 1,
    margin: float = 0.02,
    task: TaskKind | str | None = None,
) -> dict:
    """Write the faster layout of ``source`` (fp32, after the default passes) to ``destination``.

    ``inputs``: real model inputs, one array or a mapping input name → array (parity of the
    2-D form is checked on them for ``task``'s decision, and one sample is timed).
    Returns what was chosen, why, and the measured ratio.

    Raises:
        ExportError / ParityError: as ``optimize_for_speed`` (the 2-D form must match the 1-D one).
    """
    source, destination = Path(source), Path(destination)
    with scratch_directory(destination) as scratch:
        lifted = scratch / "conv-as-2d.onnx"
        rewrites = optimize_for_speed(source, lifted, inputs, [PassName.CONV1D_AS_2D], task=task)
        lifted_ops = rewrites["passes"][PassName.CONV1D_AS_2D.value]
        report = {"rule": f"2-D only when at least {margin:.0%} faster (median of per-round ratios, batch 1, "
                          f"{threads} thread(s))", "lifted_ops": lifted_ops}
        if lifted_ops == 0:
            chosen, report["reason"] = source, "no 1-D convolution or pooling to lift"
        else:
            sample = select(as_float32(inputs), slice(0, 1))
            result = measure_interleaved({ONE_D: onnx_runner(source, sample, threads),
                                          TWO_D: onnx_runner(lifted, sample, threads)}, timing)
            ratio = result.ratio(TWO_D, ONE_D)
            chosen = lifted if ratio <= 1.0 - margin else source
            report.update({"ratio_2d_to_1d": ratio, "median_of_windows_us": {ONE_D: result.median_of_windows_us(ONE_D),
                                                                 TWO_D: result.median_of_windows_us(TWO_D)},
                           "max_abs_diff": rewrites["max_abs_diff"],
                           "reason": f"2-D form at {ratio:.2f}× the 1-D form's latency"})
        report["chosen"] = TWO_D if chosen == lifted else ONE_D
        if chosen != destination:
            with atomic_destination(destination) as temporary:
                shutil.copyfile(chosen, temporary)
    return report
