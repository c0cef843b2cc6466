"""Skippable residual blocks: find them in an int8 .tflite, and rewrite the flatbuffer around them.

A residual block with an identity shortcut is ``y = ADD(x, f(x))``: a run of consecutive operators
(``first_op .. add_op``, in the subgraph's order) that reads only ``x``, constants and its own
tensors, whose inner tensors are used nowhere else, and whose ADD's other input ``x`` has ``y``'s
shape and is needed by nothing after the block. Skipping the block replaces ``y`` by ``x``
requantized to ``y``'s scale and zero point; where the two share them (``share_residual_quantization``
makes them so along each chain of blocks) the skip is the identity and costs nothing.

- ``find_residual_blocks(model)``: the skippable blocks, in order; bit i of a skip mask is block i.
- ``remove_blocks(tflite, mask)``: the same model with each masked block's operators replaced by one
  QUANTIZE (int8 -> int8) from ``x`` to ``y``: what TFLite Micro runs as the reference for that mask.
- ``share_residual_quantization(tflite)``: gives every tensor of a chain x0 -> y0 = x1 -> y1 ... one
  scale and zero point (the union of their ranges), so skipping any block of it is exact and free.

Only the schema module of the tflite-micro wheel is needed (no TensorFlow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinysplit.errors import InputError
from tinysplit.exporter.tflite_model import TfliteModel, parse_tflite

MAX_BLOCKS = 32  # a skip mask is a u32 (CONTROL key 4)


@dataclass(frozen=True)
class ResidualBlock:
    index: int  # its bit in the skip mask
    first_op: int  # operator index of the block's first operator
    add_op: int  # operator index of the ADD that closes it
    input: int  # tensor index of x (the identity shortcut)
    output: int  # tensor index of y = ADD(x, f(x))
    shared_quantization: bool  # x and y have the same scale and zero point: a skip is free

    @property
    def ops(self) -> range:
        return range(self.first_op, self.add_op + 1)


def _producers(model: TfliteModel) -> dict[int, int]:
    prod: dict[int, int] = {}
    for op in model.operators:
        for o in op.outputs:
            prod[o] = op.index
    return prod


def _consumers(model: TfliteModel) -> dict[int, list[int]]:
    cons: dict[int, list[int]] = {}
    for op in model.operators:
        for i in op.inputs:
            if i >= 0:
                cons.setdefault(i, []).append(op.index)
    return cons


def _block_for(model: TfliteModel, add: int, x: int, prod: dict[int, int],
               cons: dict[int, list[int]]) -> tuple[int, int] | None:
    """(first_op, add_op) if ADD ``add`` closes a valid identity block with shortcut ``x``."""
    op = model.operators[add]
    y = op.outputs[0]
    tx, ty = model.tensors[x], model.tensors[y]
    if x in model.inputs or tx.is_constant or tx.shape != ty.shape or tx.dtype != "int8":
        return None
    others = [i for i in op.inputs if i != x]
    if len(others) != 1 or list(op.inputs).count(x) != 1 or model.tensors[others[0]].shape != ty.shape:
        return None  # a broadcasting ADD cannot run in place
    p = prod.get(x)
    if p is None or p >= add - 1:
        return None  # no branch between x's producer and the ADD
    first = p + 1
    inner: set[int] = set()
    for k in range(first, add):
        inner.update(model.operators[k].outputs)
    for k in range(first, add + 1):
        for i in model.operators[k].inputs:
            if i < 0 or i == x or i in inner or model.tensors[i].is_constant:
                continue
            return None  # reads something computed outside the block
    if others[0] not in inner:
        return None
    outputs = set(model.outputs)
    for t in inner:
        if t in outputs or any(c > add or c < first for c in cons.get(t, [])):
            return None  # an inner tensor is used outside the block
    if any(c < first or c > add for c in cons.get(x, [])) or x in outputs:
        return None  # x is needed after the block too
    return first, add


def find_residual_blocks(model: TfliteModel) -> tuple[ResidualBlock, ...]:
    """The identity-shortcut residual blocks of ``model``, in operator order, non-overlapping."""
    prod, cons = _producers(model), _consumers(model)
    found: list[ResidualBlock] = []
    for op in model.operators:
        if op.opcode != "ADD":
            continue
        for x in sorted(op.inputs, key=lambda i: prod.get(i, -1)):  # the earlier-made input first
            if x < 0:
                continue
            r = _block_for(model, op.index, x, prod, cons)
            if r is None:
                continue
            first, add = r
            if found and first <= found[-1].add_op:
                break  # nested in or overlapping the previous block: not skippable on its own
            tx, ty = model.tensors[x], model.tensors[op.outputs[0]]
            same = tx.scales[:1] == ty.scales[:1] and tx.zero_points[:1] == ty.zero_points[:1]
            found.append(ResidualBlock(len(found), first, add, x, op.outputs[0], bool(same)))
            break
    if len(found) > MAX_BLOCKS:
        raise InputError(f"the model has {len(found)} skippable residual blocks; a skip mask holds at most "
                         f"{MAX_BLOCKS}")
    return tuple(found)


def check_mask(mask: int, blocks: int) -> int:
    """A skip mask for ``blocks`` blocks: bits 0..blocks-1 only."""
    if isinstance(mask, bool) or not isinstance(mask, (int, np.integer)):
        raise InputError(f"skip mask {mask!r} is not an integer")
    mask = int(mask)
    if mask < 0 or mask >> blocks:
        raise InputError(f"skip mask 0x{mask:x} has bits at or above bit {blocks}, but the model has {blocks} "
                         f"skippable block{'s' if blocks != 1 else ''} (valid masks: 0 .. 0x{(1 << blocks) - 1:x})")
    return mask


# ----------------------------------------------------------------------------- flatbuffer rewriting

def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


def _unpack(tflite: bytes):
    return _schema().ModelT.InitFromPackedBuf(bytearray(tflite), 0)


def _pack(m) -> bytes:
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _opcode_index(m, code: int) -> int:
    for k, oc in enumerate(m.operatorCodes):
        if max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)) == code:
            return k
    S = _schema()
    oc = S.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, 127)
    oc.version = 2  # int8 -> int8 requantization
    m.operatorCodes.append(oc)
    return len(m.operatorCodes) - 1


def remove_blocks(tflite: bytes, mask: int) -> bytes:
    """The model with every block whose bit is set in ``mask`` replaced by QUANTIZE(x) -> y."""
    model = parse_tflite(tflite)
    blocks = find_residual_blocks(model)
    mask = check_mask(mask, len(blocks))
    if mask == 0:
        return bytes(tflite)
    S = _schema()
    m = _unpack(tflite)
    sg = m.subgraphs[0]
    q = _opcode_index(m, S.BuiltinOperator.QUANTIZE)
    drop: set[int] = set()
    replace: dict[int, object] = {}
    for b in blocks:
        if not mask >> b.index & 1:
            continue
        drop.update(b.ops)
        op = S.OperatorT()
        op.opcodeIndex = q
        op.inputs = np.asarray([b.input], dtype=np.int32)
        op.outputs = np.asarray([b.output], dtype=np.int32)
        replace[b.add_op] = op
    ops = []
    for k, op in enumerate(sg.operators):
        if k in replace:
            ops.append(replace[k])
        elif k not in drop:
            ops.append(op)
    sg.operators = ops
    return _pack(m)


def _range(scale: float, zp: int) -> tuple[float, float]:
    return scale * (-128 - zp), scale * (127 - zp)


def share_residual_quantization(tflite: bytes) -> tuple[bytes, int]:
    """Give each chain of residual blocks one int8 scale and zero point: the union of its tensors' ranges.

    Returns the rewritten model and the number of chains changed. Producers and consumers of those
    tensors take the new parameters at Prepare time like any others; the cost is precision where a
    tensor's own range was narrower than the chain's."""
    model = parse_tflite(tflite)
    blocks = find_residual_blocks(model)
    parent: dict[int, int] = {}

    def root(t: int) -> int:
        while parent.get(t, t) != t:
            t = parent[t]
        return t

    for b in blocks:
        parent.setdefault(b.input, b.input)
        parent.setdefault(b.output, b.output)
        parent[root(b.output)] = root(b.input)
    chains: dict[int, list[int]] = {}
    for t in parent:
        chains.setdefault(root(t), []).append(t)
    m = _unpack(tflite)
    S = _schema()
    tensors = m.subgraphs[0].tensors
    prod, cons = _producers(model), _consumers(model)
    changed = 0
    for members in chains.values():
        qs = [(model.tensors[t].scales[0], model.tensors[t].zero_points[0]) for t in members]
        if len(set(qs)) == 1:
            continue
        lo = min(_range(s, z)[0] for s, z in qs)
        hi = max(_range(s, z)[1] for s, z in qs)
        scale = float(np.float32((hi - lo) / 255.0))
        zp = int(min(127, max(-128, -128 - math.floor(lo / scale + 0.5))))
        for t in _with_pass_through(model, set(members), prod, cons):
            old = model.tensors[t].scales[0]
            for k in cons.get(t, []):  # a bias is int32 in units of input scale x filter scale: rescale it
                op = model.operators[k]
                if op.opcode in _BIASED and op.inputs[0] == t and len(op.inputs) > 2 and op.inputs[2] >= 0:
                    _rescale_bias(m, S, op.inputs[2], model, old / scale)
            tq = tensors[t].quantization
            tq.scale = np.asarray([scale], dtype=np.float32)
            tq.zeroPoint = np.asarray([zp], dtype=np.int64)
        changed += 1
    return (_pack(m) if changed else bytes(tflite)), changed


# Ops that requantize their output from their inputs' parameters (so an input or output may take new
# ones); the biased ones also need their int32 bias rescaled when their input's scale changes. The
# pass-through ones need input and output quantized alike: their outputs take the new parameters too.
_BIASED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
_REQUANTIZING = _BIASED | {"ADD", "MUL", "QUANTIZE", "MEAN", "DEQUANTIZE"}
_PASS_THROUGH = {"PAD", "RESHAPE", "MAX_POOL_2D", "AVERAGE_POOL_2D"}


def _with_pass_through(model: TfliteModel, chain: set[int], prod: dict[int, int],
                       cons: dict[int, list[int]]) -> list[int]:
    """The chain's tensors and every tensor a pass-through op makes from them; UnsupportedModelError
    where one of them is made or used by an op that can take neither new parameters nor pass them on."""
    from tinysplit.errors import UnsupportedModelError

    out, todo = [], sorted(chain)
    seen = set(todo)
    while todo:
        t = todo.pop(0)
        out.append(t)
        for k in ([prod[t]] if t in prod else []) + cons.get(t, []):
            op = model.operators[k]
            if op.opcode in _REQUANTIZING:
                continue
            if op.opcode in _PASS_THROUGH and op.inputs[0] == t:  # a consumer: its output follows
                for o in op.outputs:
                    if o not in seen:
                        seen.add(o)
                        todo.append(o)
                continue
            if op.opcode in _PASS_THROUGH and t in op.outputs and op.inputs[0] in seen:
                continue  # the producer passes on a tensor that changes too
            raise UnsupportedModelError(
                f"cannot give residual tensor '{model.tensors[t].name}' its chain's quantization: operator {k} "
                f"({op.opcode}) needs its input and output quantized alike. Put a convolution between the last "
                "residual block and that layer, or export without skippable blocks")
    return out


def _rescale_bias(m, S, bias: int, model: TfliteModel, factor: float) -> None:
    """bias_new = round(bias * s_in_old / s_in_new), and its scales likewise (a buffer of its own)."""
    t = m.subgraphs[0].tensors[bias]
    old = np.asarray(model.tensors[bias].data, dtype=np.float64)
    new = np.clip(np.round(old * factor), -(1 << 31), (1 << 31) - 1).astype(np.int32)
    buf = S.BufferT()
    buf.data = np.frombuffer(new.tobytes(), dtype=np.uint8)
    m.buffers.append(buf)
    t.buffer = len(m.buffers) - 1
    if t.quantization is not None and t.quantization.scale is not None:
        t.quantization.scale = (np.asarray(t.quantization.scale, dtype=np.float64) / factor).astype(np.float32)
