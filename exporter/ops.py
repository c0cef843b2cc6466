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
    "QUANTIZE": "float32 -> int8 (model input), or int8 -> int8 requantization",
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

    # -- shape, slicing, resize and transposed convolution (issue 17): add entries below this line

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
    "Upsample": "upsampling lowers to RESIZE_NEAREST_NEIGHBOR/RESIZE_BILINEAR, which are not supported; "
                 "keep upsampling in the host tail",
    "ConvTranspose2d": "transposed convolution lowers to TRANSPOSE_CONV, which is not supported; keep it in the host tail",
    "MultiheadAttention": "attention needs BATCH_MATMUL and float softmax paths that are not supported",
    "Embedding": "embeddings lower to GATHER, which is not supported",
    "LayerNorm": "LayerNorm lowers to float/RSQRT ops that are not supported; use BatchNorm (folded at export)",
    "GELU": "GELU is not supported; use ReLU or ReLU6",
}

# ONNX op types whose conversion is known to stay inside SUPPORTED_OPS (or to fold away).
ONNX_OPS_KNOWN_GOOD: frozenset[str] = frozenset({
    "Conv", "Relu", "Clip", "BatchNormalization", "Add", "Sub", "Mul", "Div", "Pad", "AveragePool",
    "MaxPool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "Gemm", "MatMul", "Flatten",
    "Reshape", "Concat", "Softmax", "Sigmoid", "Constant", "Identity", "Squeeze", "Unsqueeze",
    "Transpose", "Shape", "Gather", "Cast",
    # activations (issue 17): nn.Hardswish, nn.LeakyReLU, nn.PReLU, nn.Tanh convert to HARD_SWISH,
    # LEAKY_RELU, PRELU, TANH, which lower
    "HardSwish", "LeakyRelu", "PRelu", "Tanh",
})

# For an unsupported TFLite op: the ONNX op types it usually comes from.
TFLITE_FROM_ONNX: dict[str, frozenset[str]] = {
    "RESIZE_NEAREST_NEIGHBOR": frozenset({"Resize", "Upsample"}),
    "RESIZE_BILINEAR": frozenset({"Resize", "Upsample"}),
    "TRANSPOSE_CONV": frozenset({"ConvTranspose"}),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": frozenset({"LSTM"}),
    "WHILE": frozenset({"LSTM", "GRU", "RNN", "Loop"}),
    "GATHER": frozenset({"Gather"}),
    "BATCH_MATMUL": frozenset({"MatMul"}),
    "HARD_SWISH": frozenset({"HardSwish"}),
    "TANH": frozenset({"Tanh"}),
    "RSQRT": frozenset({"LayerNormalization", "Sqrt", "ReduceMean"}),
    "SQRT": frozenset({"Sqrt"}),
    "TRANSPOSE": frozenset({"Transpose"}),
    "SUB": frozenset({"Sub"}),
    "LEAKY_RELU": frozenset({"LeakyRelu"}),
    "PRELU": frozenset({"PRelu"}),
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
