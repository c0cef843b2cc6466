"""Per-operator profile of a device model on an emulated board: ``tinysplit profile``.

The model is generated with a profiling mark after every kernel call (``render_model(profile=True)``:
``ts_profile_mark(j)``, off by default and absent from normal firmware) and built with the
``profile`` app, which speaks TSHIL1 plus two commands: 'M' calibrates (four marks back to back
right after ``counter_start()``) and 'P' returns the instruction count at every mark of the last
run. Counts are exact under QEMU -icount (see ``tinysplit.firmware.hil``).

From the calibration: ``head`` (counter start to the first mark's read), ``mark`` (one mark: the
read of mark j to the read of mark j+1 when nothing runs between them) and ``tail`` (the last
mark's read to the final counter read). With the marks t_0..t_{N-1} of an inference and its
whole-invoke count W (the same inference, as TSHIL1's 'I' reports it):

    call j:          t_j - t_{j-1} - mark          (t_{-1} = head - mark)
    invoke return:   W - t_{N-1} - tail            (the generated invoke's own epilogue)
    overhead:        head + (N - 1) * mark + tail  (fixed per inference: the counter and the marks)

so the rows sum to W - overhead exactly (integers). The first call's row holds the invoke's
prologue; each row holds its kernel call's argument setup. The sum is also checked against the
normal firmware in the tests: it equals ``tinysplit hil``'s count less the counter's own cost.

Per call, from the generator's own data: the TFLite operator indices and opcodes (a streamed
block is one call covering several operators), MACs (conv, depthwise, fully connected, transpose
conv, batch matmul, streamed blocks), the arena bytes live during the call (memory plan) and the
flash bytes of its constant arrays and parameters (as the emitter sizes them).
"""

from __future__ import annotations

import math
import struct
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from tinysplit.errors import InputError
from tinysplit.firmware.hil import HilProtocolError, HilSession
from tinysplit.firmware.source import ModelSource

CAL_MARKS = 4  # marks the 'M' command runs (the app's PROFILE_CAL_MARKS)


# ----------------------------------------------------------------------------- static per-call data

@dataclass(frozen=True)
class CallInfo:
    """What the generator knows about one kernel call (lowered call index ``call``)."""

    call: int
    ops: tuple[int, ...]  # TFLite operator indices
    opcode: str  # "+"-joined for a streamed block
    kernel: str  # "" for an aliased RESHAPE (no code)
    macs: int  # 0 where the op has no multiply-accumulates
    arena_live_bytes: int  # bytes of the arena's buffers live during the call
    arena_top_bytes: int  # the highest arena byte in use during the call
    flash_bytes: int  # constant arrays and parameters of this call
    marked: bool  # emits code (and so a profiling mark)


def _conv_macs(p: Any, depthwise: bool) -> int:
    per_out = p.k_h * p.k_w * (1 if depthwise else p.in_c)
    return p.out_h * p.out_w * p.out_c * per_out


def call_macs(opcode: str, params: Any) -> int:
    """Multiply-accumulates of one lowered call, from its parameters (0: an op without them)."""
    kind = type(params).__name__
    if kind == "ConvParams":
        return _conv_macs(params, opcode.startswith("DEPTHWISE"))
    if kind == "IrbParams":
        return (_conv_macs(params.expand, False) + _conv_macs(params.dw, True)
                + _conv_macs(params.project, False))
    if kind == "FcParams":
        return params.batches * params.depth * params.units
    if kind == "TconvParams":
        return params.in_h * params.in_w * params.in_c * params.k_h * params.k_w * params.out_c
    if kind == "BatchMatMulParams":
        return math.prod(params.batch) * params.rows * params.cols * params.depth
    return 0


def call_infos(rendered: Any, model: Any) -> tuple[CallInfo, ...]:
    """Per lowered call of a RenderedModel (emit_c.render_model) and its parsed TfliteModel."""
    from tinysplit.exporter.codegen.emit_c import _ARRAY_ITEMSIZE, params_bytes

    lowered, plan = rendered.lowered, rendered.plan
    streamed = {b.op_indices[0]: b.op_indices for b in rendered.streamed}
    const_seen: set[int] = set()
    out = []
    for k, c in enumerate(lowered.calls):
        live = [p for p in plan.placements if p.first <= k <= p.last]
        flash = 0
        if not c.alias:
            flash += params_bytes(c.params)
            flash += sum(int(ca.values.size) * _ARRAY_ITEMSIZE[ca.ctype] for ca in c.consts if ca is not None)
            for i in c.inputs:
                if i in lowered.constants and i not in const_seen:
                    const_seen.add(i)
                    flash += int(model.tensors[i].data.nbytes)
        ops = streamed.get(c.op_index, (c.op_index,)) if c.kernel == "ts_irb_s8" else (c.op_index,)
        out.append(CallInfo(k, tuple(ops), c.opcode, "" if c.alias else c.kernel, call_macs(c.opcode, c.params),
                            sum(p.size for p in live), max((p.offset + p.size for p in live), default=0), flash,
                            not c.alias))
    return tuple(out)


# ----------------------------------------------------------------------------- counts -> report

@dataclass(frozen=True)
class Calibration:
    head: int  # counter_start() to the first mark's read
    mark: int  # one mark, read to read
    tail: int  # the last mark's read to the final counter read

    @classmethod
    def from_marks(cls, marks: Sequence[int], end: int, board: str = "") -> "Calibration":
        d = [b - a for a, b in zip(marks, marks[1:])]
        if len(marks) != CAL_MARKS or len(set(d)) != 1 or d[0] <= 0 or end < marks[-1]:
            raise HilProtocolError(f"{board}: the profiling calibration is not exact (marks {list(marks)}, end "
                                   f"{end}): back-to-back marks must differ by one constant")
        return cls(marks[0], d[0], end - marks[-1])

    def overhead(self, marks: int) -> int:
        return self.head + (marks - 1) * self.mark + self.tail


@dataclass(frozen=True)
class ProfileRow:
    call: int
    ops: list[int]
    opcode: str
    kernel: str
    instructions: int
    percent: float
    macs: int
    instructions_per_mac: float | None
    arena_live_bytes: int
    arena_top_bytes: int
    flash_bytes: int


@dataclass(frozen=True)
class ProfileReport:
    board: str
    model: str
    inputs: str
    rows: list[ProfileRow]
    return_instructions: int  # the generated invoke's epilogue after its last call
    total_instructions: int  # the rows plus return_instructions
    invoke_instructions: int  # the whole invoke, measured (with the marks)
    overhead_instructions: int  # invoke - total: head + (marks - 1) * mark + tail
    calibration: Calibration
    marks: int
    macs: int
    arena_bytes: int
    const_bytes: int
    runs: int  # inferences whose per-call counts were all identical
    identical_to_tflm: bool
    max_lsb_diff: int
    flash_bytes: int = 0  # the built ELF's
    ram_bytes: int = 0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def per_call_counts(marks: Sequence[int], invoke: int, cal: Calibration) -> tuple[list[int], int]:
    """(instructions per marked call, the invoke's return) from the cumulative mark counts."""
    if not marks:
        raise ValueError("no marks")
    prev = cal.head - cal.mark
    counts = []
    for t in marks:
        counts.append(t - prev - cal.mark)
        prev = t
    ret = invoke - marks[-1] - cal.tail
    if min(counts) < 0 or ret < 0:
        raise HilProtocolError(f"negative profile counts (marks {list(marks)[:8]}..., invoke {invoke}, "
                               f"calibration {cal}): the marks do not follow the calibration")
    return counts, ret


def build_report(infos: Sequence[CallInfo], marks: Sequence[int], invoke: int, cal: Calibration, *, board: str,
                 model: str, inputs: str, arena_bytes: int, const_bytes: int, runs: int = 1,
                 identical: bool = True, max_lsb_diff: int = 0) -> ProfileReport:
    """Pure: the report from the generator's per-call data and one inference's counts."""
    marked = [i for i in infos if i.marked]
    if len(marked) != len(marks):
        raise HilProtocolError(f"{board}: the firmware returned {len(marks)} marks for {len(marked)} kernel calls")
    counts, ret = per_call_counts(marks, invoke, cal)
    by_call = {i.call: n for i, n in zip(marked, counts)}
    total = sum(counts) + ret
    rows = []
    for i in infos:
        n = by_call.get(i.call, 0)
        rows.append(ProfileRow(i.call, list(i.ops), i.opcode, i.kernel or "(aliased, no code)", n,
                               round(100.0 * n / total, 2) if total else 0.0, i.macs,
                               round(n / i.macs, 2) if i.macs else None, i.arena_live_bytes, i.arena_top_bytes,
                               i.flash_bytes))
    return ProfileReport(board, model, inputs, rows, ret, total, invoke, invoke - total, cal, len(marks),
                         sum(i.macs for i in infos), arena_bytes, const_bytes, runs, identical, max_lsb_diff)


def _ops_text(ops: Sequence[int]) -> str:
    return str(ops[0]) if len(ops) == 1 else f"{ops[0]}-{ops[-1]}"


def format_report(r: ProfileReport) -> str:
    """The report as a table, in model order, with a total row."""
    head = (f"{'op':>7} {'opcode':34} {'kernel':20} {'instructions':>13} {'%':>6} {'MACs':>11} {'insn/MAC':>8} "
            f"{'arena live':>10} {'flash':>8}")
    lines = [f"{r.board}: '{r.model}', one inference ({r.inputs}); exact instruction counts, "
             f"{r.runs} run(s) identical", head, "-" * len(head)]
    for w in r.rows:
        ipm = "" if w.instructions_per_mac is None else f"{w.instructions_per_mac:.2f}"
        opcode = w.opcode if len(w.opcode) <= 34 else w.opcode[:31] + "..."
        lines.append(f"{_ops_text(w.ops):>7} {opcode:34} {w.kernel:20} {w.instructions:>13,} {w.percent:>6.2f} "
                     f"{w.macs:>11,} {ipm:>8} {w.arena_live_bytes:>10,} {w.flash_bytes:>8,}")
    ret_pct = 100.0 * r.return_instructions / r.total_instructions if r.total_instructions else 0.0
    lines.append(f"{'':>7} {'(invoke return)':34} {'':20} {r.return_instructions:>13,} {ret_pct:>6.2f}")
    lines.append("-" * len(head))
    ipm = f"{r.total_instructions / r.macs:.2f}" if r.macs else ""
    flash = sum(w.flash_bytes for w in r.rows)
    lines.append(f"{'total':>7} {'':34} {'':20} {r.total_instructions:>13,} {100:>6.2f} {r.macs:>11,} {ipm:>8} "
                 f"{r.arena_bytes:>10,} {flash:>8,}")
    c = r.calibration
    lines.append(f"whole invoke {r.invoke_instructions:,} instructions = total + profiling overhead "
                 f"{r.overhead_instructions:,} (counter start {c.head} + {r.marks - 1} marks x {c.mark} + "
                 f"counter read {c.tail})")
    lines.append(f"output {'identical to' if r.identical_to_tflm else 'DIFFERENT from'} TFLite Micro"
                 + ("" if r.identical_to_tflm else f" (max diff {r.max_lsb_diff} LSB)")
                 + f"; arena {r.arena_bytes:,} B (live: bytes of the buffers in use during the op), constants "
                   f"{r.const_bytes:,} B")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- device side

class ProfileSession(HilSession):
    """A HilSession on the profile app: also ``calibrate()`` ('M') and ``marks()`` ('P')."""

    def marks(self) -> list[int]:
        self._send(b"P")
        self._expect(b"P", "the profile marks")
        n, = struct.unpack("<I", self._read_exact(4, "mark count"))
        if n > 1_000_000:
            raise HilProtocolError(f"{self.board.name}: implausible mark count {n}")
        return list(struct.unpack(f"<{n}I", self._read_exact(4 * n, "marks")))

    def calibrate(self) -> Calibration:
        self._send(b"M")
        self._expect(b"M", "the calibration")
        end, = struct.unpack("<I", self._read_exact(4, "calibration count"))
        return Calibration.from_marks(self.marks(), end, self.board.name)


def check_profile_board(board_name: str) -> Any:
    """The board, or InputError unless it has an emulator (profiling counts instructions in QEMU)."""
    from tinysplit.boards import get_board, list_boards

    board = get_board(board_name)
    if board.emulator is None:
        names = ", ".join(b.name for b in list_boards(emulated_only=True))
        raise InputError(f"board '{board_name}' has no emulator: profiling counts instructions in QEMU; choose "
                         f"one of {names}")
    return board


def profile_model(source: ModelSource, board_name: str, workdir: Path | None = None,
                  progress: Callable[[str], None] | None = None, stream: bool = True, runs: int = 2,
                  kernels: str | None = None) -> ProfileReport:
    """Generate ``source``'s model with profiling marks, build it for ``board_name``, run its first input
    ``runs`` times (a fresh QEMU each time; the counts must be identical) and compare the output with
    TFLite Micro's. ``kernels``: the kernel set (None: the board's)."""
    from tinysplit.exporter.codegen.emit_c import render_model
    from tinysplit.exporter.tflite_model import parse_tflite
    from tinysplit.exporter.verify import compare_int8
    from tinysplit.firmware.build import build_project
    from tinysplit.firmware.generate import model_project
    from tinysplit.firmware.hilcheck import tflm_reference
    from tinysplit.firmware.render import c_identifier

    if runs < 1:
        raise InputError(f"runs must be at least 1, got {runs}")
    board = check_profile_board(board_name)
    say = progress or (lambda m: None)
    x = source.inputs[:1]
    with tempfile.TemporaryDirectory(prefix="tinysplit-profile-") as tmp:
        proj_dir = (workdir or Path(tmp)) / f"profile-{board_name}"
        say(f"generating C with profiling marks and a project for {board_name}")
        project, sources = model_project(board_name, source.tflite, source.name, proj_dir, "profile", stream=stream,
                                          kernels=kernels)
        rendered = render_model(source.tflite, c_identifier(source.name), stream=stream, profile=True)
        infos = call_infos(rendered, parse_tflite(source.tflite))
        say("building")
        build = build_project(project.dir)
        ref, _ = tflm_reference(source.tflite, x)
        seen: list[tuple] = []
        for run in range(runs):
            say(f"run {run + 1} of {runs} in QEMU ({board_name})")
            with ProfileSession(board, build.elf) as s:
                cal = s.calibrate()
                y, invoke = s.infer(x[0])
                marks = s.marks()
            seen.append((cal, invoke, tuple(marks), y.tobytes()))
        if any(v != seen[0] for v in seen[1:]):
            raise HilProtocolError(f"{board_name}: the profile differs between runs of the same input; the counts "
                                   "should be deterministic under QEMU -icount")
        cmp = compare_int8(ref, y.reshape(ref.shape))
    r = build_report(infos, marks, invoke, cal, board=board_name, model=source.name, inputs=source.inputs_from,
                     arena_bytes=sources.arena_bytes, const_bytes=sources.const_bytes, runs=runs,
                     identical=cmp.identical_fraction == 1.0, max_lsb_diff=cmp.max_lsb_diff)
    return replace(r, flash_bytes=build.flash_bytes, ram_bytes=build.ram_bytes)
