"""C emission: a lowered model and its memory plan -> ``<prefix>_model.c`` / ``<prefix>_model.h``.

A pure function builds one frozen context object per file pair (``build_context``); the Jinja
templates (firmware_templates/model/*.j2, StrictUndefined) only loop over it. The kernel runtime
(firmware_templates/runtime/ts_kernels.[ch]) is copied beside the generated files.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path

import numpy as np

from tinysplit.errors import InputError
from tinysplit.exporter.codegen.lower import LoweredModel, RequantParams, lower_model, quantize_multiplier
from tinysplit.exporter.codegen.memplan import DEFAULT_ALIGNMENT, MemoryPlan, check_plan, plan_model
from tinysplit.exporter.codegen.stream import stream_blocks
from tinysplit.exporter.tflite_model import TfliteModel, parse_tflite
from tinysplit.firmware.render import BANNER, check_identifier, render, templates_root
from tinysplit.modelsrc import ModelSources, TensorIO

log = logging.getLogger(__name__)

RUNTIME_FILES = ("ts_kernels.c", "ts_kernels.h")
_CTYPE = {"int8": "int8_t", "int32": "int32_t", "float32": "float"}
_VALUES_PER_LINE = 24


def runtime_dir() -> Path:
    return templates_root() / "runtime"


# ----------------------------------------------------------------------------- context types

@dataclass(frozen=True)
class ArrayDef:
    name: str
    ctype: str
    length: int
    body: str


@dataclass(frozen=True)
class ParamDef:
    name: str
    ctype: str
    init: str


@dataclass(frozen=True)
class TensorDef:
    index: int
    name: str
    dtype: str
    offset: int
    nbytes: int
    macro: str


@dataclass(frozen=True)
class CallDef:
    comment: str
    lines: tuple[str, ...]  # empty for an aliased RESHAPE


@dataclass(frozen=True)
class AssertDef:
    expr: str
    message: str


@dataclass(frozen=True)
class ModelContext:
    banner: str
    source: str
    prefix: str
    upper: str
    header: str
    guard: str
    alignment: int
    arena_bytes: int
    const_bytes: int
    input_offset: int
    input_bytes: int
    input_shape: str
    input_scale: str
    input_zero_point: int
    output_offset: int
    output_bytes: int
    output_shape: str
    output_scale: str
    output_zero_point: int
    arrays: tuple[ArrayDef, ...]
    params: tuple[ParamDef, ...]
    tensors: tuple[TensorDef, ...]
    calls: tuple[CallDef, ...]
    asserts: tuple[AssertDef, ...]
    skip_blocks: int  # 0: no skip mask (<prefix>_invoke only)
    skip_mask_valid: str  # the mask of valid bits, as C
    block_notes: tuple[str, ...]  # one line per skippable block, for the header
    profile_calls: int = 0  # 0: no profiling hook; N: ts_profile_mark(0..N-1) after each kernel call


@dataclass(frozen=True)
class RenderedModel:
    context: ModelContext
    model_c: str
    model_h: str
    lowered: LoweredModel
    plan: MemoryPlan
    streamed: tuple = ()  # stream.StreamedBlock per streamed call: the operators it fused


# ----------------------------------------------------------------------------- formatting

def c_int(v: int) -> str:
    v = int(v)
    if v == -(1 << 31):
        return "(-2147483647 - 1)"
    if not -(1 << 31) <= v < (1 << 31):
        raise InputError(f"value {v} does not fit a 32-bit integer; the model's parameters are out of range")
    return str(v)


def c_value(v: object) -> str:
    if is_dataclass(v) and not isinstance(v, type):  # a params struct inside a params struct
        return params_init(v)
    if isinstance(v, tuple):
        return "{" + ", ".join(c_value(x) for x in v) + "}"
    if isinstance(v, float):
        return repr(float(v)) if np.isfinite(v) else "0.0"
    return c_int(int(v))  # type: ignore[arg-type]


def format_values(values: np.ndarray) -> str:
    flat = [str(int(x)) for x in np.asarray(values).reshape(-1)]
    flat = ["(-2147483647 - 1)" if s == "-2147483648" else s for s in flat]
    lines = [", ".join(flat[i:i + _VALUES_PER_LINE]) for i in range(0, len(flat), _VALUES_PER_LINE)]
    return ",\n".join("    " + line for line in lines)


def params_init(params: object) -> str:
    return "{" + ", ".join(f".{f.name} = {c_value(getattr(params, f.name))}" for f in fields(params)) + "}"


def params_bytes(params: object) -> int:
    total = 0
    for f in fields(params):
        v = getattr(params, f.name)
        if is_dataclass(v) and not isinstance(v, type):
            total += params_bytes(v)
            continue
        total += 4 * len(v) if isinstance(v, tuple) else (8 if isinstance(v, float) else 4)
    return total


_ARRAY_ITEMSIZE = {"int8_t": 1, "int32_t": 4}


# ----------------------------------------------------------------------------- context builder

def _tensor_expr(prefix: str, lowered: LoweredModel, plan: MemoryPlan, model: TfliteModel, index: int,
                 const_names: dict[int, str], writable: bool) -> str:
    if index in const_names:
        return const_names[index]
    t = lowered.tensor(index)
    ctype = _CTYPE[t.dtype]
    qual = "" if writable else "const "
    base = f"{prefix}_arena + {plan.offsets[index]}"
    if ctype == "int8_t":
        return f"{base}" if writable else f"(const int8_t *)({base})"
    return f"({qual}{ctype} *)(void *)({base})"


def _gate_blocks(prefix: str, lowered: LoweredModel, plan: MemoryPlan, calls: list[CallDef],
                 params: list[ParamDef]) -> tuple[list[CallDef], int]:
    """Wrap each skippable block's calls in a test of its skip-mask bit; a skipped block runs nothing
    (x and y share their bytes and quantization), or one in-place requantization where they differ.
    Returns the calls and the flash bytes of the parameters it added."""
    if not lowered.blocks:
        return calls, 0
    out: list[CallDef] = []
    extra = 0
    k = 0
    for b in lowered.blocks:
        idx = [j for j, c in enumerate(lowered.calls) if b.first_op <= c.op_index <= b.add_op]
        lo, hi = idx[0], idx[-1]
        if idx != list(range(lo, hi + 1)) or lowered.calls[hi].op_index != b.add_op:
            raise AssertionError(f"block {b.index}: its kernel calls are not one run ending at its ADD")
        out.extend(calls[k:lo])
        out.append(CallDef(f"block {b.index}: operators {b.first_op}..{b.add_op}, skipped when bit {b.index} "
                           "of skip_mask is set", (f"if ((skip_mask & 0x{1 << b.index:x}u) == 0u) {{",)))
        for c in calls[lo:hi + 1]:
            out.append(CallDef(c.comment, tuple("    " + line for line in c.lines)))
        if b.shared_quantization:
            out.append(CallDef(f"end of block {b.index}: skipped, y is x (one offset, one quantization)", ("}",)))
        else:
            x, y = lowered.tensor(b.input), lowered.tensor(b.output)
            mult, shift = quantize_multiplier(float(x.scale) / float(y.scale))
            pname = f"{prefix}_skip{b.index}"
            rp = RequantParams(x.nbytes, x.zero_point, y.zero_point, mult, shift)
            params.append(ParamDef(pname, RequantParams.c_type, params_init(rp)))
            extra += params_bytes(rp)
            base = f"{prefix}_arena + {plan.offsets[y.index]}"
            out.append(CallDef(f"end of block {b.index}: skipped, y is x requantized in place",
                               ("} else {", f"    ts_requantize_s8(&{pname}, (const int8_t *)({base}), {base});", "}")))
        k = hi + 1
    out.extend(calls[k:])
    return out, extra


def profiled_calls(lowered: LoweredModel) -> tuple[int, ...]:
    """The lowered call indices that get a profiling mark, in order: mark j follows call
    ``profiled_calls(lowered)[j]`` (every call that emits code; an aliased RESHAPE emits none)."""
    return tuple(k for k, c in enumerate(lowered.calls) if not c.alias)


def build_context(model: TfliteModel, lowered: LoweredModel, plan: MemoryPlan, prefix: str,
                  source: str, profile: bool = False) -> ModelContext:
    """Pure: everything the templates print, computed here. ``profile``: a call to
    ``ts_profile_mark(j)`` (the app defines it) after the j-th kernel call that emits code."""
    if profile and lowered.blocks:
        raise InputError("a profiled model cannot have skippable blocks: profile the model without a skip mask")
    upper = prefix.upper()
    arrays: list[ArrayDef] = []
    const_names: dict[int, str] = {}
    for ci in lowered.constants:
        t = model.tensors[ci]
        if t.dtype not in ("int8", "int32"):
            raise InputError(f"constant tensor '{t.name}' is {t.dtype}; only int8/int32 constants can be kernel inputs")
        ctype = "int8_t" if t.dtype == "int8" else "int32_t"
        name = f"{prefix}_c{ci}"
        arrays.append(ArrayDef(name, ctype, int(t.data.size), format_values(t.data)))
        const_names[ci] = name
    params: list[ParamDef] = []
    calls: list[CallDef] = []
    asserts: list[AssertDef] = []
    const_bytes = sum(a.length * _ARRAY_ITEMSIZE[a.ctype] for a in arrays)
    for k, c in enumerate(lowered.calls):
        tensor_names = ", ".join(model.tensors[i].name for i in c.inputs)
        comment = f"#{k} {c.opcode} (operator {c.op_index}): {tensor_names} -> {model.tensors[c.output].name}"
        if c.alias:
            asserts.append(AssertDef(f"{plan.offsets[c.inputs[0]]} == {plan.offsets[c.output]}",
                                     f"call {k}: RESHAPE output aliases its input"))
            calls.append(CallDef(comment.replace("*/", "* /") + " [aliased, no code]", ()))
            continue
        pname = f"{prefix}_p{k}"
        params.append(ParamDef(pname, type(c.params).c_type, params_init(c.params)))
        const_bytes += params_bytes(c.params)
        args = [f"&{pname}"]
        for j, ca in enumerate(c.consts):
            if ca is None:
                args.append("(const int32_t *)0")
                continue
            name = f"{prefix}_k{k}_{ca.role}"
            arrays.append(ArrayDef(name, ca.ctype, int(ca.values.size), format_values(ca.values)))
            const_bytes += int(ca.values.size) * _ARRAY_ITEMSIZE[ca.ctype]
            args.append(name)
        for i in c.inputs:
            args.append(_tensor_expr(prefix, lowered, plan, model, i, const_names, writable=False))
        args.append(_tensor_expr(prefix, lowered, plan, model, c.output, const_names, writable=True))
        for sc in c.scratch:
            args.append(f"{prefix}_arena + {plan.offsets[sc]}")
        lines = (f"{c.kernel}({', '.join(args)});",)
        if profile:
            lines += (f"ts_profile_mark({sum(1 for d in lowered.calls[:k] if not d.alias)}u);",)
        calls.append(CallDef(comment.replace("*/", "* /"), lines))
    calls, skip_bytes = _gate_blocks(prefix, lowered, plan, calls, params)
    const_bytes += skip_bytes
    tensors = []
    for t in lowered.tensors:
        macro = f"{upper}_T{t.index}_OFFSET"
        tensors.append(TensorDef(t.index, t.name.replace("*/", "* /"), t.dtype, plan.offsets[t.index], t.nbytes, macro))
        asserts.append(AssertDef(f"{macro} % {plan.alignment} == 0 && {macro} + {t.nbytes} <= {upper}_ARENA_BYTES",
                                 f"tensor {t.index} lies aligned inside the arena"))
    for a in arrays:
        asserts.append(AssertDef(f"sizeof({a.name}) == {a.length} * sizeof({a.ctype})",
                                 f"{a.name} has {a.length} elements"))
    inp, out = lowered.tensor(lowered.input), lowered.tensor(lowered.output)
    asserts.append(AssertDef(f"{upper}_INPUT_BYTES == {inp.nbytes} && {upper}_OUTPUT_BYTES == {out.nbytes}",
                             "input/output sizes match the model"))
    asserts.append(AssertDef(f"{upper}_ARENA_BYTES == {plan.arena_bytes} && {upper}_ARENA_BYTES % {plan.alignment} == 0",
                             "arena size is the planned one"))
    nb = len(lowered.blocks)
    block_notes = tuple(
        f"block {b.index} (bit {b.index}, 0x{1 << b.index:x}): operators {b.first_op}..{b.add_op}, "
        f"{model.tensors[b.input].name} -> {model.tensors[b.output].name}"
        + ("" if b.shared_quantization else "; a skip requantizes x in place")
        for b in lowered.blocks)
    return ModelContext(
        skip_blocks=nb, skip_mask_valid=f"0x{(1 << nb) - 1:x}u", block_notes=tuple(n.replace("*/", "* /") for n in block_notes),
        banner=BANNER,
        source=source, prefix=prefix, upper=upper, header=f"{prefix}_model.h",
        guard=f"{upper}_MODEL_H", alignment=plan.alignment, arena_bytes=plan.arena_bytes, const_bytes=const_bytes,
        input_offset=plan.offsets[inp.index], input_bytes=inp.nbytes,
        input_shape=", ".join(str(d) for d in inp.shape), input_scale=repr(inp.scale), input_zero_point=inp.zero_point,
        output_offset=plan.offsets[out.index], output_bytes=out.nbytes,
        output_shape=", ".join(str(d) for d in out.shape), output_scale=repr(out.scale),
        output_zero_point=out.zero_point,
        arrays=tuple(arrays), params=tuple(params), tensors=tuple(tensors), calls=tuple(calls), asserts=tuple(asserts),
        profile_calls=len(profiled_calls(lowered)) if profile else 0)


STREAM_BLOCKS_DEFAULT = True  # streamed inverted-residual blocks (stream.py) unless asked otherwise


def render_model(tflite: bytes, prefix: str, alignment: int = DEFAULT_ALIGNMENT, skippable: bool = False,
                 stream: bool = STREAM_BLOCKS_DEFAULT, profile: bool = False) -> RenderedModel:
    """Lower, plan and render; no files written. ``skippable``: also ``<prefix>_invoke_skip(mask)``.
    ``stream``: inverted-residual blocks run row by row in one call each (stream.py); False: layer
    at a time (every intermediate tensor whole in the arena). ``profile``: a profiling mark after
    every kernel call (``ts_profile_mark``, defined by the profile app); off, the output is the
    same byte for byte as without the option."""
    check_identifier(prefix)
    model = parse_tflite(tflite)
    lowered = lower_model(model, skippable=skippable)
    streamed: tuple = ()
    if stream:
        lowered, streamed = stream_blocks(lowered)
    plan = plan_model(lowered, alignment)
    check_plan(lowered, plan)
    digest = hashlib.sha256(tflite).hexdigest()[:16]
    source = f"int8 .tflite, {len(tflite)} bytes, sha256 {digest}..., ops: {', '.join(model.ops)}"
    ctx = build_context(model, lowered, plan, prefix, source, profile=profile)
    return RenderedModel(ctx, render("model/model.c.j2", m=ctx), render("model/model.h.j2", m=ctx), lowered, plan,
                         tuple(streamed))


def generate_model_sources(tflite: bytes | Path, prefix: str, out_dir: Path, skippable: bool = False,
                           stream: bool = STREAM_BLOCKS_DEFAULT, profile: bool = False) -> ModelSources:
    """Write ``<prefix>_model.c/.h`` and the kernel runtime into ``out_dir``; return what was written.

    ``stream``: streamed inverted-residual blocks (see stream.py); False: layer at a time.
    ``profile``: with the profiling marks (see ``render_model``).

    ``skippable``: the model's identity-shortcut residual blocks become skippable at run time
    (``<prefix>_invoke_skip(uint32_t skip_mask)``, bit i skips block i; see blocks.py)."""
    if isinstance(tflite, (str, Path)):
        p = Path(tflite)
        if not p.is_file():
            raise InputError(f"'{p}' does not exist; pass the path of an int8 .tflite file (or its bytes)")
        tflite = p.read_bytes()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    r = render_model(bytes(tflite), prefix, skippable=skippable, stream=stream, profile=profile)
    c_path, h_path = out_dir / f"{prefix}_model.c", out_dir / f"{prefix}_model.h"
    c_path.write_text(r.model_c)
    h_path.write_text(r.model_h)
    rt = runtime_dir()
    for name in RUNTIME_FILES:
        shutil.copyfile(rt / name, out_dir / name)
    inp, out = r.lowered.tensor(r.lowered.input), r.lowered.tensor(r.lowered.output)
    log.info("generated %s: arena %d B, constants %d B, %d kernel calls", c_path.name, r.plan.arena_bytes,
             r.context.const_bytes, sum(len(c.lines) for c in r.context.calls))
    return ModelSources(
        prefix=prefix, sources=(c_path, out_dir / "ts_kernels.c"), headers=(h_path, out_dir / "ts_kernels.h"),
        header=h_path.name, arena_bytes=r.plan.arena_bytes, const_bytes=r.context.const_bytes,
        input=TensorIO(inp.shape, inp.scale, inp.zero_point, inp.nbytes),
        output=TensorIO(out.shape, out.scale, out.zero_point, out.nbytes), skip_blocks=len(r.lowered.blocks))
