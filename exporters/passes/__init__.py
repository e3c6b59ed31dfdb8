"""Graph passes that make converted models fast in ONNX Runtime while staying portable.

Each pass rewrites an ``onnx.ModelProto`` in place with standard ONNX ops only and returns how
many rewrites it made. ``apply_passes`` runs them on a file; ``optimize_for_speed`` (in
``exporters.optimization.graph_passes``) also checks parity (max |Δ| ≤ 1e-4 against its input on real
inputs) and portability before writing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from exporters.passes.cancel_transposes import cancel_transposes
from exporters.passes.channels_last import channels_last_boundaries
from exporters.passes.conv1d_native import conv1d_native
from exporters.passes.conv_as_2d import conv1d_as_2d
from exporters.passes.fold_batchnorm import fold_batchnorm
from exporters.passes.fold_bias import fold_bias
from exporters.passes.fuse_layernorm import fuse_layernorm

if TYPE_CHECKING:
    import onnx


class PassName(StrEnum):
    CONV1D_NATIVE = "conv1d-native"  # Unsqueeze → Conv2D(1×k) → Squeeze  ⇒  Conv1D
    CANCEL_TRANSPOSES = "cancel-transposes"  # Transpose/Reshape pairs, Transpose before Flatten → MatMul
    FOLD_BATCHNORM = "fold-batchnorm"  # Conv/Gemm → BatchNormalization  ⇒  Conv/Gemm
    FOLD_BIAS = "fold-bias"  # Conv → Add(bias)  ⇒  Conv with bias; MatMul → Add(bias)  ⇒  Gemm
    FUSE_LAYERNORM = "fuse-layernorm"  # decomposed moments/z-scoring (11 nodes)  ⇒  LayerNormalization
    # int8 only: boundary Reshapes ⇒ Transposes ORT's channels-last int8 kernels cancel
    CHANNELS_LAST = "channels-last-boundaries"
    # fp32, chosen by measurement: the 1-D stack as 2-D convolutions (ORT's NCHWc kernels)
    CONV1D_AS_2D = "conv1d-as-2d"


PASSES: dict[PassName, Callable[[onnx.ModelProto], int]] = {
    PassName.CONV1D_NATIVE: conv1d_native,
    PassName.CANCEL_TRANSPOSES: cancel_transposes,
    PassName.FOLD_BATCHNORM: fold_batchnorm,
    PassName.FOLD_BIAS: fold_bias,
    PassName.FUSE_LAYERNORM: fuse_layernorm,
    PassName.CHANNELS_LAST: channels_last_boundaries,
    PassName.CONV1D_AS_2D: conv1d_as_2d,
}
# The fp32 passes, in this order: each exposes patterns for the next.
DEFAULT_PASSES: tuple[PassName, ...] = (
    PassName.CONV1D_NATIVE,
    PassName.CANCEL_TRANSPOSES,
    PassName.FOLD_BATCHNORM,
    PassName.FOLD_BIAS,
    PassName.FUSE_LAYERNORM,
)
# Run on the fp32 graph just before int8 static quantization (see channels_last.py).
QUANTIZATION_PASSES: tuple[PassName, ...] = (PassName.CHANNELS_LAST,)


def run_passes(model: onnx.ModelProto, passes: Sequence[PassName | str] = DEFAULT_PASSES) -> dict[str, int]:
    """Run ``passes`` on ``model`` in place; return {pass: rewrites}."""
    return {PassName(name).value: PASSES[PassName(name)](model) for name in passes}


def apply_passes(model_path: Path, out_path: Path, passes: Sequence[PassName | str] = DEFAULT_PASSES) -> dict[str, int]:
    """Load ``model_path``, run ``passes``, check and write the result atomically to ``out_path``."""
    import onnx

    from exporters._files import atomic_destination, load_onnx_model
    from exporters.errors import ExportError

    model = load_onnx_model(Path(model_path), ExportError)
    counts = run_passes(model, passes)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(
            f"the graph passes {list(counts)} produced an invalid model from {Path(model_path).name}: {error}",
            expected="a valid ONNX model after every pass",
            fix="run without the failing pass and report the model to the exporters maintainers",
        ) from error
    with atomic_destination(Path(out_path)) as temporary:
        onnx.save_model(model, str(temporary))
    return counts
