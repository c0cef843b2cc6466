"""Streamed inverted-residual blocks: expand -> depthwise -> project [-> ADD] as one row-by-row call.

Layer at a time, an inverted residual block holds its whole expanded tensor (H x W x C_hidden int8)
in the arena: the largest tensor of a MobileNetV2-style model. Streamed, the block computes its
output one row at a time and keeps only the expanded rows the depthwise kernel still needs: a
window of ``(k_h - 1) * dil_h + 1`` expanded rows plus one depthwise output row (the published
MCUNetV2 / TinyEngine patch-based idea; this is our own row-based version).

``stream_blocks`` rewrites a lowered model: each matched chain of kernel calls becomes ONE call of
``ts_irb_s8`` (ts_kernels.c), whose scratch (the row window) is a tensor of its own that the memory
planner places like any other (alive during that call only). The fused kernel calls the very
kernels the separate calls use (ts_conv2d_s8 on rows, ts_dwconv2d_s8 on the window, ts_add_s8 on a
row), with the same parameters and constant arrays, so every output byte is computed by the same
integer code: bit-identical to layer-at-a-time, and nothing is computed twice. Its only extra work
is moving the kept rows of the window to its start (``k_h - stride`` rows per output row).

A chain (all int8, consecutive calls, each intermediate read by the next call only):
    CONV_2D 1x1 stride 1 no padding (the expand; any fused activation)
    [PAD of H and W only, by the zero point: folded into the depthwise padding, an exact rewrite
     since TFLite's kernels skip padded taps, which add w * (zp - zp) = 0]
    DEPTHWISE_CONV_2D (any kernel size, stride, dilation and padding)
    CONV_2D 1x1 stride 1 no padding (the project)
    [ADD of the project output and the expand's input, same shapes (the residual), unless that ADD
     closes a skippable block (blocks.py): a skip mask needs it as a call of its own]
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import ClassVar, Sequence

from tinysplit.exporter.codegen.lower import (BinaryParams, ConstArray, ConvParams, KernelCall, LoweredModel,
                                              PadParams, TensorInfo)

log = logging.getLogger(__name__)

SCRATCH_BASE = 1 << 20  # tensor indices of scratch tensors: SCRATCH_BASE + call number (no .tflite has as many)
_NO_ADD = BinaryParams(0, 0, (0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class IrbParams:
    """Parameters of one streamed block: the three convolutions' (as lowered, the depthwise one with
    a folded PAD) and the residual ADD's (``has_add`` 0: none, all zeros)."""

    c_type: ClassVar[str] = "ts_irb_params_t"
    expand: ConvParams
    dw: ConvParams
    project: ConvParams
    add: BinaryParams
    has_add: int
    add_x_first: int  # 1: the ADD's first input is the block input x, 0: the project output
    window_rows: int  # expanded rows kept: (k_h - 1) * dil_h + 1, at most the input height

    def row_shift(self) -> int:
        """The smallest D such that the output may start D bytes before the block input (as
        lower.row_shift for a convolution). ts_irb_s8 writes output row r after expanding the input
        rows below need_hi(r) (the end of row r's window), and its ADD reads input row r while
        writing output row r; so before row r is written, the input from row u(r) = need_hi(r) (or
        r with an ADD, if smaller) on is still unread: (r + 1) * row_out - D <= u(r) * row_in."""
        d, e = self.dw, self.expand
        row_in, row_out = e.in_w * e.in_c, self.project.out_w * self.project.out_c
        span = (d.k_h - 1) * d.dil_h + 1
        worst = -(1 << 62)
        for r in range(d.out_h):
            u = max(min(r * d.stride_h - d.pad_h + span, d.in_h), 0)
            if self.has_add:
                u = min(u, r)
            worst = max(worst, (r + 1) * row_out - u * row_in)
        return worst


@dataclass(frozen=True)
class StreamedBlock:
    """Where a streamed call came from (for reports and tests)."""

    op_indices: tuple[int, ...]  # the operators fused, in order
    input: int
    output: int
    scratch_bytes: int
    saved_bytes: int  # the intermediate tensors no longer in the arena (their sizes summed)


def _named(stage: str, consts: Sequence[ConstArray | None]) -> tuple[ConstArray | None, ...]:
    """The stage's arrays with the stage in their role (one call, so the C names must differ)."""
    return tuple(None if c is None else dataclasses.replace(c, role=f"{stage}_{c.role}") for c in consts)


def _is_pointwise(c: KernelCall) -> bool:
    p = c.params
    return (c.kernel == "ts_conv2d_s8" and isinstance(p, ConvParams) and p.k_h == 1 and p.k_w == 1 and
            p.stride_h == 1 and p.stride_w == 1 and p.pad_h == 0 and p.pad_w == 0)


def _fold_pad(pad: PadParams, dw: ConvParams, zero_point: int) -> ConvParams | None:
    """The depthwise parameters reading the PAD's input directly, or None when the PAD is not a pure
    H/W zero-point padding of a (1, H, W, C) tensor."""
    b, i, o = pad.before, pad.in_dims, pad.out_dims
    if pad.value != zero_point or i[0] != 1 or o[0] != 1 or b[0] != 0 or b[3] != 0 or i[3] != o[3]:
        return None
    if (o[1], o[2]) != (dw.in_h, dw.in_w) or i[3] != dw.in_c:
        return None
    return dataclasses.replace(dw, in_h=i[1], in_w=i[2], pad_h=dw.pad_h + b[1], pad_w=dw.pad_w + b[2])


def stream_blocks(model: LoweredModel) -> tuple[LoweredModel, tuple[StreamedBlock, ...]]:
    """Fuse every inverted-residual chain (module docstring) into one streamed call; returns the new
    model and what was fused. A model without any chain comes back unchanged."""
    calls = list(model.calls)
    info = {t.index: t for t in model.tensors}
    readers: dict[int, int] = {}
    for c in calls:
        for i in c.inputs:
            readers[i] = readers.get(i, 0) + 1
    readers[model.output] = readers.get(model.output, 0) + 1  # the caller reads the model output
    block_adds = {b.add_op for b in model.blocks}

    def only_feeds(c: KernelCall, nxt: KernelCall) -> bool:
        t = c.output
        return (t != model.output and readers.get(t, 0) == 1 and nxt.inputs and nxt.inputs[0] == t and
                not nxt.alias and info.get(t) is not None and info[t].dtype == "int8")

    out: list[KernelCall] = []
    fused: list[StreamedBlock] = []
    scratch_infos: list[TensorInfo] = []
    removed: set[int] = set()
    k = 0
    while k < len(calls):
        m = _match(calls, k, info, only_feeds, block_adds)
        if m is None:
            out.append(calls[k])
            k += 1
            continue
        n, call, block, middle = m
        sidx = SCRATCH_BASE + len(out)
        call = dataclasses.replace(call, scratch=(sidx,))
        scratch_infos.append(TensorInfo(sidx, f"streamed block scratch (operators {block.op_indices[0]}.."
                                              f"{block.op_indices[-1]})", (block.scratch_bytes,), "int8",
                                        block.scratch_bytes, 0.0, 0))
        removed.update(middle)
        out.append(call)
        fused.append(block)
        k += n
    if not fused:
        return model, ()
    tensors = tuple(t for t in model.tensors if t.index not in removed) + tuple(scratch_infos)
    log.debug("streamed %d inverted-residual blocks", len(fused))
    return dataclasses.replace(model, calls=tuple(out), tensors=tensors), tuple(fused)


def _match(calls: Sequence[KernelCall], k: int, info: dict[int, TensorInfo], only_feeds,
           block_adds: set[int]) -> tuple[int, KernelCall, StreamedBlock, list[int]] | None:
    """The chain starting at call k: (calls consumed, the fused call, its record, the intermediate
    tensors), or None."""
    e = calls[k]
    if not _is_pointwise(e) or k + 2 >= len(calls) or len(e.consts) != 5:
        return None
    j = k + 1
    nxt = calls[j]
    pad: KernelCall | None = None
    if nxt.kernel == "ts_pad_s8":
        if not only_feeds(e, nxt) or j + 1 >= len(calls):
            return None
        pad, j = nxt, j + 1
    d = calls[j]
    if d.kernel != "ts_dwconv2d_s8" or not isinstance(d.params, ConvParams) or len(d.consts) != 4:
        return None
    if pad is not None:
        if not only_feeds(pad, d):
            return None
        dwp = _fold_pad(pad.params, d.params, info[pad.output].zero_point)
        if dwp is None:
            return None
    else:
        if not only_feeds(e, d):
            return None
        dwp = d.params
    if j + 1 >= len(calls):
        return None
    pr = calls[j + 1]
    if not _is_pointwise(pr) or not only_feeds(d, pr) or len(pr.consts) != 5:
        return None
    ep, pp = e.params, pr.params
    if (ep.out_h, ep.out_w, ep.out_c) != (dwp.in_h, dwp.in_w, dwp.in_c) or \
            (dwp.out_h, dwp.out_w, dwp.out_c) != (pp.in_h, pp.in_w, pp.in_c):
        return None
    x, y = e.inputs[0], pr.output
    used = [e, pad, d, pr] if pad is not None else [e, d, pr]
    middle = [c.output for c in used[:-1]]
    add, add_x_first = _NO_ADD, 0
    nconsumed = len(used)
    a = calls[j + 2] if j + 2 < len(calls) else None
    if (a is not None and a.kernel == "ts_add_s8" and isinstance(a.params, BinaryParams) and a.params.flat == 1
            and len(a.consts) == 2 and a.op_index not in block_adds and set(a.inputs) == {x, y} and x != y
            and only_feeds(pr, dataclasses.replace(a, inputs=(y,))) and info[x].nbytes == info[a.output].nbytes):
        add, add_x_first = a.params, int(a.inputs[0] == x)
        middle.append(y)
        y = a.output
        used.append(a)
        nconsumed += 1
    if info[x].dtype != "int8" or info[y].dtype != "int8":
        return None
    window = min((dwp.k_h - 1) * dwp.dil_h + 1, dwp.in_h)
    scratch = window * dwp.in_w * dwp.in_c + dwp.out_w * dwp.out_c
    params = IrbParams(ep, dwp, pp, add, int(add is not _NO_ADD), add_x_first, window)
    add_luts = _named("add", used[-1].consts) if add is not _NO_ADD else (None, None)  # ADD's two tables
    consts = _named("expand", e.consts) + _named("dw", d.consts) + _named("project", pr.consts) + add_luts
    call = KernelCall(e.op_index, "+".join(c.opcode for c in used), "ts_irb_s8", params, consts, (x,), y,
                      reuse="rows")
    saved = sum(info[t].nbytes for t in middle)
    block = StreamedBlock(tuple(c.op_index for c in used), x, y, scratch, saved)
    return nconsumed, call, block, middle
