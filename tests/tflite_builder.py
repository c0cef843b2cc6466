"""Build small int8 .tflite models directly with the TFLite flatbuffer schema (object API).

Used by the per-op tests: every quantization parameter is chosen by the test (random but seeded),
and building a model takes microseconds instead of a TFLiteConverter run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as S

_TYPES = {"float32": 0, "int32": 2, "int64": 4, "int8": 9}
_NP = {"float32": np.float32, "int32": np.int32, "int64": np.int64, "int8": np.int8}
ACT = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
PAD = {"SAME": 0, "VALID": 1}


@dataclass
class ModelBuilder:
    tensors: list[Any] = field(default_factory=list)
    buffers: list[Any] = field(default_factory=lambda: [S.BufferT()])
    opcodes: list[int] = field(default_factory=list)
    operators: list[Any] = field(default_factory=list)

    def tensor(self, shape: tuple[int, ...], dtype: str = "int8", scale: float | list[float] | None = None,
               zero_point: int | list[int] = 0, data: np.ndarray | None = None, qdim: int = 0,
               name: str | None = None) -> int:
        t = S.TensorT()
        t.shape = np.asarray(shape, dtype=np.int32)
        t.type = _TYPES[dtype]
        t.name = name or f"t{len(self.tensors)}"
        if scale is not None:
            q = S.QuantizationParametersT()
            scales = [float(s) for s in np.atleast_1d(scale)]
            zps = np.atleast_1d(zero_point).astype(np.int64)
            if len(zps) == 1 and len(scales) > 1:
                zps = np.repeat(zps, len(scales))
            q.scale = np.asarray(scales, dtype=np.float32)
            q.zeroPoint = zps
            q.quantizedDimension = qdim
            t.quantization = q
        if data is not None:
            b = S.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data, dtype=_NP[dtype]).tobytes(), dtype=np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        else:
            t.buffer = 0
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, name: str, inputs: list[int], outputs: list[int], options: Any = None) -> None:
        code = getattr(S.BuiltinOperator, name)
        if code not in self.opcodes:
            self.opcodes.append(code)
        o = S.OperatorT()
        o.opcodeIndex = self.opcodes.index(code)
        o.inputs = np.asarray(inputs, dtype=np.int32)
        o.outputs = np.asarray(outputs, dtype=np.int32)
        if options is not None:
            kind = type(options).__name__[:-1]  # "Conv2DOptionsT" -> "Conv2DOptions"
            o.builtinOptionsType = getattr(S.BuiltinOptions, kind)
            o.builtinOptions = options
        self.operators.append(o)

    def build(self, inputs: list[int], outputs: list[int]) -> bytes:
        import flatbuffers

        sg = S.SubGraphT()
        sg.tensors = self.tensors
        sg.inputs = np.asarray(inputs, dtype=np.int32)
        sg.outputs = np.asarray(outputs, dtype=np.int32)
        sg.operators = self.operators
        sg.name = "main"
        m = S.ModelT()
        m.version = 3
        m.description = "tinysplit test model"
        codes = []
        for c in self.opcodes:
            oc = S.OperatorCodeT()
            oc.builtinCode = c
            oc.deprecatedBuiltinCode = min(c, 127)
            oc.version = 1
            codes.append(oc)
        m.operatorCodes = codes
        m.subgraphs = [sg]
        m.buffers = self.buffers
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def options(kind: str, **kw: Any) -> Any:
    o = getattr(S, kind + "T")()
    for k, v in kw.items():
        if not hasattr(o, k):
            raise AttributeError(f"{kind} has no field {k}")
        setattr(o, k, v)
    return o
