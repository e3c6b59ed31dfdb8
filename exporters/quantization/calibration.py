"""Calibration for int8 static quantization: the data reader, the subset, entropy ranges, ORT's options.

Mirrors ONNX Runtime's own ``quantization/calibrate.py``: what feeds the calibrator
(``CalibrationReader``), which samples it sees (``calibration_subset``), and how our
``CalibrationMethod`` becomes ORT's (``ort_calibration_method``, ``calibration_options``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from exporters.errors import QuantizationError
from exporters.inputs import ModelInputs, as_float32, check_inputs, feeds, sample_count, select
from exporters.quantization.settings import CalibrationMethod, QuantizationConfig

logger = logging.getLogger(__name__)

# Samples per calibration inference. Every batch has this size: ORT's entropy and
# percentile calibrators stack the batches into one array and fail on a partial last batch.
CALIBRATION_BATCH = 32
# Entropy calibration: histogram bins, and the bins of the quantized range (128 = 8-bit
# magnitude, as in TensorRT). The KL search tries (bins − quantized bins)/2 + 1 thresholds.
_ENTROPY_HISTOGRAM_BINS = 512
_ENTROPY_QUANTIZED_BINS = 128


class CalibrationReader:
    """Feeds calibration samples to ORT in batches and reports progress.

    Implements ``onnxruntime.quantization.CalibrationDataReader`` (checked structurally
    by its ``__subclasshook__``): ``get_next`` returns one input dict per call, then None.
    ``input_names`` is the model's input name (one array of ``samples``) or its input names
    (``samples`` a mapping name → array); every input is batched with the same rows.
    """

    def __init__(self, input_names: str | Sequence[str], samples: ModelInputs,
                 progress: Callable[[int, int], None] | None) -> None:
        names = [input_names] if isinstance(input_names, str) else list(input_names)
        self._samples = feeds(samples, names, QuantizationError)
        self._total = sample_count(self._samples)
        self._progress = progress
        self._position = 0
        self._finished = False

    def get_next(self) -> dict[str, np.ndarray] | None:
        total = self._total
        if self._position > 0 and not self._finished:
            self._report(self._position, total)  # the previous batch has been run by now
        if self._position >= total:
            self._finished = True
            return None
        start, self._position = self._position, min(self._position + CALIBRATION_BATCH, total)
        return {name: value[start : self._position] for name, value in self._samples.items()}

    def __len__(self) -> int:
        return -(-self._total // CALIBRATION_BATCH)

    def rewind(self) -> None:
        self._position = 0
        self._finished = False

    def _report(self, done: int, total: int) -> None:
        logger.debug("calibration: %d/%d samples", done, total)
        if self._progress is not None:
            self._progress(done, total)


def calibration_subset(calibration_inputs: ModelInputs, config: QuantizationConfig) -> ModelInputs:
    """At most ``config.calibration_samples`` samples, evenly spaced so every part of the split counts.

    ``calibration_inputs`` is one array, or a mapping input name → array (the same rows are
    taken from every input); the result has the same structure, as float32 (integer arrays
    of a mapping keep their type).

    Raises:
        QuantizationError: a non-positive cap, or empty, misaligned or non-finite calibration inputs.
    """
    samples = as_float32(calibration_inputs)
    if config.calibration_samples < 1:
        raise QuantizationError(
            f"calibration_samples is {config.calibration_samples}",
            expected="a positive cap such as 512",
            fix="set QuantizationConfig.calibration_samples to a positive number",
        )
    check_inputs(samples, QuantizationError, "calibration inputs",
                 fix="pass the calibration split's features (every model input) and clean them before quantizing")
    total = sample_count(samples)
    count = min(total, config.calibration_samples)
    if count >= CALIBRATION_BATCH:
        count -= count % CALIBRATION_BATCH  # equal-size batches (see CALIBRATION_BATCH)
    if count < total:
        samples = select(samples, np.linspace(0, total - 1, count).round().astype(int))
    return samples


def entropy_calibration_cache(model_path: Path, reader: CalibrationReader, cache_path: Path) -> None:
    """Run entropy (KL) calibration with a histogram finer than the quantized range; cache the ranges.

    ``quantize_static`` builds its entropy calibrator with 128 histogram bins and 128
    quantized bins, and forwards no option to change them; with equal counts the KL
    search has a single candidate threshold — the full range — so "entropy" silently
    equals MinMax. Calibrating here with ``_ENTROPY_HISTOGRAM_BINS`` bins and handing
    the ranges to ``quantize_static`` through its calibration cache gives a real search.

    Raises:
        QuantizationError: this onnxruntime's ``quantize_static`` cannot take cached ranges.
    """
    import inspect

    from onnxruntime.quantization import CalibrationMethod as OrtCalibrationMethod
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise QuantizationError(
            "this onnxruntime's quantize_static cannot take precomputed calibration ranges",
            expected="an onnxruntime whose quantize_static accepts calibration_cache_path",
            fix="upgrade onnxruntime, or use calibration method minmax or percentile",
        )
    calibrator = create_calibrator(
        model_path,
        sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),
        augmented_model_path=str(cache_path.with_name(cache_path.stem + "-augmented.onnx")),
        calibrate_method=OrtCalibrationMethod.Entropy,
        extra_options={"num_bins": _ENTROPY_HISTOGRAM_BINS, "num_quantized_bins": _ENTROPY_QUANTIZED_BINS},
    )
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache_path)
    cache_path.with_name(cache_path.stem + "-augmented.onnx").unlink(missing_ok=True)


def ort_calibration_method(method: CalibrationMethod) -> object:
    """ONNX Runtime's ``CalibrationMethod`` member for ``method``."""
    from onnxruntime.quantization import CalibrationMethod as OrtCalibrationMethod

    return {
        CalibrationMethod.MINMAX: OrtCalibrationMethod.MinMax,
        CalibrationMethod.ENTROPY: OrtCalibrationMethod.Entropy,
        CalibrationMethod.PERCENTILE: OrtCalibrationMethod.Percentile,
    }[CalibrationMethod(method)]


def calibration_options(config: QuantizationConfig) -> dict[str, object]:
    """The calibration entries of ``quantize_static``'s ``extra_options`` for ``config``.

    Raises:
        QuantizationError: a PERCENTILE percentile outside (0, 100].
    """
    method = CalibrationMethod(config.calibration_method)
    if method is CalibrationMethod.PERCENTILE:
        if not 0.0 < config.percentile <= 100.0:
            raise QuantizationError(
                f"percentile is {config.percentile}",
                expected="a percentile in (0, 100], typically 99.9 to 99.999",
                fix="set QuantizationConfig.percentile to e.g. 99.999",
            )
        return {"CalibPercentile": config.percentile}
    # No CalibMaxIntermediateOutputs for MinMax: onnxruntime 1.32 *discards* the collected
    # batches when that cap is reached instead of merging their ranges, so ranges would come
    # from the last few batches only (and a batch count that is a multiple of the cap fails
    # with "No data is collected"). calibration_samples bounds the memory instead.
    return {}
