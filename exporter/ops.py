"""The op set the code generator supports, and how an unsupported op is traced to a PyTorch layer.

``OPS`` (op -> its constraints; ``SUPPORTED_OPS`` its keys) is the single list the exporter's check, the C
code generator and ``tinysplit ops`` use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is only needed by the functions that inspect a torch model
    from torch import nn

# TFLite builtin ops with an int8 kernel in tinysplit's C library (TFLite integer semantics), each with
# the constraints the lowering enforces (``tinysplit ops`` prints this table; a model outside it gets a
# clear error naming the operator). Grouped by kind; add an op to its group (and its lowering to
# the same group's module in tinysplit.exporter.codegen).
OPS: dict[str, str] = {
    # -- convolutions, pooling, fully connected
    "CONV_2D": "int8, filter per-channel or per-tensor (symmetric), any kernel size, stride and dilation, "
               "SAME/VALID padding, fused NONE/RELU/RELU6/RELU_N1_TO_1, int32 bias optional",
    "DEPTHWISE_CONV_2D": "int8, any depth multiplier, stride and dilation, SAME/VALID, fused activations as CONV_2D, "
                         "bias required (TFLite Micro needs it)",
    "FULLY_CONNECTED": "int8, constant weights (per-tensor), bias optional, keep_num_dims either way",
    "AVERAGE_POOL_2D": "int8, any window and stride, SAME/VALID, fused activations",
    "MAX_POOL_2D": "int8, any window and stride, SAME/VALID, fused activations",
    "MEAN": "int8, over height and width of a 4-D tensor (keep_dims either way)",
    # -- elementwise arithmetic
    "ADD": "int8, broadcasting up to 4-D, fused activations",
    "MUL": "int8, broadcasting up to 4-D, fused activations",
    # -- activations
    "SOFTMAX": "int8 in, int8 out with scale 1/256 and zero point -128, over the last axis",
    "LOGISTIC": "int8 in, int8 out with scale 1/256 and zero point -128",
    # -- data movement
    "PAD": "int8, constant paddings, padded with the output zero point",
    "RESHAPE": "any shape of the same size (no copy: the output is the input's memory)",
    "CONCATENATION": "int8, any axis, every input quantized as the output, no fused activation",
    # -- quantization
    "QUANTIZE": "float32 -> int8 (model input), int8 -> int8 requantization, or quantized int32 -> int8 "
                "(e.g. ARG_MAX indices)",
    "DEQUANTIZE": "int8 -> float32 (model output)",
    # -- activations (issue 17): add entries below this line
    "HARD_SWISH": "int8, any shape; input scale below 128 x output scale (TFLite Micro requires it)",
    "LEAKY_RELU": "int8, any shape, any alpha (negative and > 1 too)",
    "RELU": "int8, any shape; input and output quantization may differ (requantized)",
    "RELU6": "int8, any shape, output quantized as the input (TFLite Micro clamps the input values)",
    "TANH": "int8 in, int8 out with scale 1/128 and zero point 0",
    "PRELU": "int8, constant int8 alpha (one scale) broadcast over the input, up to 4-D",
    "LOG_SOFTMAX": "int8 in, int8 out with scale 16/256 and zero point 127, over the last axis",
    "L2_NORMALIZATION": "int8 in, int8 out with scale 1/128 and zero point 0, over the last axis, "
                        "up to 4-D, no fused activation",

    # -- binary ops and reductions (issue 17): add entries below this line
    "SUB": "int8, broadcasting up to 4-D, fused NONE/RELU/RELU6/RELU_N1_TO_1; the output scale must exceed "
           "max(input scales) / 2^19 (TFLite Micro refuses smaller ones)",
    "MINIMUM": "int8, broadcasting up to 4-D; compares the raw int8 values as TFLite Micro does (give both "
               "inputs and the output one scale and zero point, as the converter does)",
    "MAXIMUM": "int8, broadcasting up to 4-D; compares the raw int8 values as TFLite Micro does (give both "
               "inputs and the output one scale and zero point, as the converter does)",
    "SQUARED_DIFFERENCE": "int8, broadcasting up to 4-D, no fused activation",
    "SUM": "int8, constant int32 axes (any of up to 4 dimensions), keep_dims either way",
    "REDUCE_MAX": "int8, constant int32 axes (any of up to 4 dimensions), keep_dims either way, input and output "
                  "with the same scale and zero point (TFLite Micro requires it)",
    "ARG_MAX": "int8 input, one constant int32 axis, int32 output (TFLite Micro has no int64 one); the model's "
               "output must be int8, so the indices go on inside the model (e.g. QUANTIZE int32 -> int8)",
    "BATCH_MATMUL": "int8, operands of rank 2 to 5 (activations or constants, per-tensor quantized), batch "
                    "dimensions broadcast, adj_x / adj_y",

    # -- shape, slicing, resize and transposed convolution (issue 17): add entries below this line
    "SQUEEZE": "int8, any squeeze_dims (no copy: the output is the input's memory, as RESHAPE)",
    "EXPAND_DIMS": "int8, constant axis (no copy: the output is the input's memory, as RESHAPE)",
    "SLICE": "int8, up to 5-D, constant begin and size (size -1: to the end), output quantized as the input; copies",
    "STRIDED_SLICE": "int8, 1-D to 4-D, constant begin/end/strides, begin/end/shrink_axis masks, negative strides; "
                     "no ellipsis/new_axis masks (TFLite Micro ignores them); copies",
    "SPLIT": "int8, up to 5-D, constant axis, equal parts; one copy per output (unused outputs are still written)",
    "SPLIT_V": "int8, up to 5-D, constant axis and size_splits (one -1 allowed); one copy per output",
    "PACK": "int8, any axis, every input quantized as the output; one strided copy per input",
    "UNPACK": "int8, up to 5-D, any axis; one copy per output",
    "TRANSPOSE": "int8, up to 5-D, constant perm, output quantized as the input; copies",
    "RESIZE_NEAREST_NEIGHBOR": "int8 4-D, constant size, align_corners / half_pixel_centers, output quantized as "
                               "the input (index maps computed at export); copies",
    "RESIZE_BILINEAR": "int8 4-D, constant size, align_corners or half_pixel_centers (not both), output quantized as "
                       "the input; TFLite's integer path (10-bit weights, int64 sums)",
    "TRANSPOSE_CONV": "int8, filter per-channel or per-tensor, int32 bias optional, SAME/VALID, any stride, no fused "
                      "activation (TFLite Micro applies none); each output computed directly, no scratch buffer",

}
SUPPORTED_OPS: frozenset[str] = frozenset(OPS)

# PyTorch layers (torch.nn class names) that are known not to lower to the supported set; checked before any conversion
# so the user gets the answer in milliseconds, with the layer's name.
UNSUPPORTED_MODULES: dict[str, str] = {
    "LSTM": "recurrent layers lower to UNIDIRECTIONAL_SEQUENCE_LSTM/WHILE, which int8 TFLite Micro code generation does not support; "
             "use convolutions over time (Conv1d as Conv2d) instead",
    "GRU": "recurrent layers lower to WHILE loops, which the code generator does not support; use convolutions over time",
    "RNN": "recurrent layers lower to WHILE loops, which the code generator does not support; use convolutions over time",
    "LSTMCell": "recurrent cells are not supported; use convolutions over time",
    "GRUCell": "recurrent cells are not supported; use convolutions over time",
    "MultiheadAttention": "attention needs head reshapes/transposes and float softmax paths that are not supported "
                          "(BATCH_MATMUL itself is)",
    "Embedding": "embeddings lower to GATHER, which is not supported",
    "LayerNorm": "LayerNorm lowers to float/RSQRT ops that are not supported; use BatchNorm (folded at export)",
    "GELU": "GELU is not supported; use ReLU or ReLU6",
}

# ONNX op types whose conversion is known to stay inside SUPPORTED_OPS (or to fold away).
ONNX_OPS_KNOWN_GOOD: frozenset[str] = frozenset({
    "Conv", "Relu", "Clip", "BatchNormalization", "Add", "Sub", "Mul", "Div", "Pad", "AveragePool",
    "MaxPool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "Gemm", "MatMul", "Flatten",
    "Reshape", "Concat", "Softmax", "Sigmoid", "Constant", "Identity", "Squeeze", "Unsqueeze",
    "Transpose", "Shape", "Gather", "Cast", "Min", "Max", "ReduceSum", "ReduceMax",
    "Resize", "Upsample", "ConvTranspose", "Slice", "Split",  # nearest/bilinear resize, transposed conv (issue 17)
    # activations (issue 17): nn.Hardswish, nn.LeakyReLU, nn.PReLU, nn.Tanh convert to HARD_SWISH,
    # LEAKY_RELU, PRELU, TANH, which lower
    "HardSwish", "LeakyRelu", "PRelu", "Tanh",
})

# For an unsupported TFLite op: the ONNX op types it usually comes from.
TFLITE_FROM_ONNX: dict[str, frozenset[str]] = {
    "RELU_0_TO_1": frozenset({"HardSigmoid"}),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": frozenset({"LSTM"}),
    "WHILE": frozenset({"LSTM", "GRU", "RNN", "Loop"}),
    "GATHER": frozenset({"Gather"}),
    "RSQRT": frozenset({"LayerNormalization", "Sqrt", "ReduceMean"}),
    "SQRT": frozenset({"Sqrt"}),
}


@dataclass(frozen=True)
class OnnxNodeInfo:
    """One ONNX node and the PyTorch layer it came from (from the exporter's scoped node name)."""

    op_type: str
    node_name: str
    torch_layer: str  # dotted module path, "" for the top-level module


def torch_layer_of(node_name: str) -> str:
    """'/conv2/conv2.0/Conv' -> 'conv2.0'; '/Resize' -> '' (the top-level module's forward)."""
    parts = [p for p in node_name.split("/") if p]
    return parts[-2] if len(parts) >= 2 else ""


def describe_layer(model: nn.Module | None, layer: str) -> str:
    if not layer:
        kind = type(model).__name__ if model is not None else "model"
        return f"the forward() of the top-level module ({kind})"
    try:
        kind = type(model.get_submodule(layer)).__name__ if model is not None else "?"
    except AttributeError:
        kind = "?"
    return f"layer '{layer}' ({kind})"


def find_unsupported_modules(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """[(dotted name, module, reason)] for every submodule of a known-unsupported type."""
    from torch import nn

    classes = {getattr(nn, k): reason for k, reason in UNSUPPORTED_MODULES.items()}
    out = []
    for name, mod in model.named_modules():
        for cls, reason in classes.items():
            if isinstance(mod, cls):
                out.append((name or "(top level)", mod, reason))
                break
    return out


def layers_for_tflite_op(op: str, nodes: list[OnnxNodeInfo], model: nn.Module | None) -> list[str]:
    """Describe the PyTorch layers an unsupported TFLite op most likely came from."""
    sources = TFLITE_FROM_ONNX.get(op, frozenset())
    hits = [n for n in nodes if n.op_type in sources]
    if not hits:  # fall back to any ONNX node outside the known-good set
        hits = [n for n in nodes if n.op_type not in ONNX_OPS_KNOWN_GOOD]
    seen, out = set(), []
    for n in hits:
        d = f"{describe_layer(model, n.torch_layer)} via ONNX {n.op_type} '{n.node_name}'"
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


# Advice for TFLite ops that neither the code generator nor TFLite Micro runs, by the op: what to
# write in PyTorch instead (added to the exporter's error).
TFLITE_ADVICE: dict[str, str] = {
    "RELU_0_TO_1": "nn.Hardsigmoid converts to RELU_0_TO_1, which TFLite Micro has no kernel for; write the hard "
                   "sigmoid as relu6(x + 3) / 6 (F.relu6(x + 3.0) * (1.0 / 6.0)), which converts to supported ops",
}
