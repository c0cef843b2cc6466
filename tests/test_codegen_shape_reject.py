"""Configs of the shape/slicing/resize/transposed-convolution ops that the code generator rejects
(issue 17): each gets an UnsupportedModelError naming the operator and what to change."""

from __future__ import annotations

import numpy as np
import pytest

from codegen_support import tflm_outputs
from tflite_builder import PAD, ModelBuilder, options
from tinysplit.errors import UnsupportedModelError
from tinysplit.exporter.codegen import render_model


def _i32(b: ModelBuilder, values: list[int]) -> int:
    return b.tensor((len(values),), "int32", data=np.asarray(values, dtype=np.int32))


def _strided(shape: tuple[int, ...], begin: list[int], end: list[int], strides: list[int], out: tuple[int, ...],
             shrink: int = 0, ellipsis: int = 0) -> bytes:
    b = ModelBuilder()
    x = b.tensor(shape, "int8", 0.05, 3)
    y = b.tensor(out, "int8", 0.05, 3)
    b.op("STRIDED_SLICE", [x, _i32(b, begin), _i32(b, end), _i32(b, strides)], [y],
         options("StridedSliceOptions", shrinkAxisMask=shrink, ellipsisMask=ellipsis))
    return b.build([x], [y])


def test_strided_slice_above_4d_rejected_as_tflm_does() -> None:
    m = _strided((1, 2, 3, 4, 5), [0] * 5, [1, 2, 3, 4, 5], [1] * 5, (1, 2, 3, 4, 5))
    with pytest.raises(Exception):  # TFLite Micro refuses it at Prepare ("input dim should not exceed 4")
        tflm_outputs(m, np.zeros((1, 120), np.int8))
    with pytest.raises(UnsupportedModelError, match=r"STRIDED_SLICE.*rank 5 is above 4"):
        render_model(m, "m")


def test_strided_slice_shrink_outside_the_axis_rejected() -> None:
    # begin 5 on a shrunk axis of size 5: TFLite Micro accepts it and reads outside the input
    m = _strided((3, 5), [0, 5], [3, 6], [1, 1], (3,), shrink=2)
    with pytest.raises(UnsupportedModelError, match=r"STRIDED_SLICE.*shrunk axis 1 starts at 5, outside its size 5"):
        render_model(m, "m")


def test_strided_slice_ellipsis_mask_rejected() -> None:
    m = _strided((3, 5), [0, 0], [3, 5], [1, 1], (3, 5), ellipsis=1)
    with pytest.raises(UnsupportedModelError, match=r"STRIDED_SLICE.*ellipsis_mask"):
        render_model(m, "m")


def test_slice_with_non_constant_begin_rejected() -> None:
    b = ModelBuilder()
    x = b.tensor((4, 4), "int8", 0.05, 0)
    begin = b.tensor((2,), "int32")
    y = b.tensor((2, 2), "int8", 0.05, 0)
    b.op("SLICE", [x, begin, _i32(b, [2, 2])], [y], options("SliceOptions"))
    with pytest.raises(UnsupportedModelError, match=r"SLICE.*begin .* must be a constant"):
        render_model(b.build([x], [y]), "m")


def test_resize_bilinear_align_corners_with_half_pixel_rejected() -> None:
    b = ModelBuilder()
    x = b.tensor((1, 3, 3, 2), "int8", 0.05, 0)
    y = b.tensor((1, 6, 6, 2), "int8", 0.05, 0)
    b.op("RESIZE_BILINEAR", [x, _i32(b, [6, 6])], [y],
         options("ResizeBilinearOptions", alignCorners=True, halfPixelCenters=True))
    with pytest.raises(UnsupportedModelError, match=r"RESIZE_BILINEAR.*align_corners and half_pixel_centers"):
        render_model(b.build([x], [y]), "m")


def test_copy_ops_with_requantization_rejected() -> None:
    b = ModelBuilder()
    x = b.tensor((1, 4, 4, 2), "int8", 0.05, 0)
    y = b.tensor((1, 2, 4, 4), "int8", 0.1, 0)
    b.op("TRANSPOSE", [x, _i32(b, [0, 3, 1, 2])], [y], options("TransposeOptions"))
    with pytest.raises(UnsupportedModelError, match=r"TRANSPOSE.*keep one quantization"):
        render_model(b.build([x], [y]), "m")


@pytest.mark.parametrize("act", ["RELU", "RELU6", "RELU_N1_TO_1"])
def test_transpose_conv_fused_activation_is_applied_as_tflite_micro_does(act: str, tmp_path) -> None:
    """The converter fuses a ReLU after nn.ConvTranspose2d into TRANSPOSE_CONV; TFLite Micro clamps by it."""
    from codegen_support import build_harness, tflm_outputs
    from tflite_builder import ACT

    rng = np.random.default_rng(7)
    b = ModelBuilder()
    x = b.tensor((1, 3, 3, 2), "int8", 0.05, 3)
    f = b.tensor((4, 3, 3, 2), "int8", 0.01, 0, data=rng.integers(-127, 128, (4, 3, 3, 2)).astype(np.int8))
    y = b.tensor((1, 6, 6, 4), "int8", 0.004, -5)
    b.op("TRANSPOSE_CONV", [_i32(b, [1, 6, 6, 4]), f, x], [y],
         options("TransposeConvOptions", padding=PAD["SAME"], strideH=2, strideW=2, fusedActivationFunction=ACT[act]))
    model = b.build([x], [y])
    xs = rng.integers(-128, 128, size=(16, 18)).astype(np.int8)
    got, _ = build_harness([model], tmp_path).run(0, xs)
    want = tflm_outputs(model, xs)
    assert np.array_equal(got, want)
    assert want.min() > -128 or act == "RELU_N1_TO_1"  # the clamp really bit
