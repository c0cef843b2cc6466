"""Read a .tflite flatbuffer into plain typed Python objects, without TensorFlow.

Uses the schema module that ships with the tflite-micro wheel. The op code of an operator is
max(builtinCode, deprecatedBuiltinCode) (the schema kept a deprecated int8 field for old ops).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tinysplit.errors import ConversionError, InputError

_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8", 6: "bool"}
_NP = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "uint8": np.uint8, "int64": np.int64,
       "int16": np.int16, "int8": np.int8, "bool": np.bool_}


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


@lru_cache(maxsize=1)
def _op_names() -> dict[int, str]:
    return {v: k for k, v in vars(_schema().BuiltinOperator).items() if not k.startswith("_")}


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: tuple[float, ...]  # empty if not quantized
    zero_points: tuple[int, ...]
    quantized_dimension: int
    data: np.ndarray | None  # constant data (weights, biases, shapes), None for activations

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def per_channel(self) -> bool:
        return len(self.scales) > 1


@dataclass(frozen=True)
class Operator:
    index: int
    opcode: str
    inputs: tuple[int, ...]  # -1 marks an omitted optional input
    outputs: tuple[int, ...]
    options: Any  # the schema's builtin options object (e.g. Conv2DOptionsT), or None


@dataclass(frozen=True)
class TfliteModel:
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    size_bytes: int

    @property
    def ops(self) -> list[str]:
        """Distinct op names in first-use order."""
        return list(dict.fromkeys(op.opcode for op in self.operators))

    def input_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.inputs]

    def output_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.outputs]


def parse_tflite(buf: bytes) -> TfliteModel:
    schema = _schema()
    try:
        m = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    except Exception as e:  # the flatbuffer library raises assorted errors on garbage
        raise InputError(f"not a valid .tflite flatbuffer ({type(e).__name__}: {e})") from None
    if not m.subgraphs:
        raise InputError("not a valid .tflite model: it has no subgraph")
    if len(m.subgraphs) != 1:
        raise ConversionError(f"expected a .tflite model with exactly one subgraph, got {len(m.subgraphs)}")
    sg = m.subgraphs[0]
    names = _op_names()
    tensors = []
    for i, t in enumerate(sg.tensors):
        dtype = _DTYPES.get(t.type, f"type{t.type}")
        q = t.quantization
        scales = tuple(float(s) for s in (q.scale if q is not None and q.scale is not None else []))
        zps = tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else []))
        qdim = int(q.quantizedDimension) if q is not None else 0
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        data = None
        b = m.buffers[t.buffer] if t.buffer < len(m.buffers) else None
        if b is not None and b.data is not None and len(b.data) > 0 and dtype in _NP:
            raw = np.asarray(b.data, dtype=np.uint8).tobytes()
            data = np.frombuffer(raw, dtype=_NP[dtype]).reshape(shape if shape else ())
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        tensors.append(Tensor(i, name, shape, dtype, scales, zps, qdim, data))
    ops = []
    for i, op in enumerate(sg.operators):
        oc = m.operatorCodes[op.opcodeIndex]
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        ops.append(Operator(i, names.get(code, f"BUILTIN_{code}"), tuple(int(x) for x in op.inputs),
                            tuple(int(x) for x in op.outputs), op.builtinOptions))
    return TfliteModel(tuple(tensors), tuple(ops), tuple(int(x) for x in sg.inputs),
                       tuple(int(x) for x in sg.outputs), len(buf))


def read_tflite(path: str | Path) -> TfliteModel:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"'{p}' does not exist; pass the path of an int8 .tflite file")
    return parse_tflite(p.read_bytes())


def check_fully_int8(model: TfliteModel) -> None:
    """Raise ConversionError unless I/O and activations are int8, weights int8 and biases int32."""
    problems = []
    for t in model.input_tensors() + model.output_tensors():
        if t.dtype != "int8":
            problems.append(f"model input/output '{t.name}' is {t.dtype}, not int8")
    for op in model.operators:
        for pos, ti in enumerate(op.inputs):
            if ti < 0:
                continue
            t = model.tensors[ti]
            if not t.is_constant:
                if t.dtype != "int8":
                    problems.append(f"{op.opcode} #{op.index} input '{t.name}' is {t.dtype}")
            elif op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                want = "int32" if pos == 2 else "int8"
                if t.dtype != want:
                    problems.append(f"{op.opcode} #{op.index} {'bias' if pos == 2 else 'weights'} "
                                    f"'{t.name}' is {t.dtype}, expected {want}")
        for ti in op.outputs:
            if model.tensors[ti].dtype != "int8":
                problems.append(f"{op.opcode} #{op.index} output '{model.tensors[ti].name}' is {model.tensors[ti].dtype}")
    if problems:
        raise ConversionError("the converted model is not fully int8: " + "; ".join(problems[:5]))
