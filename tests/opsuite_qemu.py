"""The per-op suite in QEMU: every case of ``opcases.all_cases()`` in one firmware per board.

Each case's generated model (prefix ``c<i>``) is compiled into one image together with a dispatch
"model" (prefix ``ops``) that the unchanged HIL app (TSHIL1) runs:

    ops input  = case index (uint16 LE) + the case's input, zero-padded to the largest case input
    ops_invoke = copy the input into the selected case's input, counter_start(), the case's invoke
    ops output = the selected case's output, read through a pointer (the first out bytes are it)

so the HIL instruction count covers the case's invoke and a fixed call overhead only (no copies):
index ``len(cases)`` selects an empty invoke, whose count (``baseline``) is that overhead. An index
past it makes ops_invoke return 2 (the HIL app answers 'E').

RAM: every case's arena is the one shared arena ``ops_arena`` (a case's arena is live only during
its invoke), sized for the largest case plus the largest output. The ``static int8_t <p>_arena[...]``
line of each generated model is replaced by a macro naming it (a missing line is an error, not a
silent second arena).

The HIL frame has the largest input and output of its image, and QEMU's UART moves roughly 20-40
bytes per millisecond, so the transfer, not the kernels, sets the suite's time: cases are grouped
into images by size class (in and out bytes up to SIZE_CLASSES[k], the rest), each packed into as
few images as the board's flash allows. Two classes move 44% of one image's bytes; a third would
save less transfer time than its build costs. The images build concurrently (their CMake
configure steps overlap).
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from tinysplit.boards import Board
from tinysplit.exporter.codegen import generate_model_sources
from tinysplit.firmware.build import BuildResult, build_project
from tinysplit.firmware.hil import HilSession
from tinysplit.firmware.project import CODE_ESTIMATE_BYTES, render_project
from tinysplit.modelsrc import ModelSources, TensorIO

PREFIX = "ops"
INDEX_BYTES = 2
BAD_INDEX_STATUS = 2
CASE_CODE_ESTIMATE = 4 * 1024  # a case's invoke and parameters (measured ~0.3-1 KiB); generous
KERNELS_ESTIMATE = 64 * 1024  # ts_kernels.c with everything linked in
SIZE_CLASSES = (128,)  # bytes of a case's input or output: one group per class, the rest in the last
ARENA_RE = r"^static int8_t {p}_arena\[{P}_ARENA_BYTES\] TS_ALIGN\((\d+)\);$"


@dataclass(frozen=True)
class SuiteImage:
    board: Board
    cases: tuple[int, ...]  # indices into the caller's case list, in dispatch order
    models: tuple[ModelSources, ...]  # one per case
    build: BuildResult
    build_seconds: float

    @property
    def elf(self) -> Path:
        return self.build.elf


@dataclass
class SuiteRun:
    """Outputs and instruction counts per case index of the whole suite."""

    outputs: dict[int, np.ndarray] = field(default_factory=dict)  # (N, out bytes) int8
    instructions: dict[int, list[int]] = field(default_factory=dict)  # per input
    baseline: dict[str, int] = field(default_factory=dict)  # per image ELF: the empty invoke's count
    seconds: float = 0.0


def share_arena(source: Path, prefix: str) -> int:
    """Replace the model's own arena by the shared ``ops_arena``; returns the arena's alignment."""
    text = source.read_text()
    pattern = re.compile(ARENA_RE.format(p=re.escape(prefix), P=re.escape(prefix.upper())), re.M)
    m = pattern.search(text)
    if m is None or len(pattern.findall(text)) != 1:
        raise RuntimeError(f"{source.name}: expected exactly one line 'static int8_t {prefix}_arena[...] "
                           "TS_ALIGN(n);' (did the model template change?)")
    source.write_text(text[:m.start()] + f"extern int8_t {PREFIX}_arena[];\n#define {prefix}_arena {PREFIX}_arena"
                      + text[m.end():])
    return int(m.group(1))


def _dispatch_sources(models: Sequence[ModelSources], work: Path, alignment: int) -> ModelSources:
    """Write ops_model.c/.h (the dispatch model) for ``models``; return the image's ModelSources."""
    n = len(models)
    max_in = max(m.input.bytes for m in models)
    max_out = max(m.output.bytes for m in models)
    shared = max(m.arena_bytes for m in models) + max_out
    shared = -(-shared // alignment) * alignment
    P = PREFIX.upper()
    header = work / f"{PREFIX}_model.h"
    header.write_text(f"""/* the per-op suite's dispatch model: {n} cases (test code) */
#ifndef {P}_MODEL_H
#define {P}_MODEL_H
#include <stdint.h>
#define {P}_CASES {n}
#define {P}_SHARED_ARENA_BYTES {shared}
#define {P}_INPUT_BYTES {INDEX_BYTES + max_in}
#define {P}_OUTPUT_BYTES {max_out}
int8_t *{PREFIX}_input(void);
const int8_t *{PREFIX}_output(void);
int {PREFIX}_invoke(void);
#endif
""")
    includes = "\n".join(f'#include "{m.header}"' for m in models)
    entries = "\n".join(f"    {{{m.prefix}_input, {m.prefix}_output, {m.prefix}_invoke, "
                        f"{m.prefix.upper()}_INPUT_BYTES}}," for m in models)
    checks = "\n".join(f'_Static_assert({m.prefix.upper()}_ARENA_BYTES + {P}_OUTPUT_BYTES <= {P}_SHARED_ARENA_BYTES, '
                       f'"{m.prefix} fits the shared arena");' for m in models)
    source = work / f"{PREFIX}_model.c"
    source.write_text(f"""/* the per-op suite's dispatch model (test code): see tests/opsuite_qemu.py */
#include "{PREFIX}_model.h"
#include "board.h" /* counter_start(): the count covers the case's invoke, not the copies */
{includes}

int8_t {PREFIX}_arena[{P}_SHARED_ARENA_BYTES] __attribute__((aligned({alignment})));
static int8_t {PREFIX}_in[{P}_INPUT_BYTES];
static const int8_t *{PREFIX}_out = {PREFIX}_arena;
{checks}

typedef struct {{
    int8_t *(*input)(void);
    const int8_t *(*output)(void);
    int (*invoke)(void);
    uint32_t in_bytes;
}} {PREFIX}_entry_t;

static int8_t *{PREFIX}_none_input(void) {{ return {PREFIX}_arena; }}
static const int8_t *{PREFIX}_none_output(void) {{ return {PREFIX}_arena; }}
static int {PREFIX}_none_invoke(void) {{ return 0; }}

static const {PREFIX}_entry_t {PREFIX}_entries[{P}_CASES + 1] = {{
{entries}
    {{{PREFIX}_none_input, {PREFIX}_none_output, {PREFIX}_none_invoke, 0u}}, /* the baseline */
}};

int8_t *{PREFIX}_input(void) {{ return {PREFIX}_in; }}
const int8_t *{PREFIX}_output(void) {{ return {PREFIX}_out; }}

int {PREFIX}_invoke(void)
{{
    uint32_t i = (uint32_t)(uint8_t){PREFIX}_in[0] | ((uint32_t)(uint8_t){PREFIX}_in[1] << 8);
    if (i > (uint32_t){P}_CASES) {{
        return {BAD_INDEX_STATUS};
    }}
    const {PREFIX}_entry_t *e = &{PREFIX}_entries[i];
    int8_t *dst = e->input();
    for (uint32_t k = 0; k < e->in_bytes; k++) {{
        dst[k] = {PREFIX}_in[{INDEX_BYTES} + k];
    }}
    {PREFIX}_out = e->output();
    counter_start();
    return e->invoke();
}}
""")
    kernels = [p for p in models[0].sources if Path(p).name == "ts_kernels.c"]
    kheaders = [p for p in models[0].headers if Path(p).name == "ts_kernels.h"]
    return ModelSources(
        prefix=PREFIX,
        sources=(source, *kernels, *(m.sources[0] for m in models)),
        headers=(header, *kheaders, *(h for m in models for h in m.headers if Path(h).name == m.header)),
        header=header.name,
        arena_bytes=shared + INDEX_BYTES + max_in,
        const_bytes=sum(m.const_bytes for m in models) + n * CASE_CODE_ESTIMATE + KERNELS_ESTIMATE,
        input=TensorIO((INDEX_BYTES + max_in,), 1.0, 0, INDEX_BYTES + max_in),
        output=TensorIO((max_out,), 1.0, 0, max_out))


def size_class(m: ModelSources) -> int:
    big = max(m.input.bytes, m.output.bytes)
    return next((k for k, limit in enumerate(SIZE_CLASSES) if big <= limit), len(SIZE_CLASSES))


def pack(models: Sequence[ModelSources], flash_budget: int) -> list[list[int]]:
    """Groups of model indices, one size class each (ascending), whose estimated flash fits
    ``flash_budget`` each; every index once, in ascending order inside a group."""
    groups: list[list[int]] = []
    for cls in range(len(SIZE_CLASSES) + 1):
        members = [i for i, m in enumerate(models) if size_class(m) == cls]
        used = flash_budget  # forces a new group for the first member
        for i in members:
            cost = models[i].const_bytes + CASE_CODE_ESTIMATE
            if used + cost > flash_budget:
                groups.append([])
                used = KERNELS_ESTIMATE + CODE_ESTIMATE_BYTES
            groups[-1].append(i)
            used += cost
    return groups


def build_suite(board: Board, tflites: Sequence[bytes], work: Path, kernels: str | None = None) -> list[SuiteImage]:
    """Generate every case and build as few images as fit ``board`` (usually one), with the kernel set
    ``kernels`` (None: the board core's default)."""
    work.mkdir(parents=True, exist_ok=True)
    src = work / "model"
    models = [generate_model_sources(t, f"c{i}", src) for i, t in enumerate(tflites)]
    alignment = max(share_arena(m.sources[0], m.prefix) for m in models)

    def one(k: int, group: list[int]) -> SuiteImage:
        t0 = time.perf_counter()
        gdir = work / f"dispatch{k}"
        gdir.mkdir(exist_ok=True)
        ms = [models[i] for i in group]
        dispatch = _dispatch_sources(ms, gdir, alignment)
        project = render_project(board, dispatch, work / f"image{k}", app="hil", kernels=kernels)
        result = build_project(project.dir)
        return SuiteImage(board, tuple(group), tuple(ms), result, time.perf_counter() - t0)

    groups = pack(models, board.flash.available)
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        return list(pool.map(one, range(len(groups)), groups))


def run_suite(images: Sequence[SuiteImage], inputs: dict[int, np.ndarray], timeout: float = 20.0) -> SuiteRun:
    """Run ``inputs[i]`` ((N, in bytes) int8) through case i on its image; one QEMU per image."""
    run = SuiteRun()
    t0 = time.perf_counter()
    for image in images:
        with HilSession(image.board, image.elf, timeout=timeout) as s:
            run.baseline[str(image.elf)] = s.infer(frame(s.input_bytes, len(image.cases), None))[1]
            for pos, (i, m) in enumerate(zip(image.cases, image.models)):
                if i not in inputs:
                    continue
                outs, counts = [], []
                for x in inputs[i]:
                    y, n = s.infer(frame(s.input_bytes, pos, np.asarray(x, dtype=np.int8).reshape(-1)))
                    outs.append(y[:m.output.bytes])
                    counts.append(n)
                run.outputs[i] = np.stack(outs)
                run.instructions[i] = counts
            status = s.close()
            if status != 0:
                raise RuntimeError(f"{image.elf}: the firmware exited with status {status}")
    run.seconds = time.perf_counter() - t0
    return run


def frame(input_bytes: int, index: int, x: np.ndarray | None) -> np.ndarray:
    """The dispatch model's input: index (uint16 LE), then x zero-padded to ``input_bytes``."""
    buf = np.zeros(input_bytes, dtype=np.int8)
    buf[:INDEX_BYTES] = np.frombuffer(int(index).to_bytes(INDEX_BYTES, "little"), dtype=np.int8)
    if x is not None:
        if INDEX_BYTES + x.size > input_bytes:
            raise ValueError(f"case input of {x.size} bytes does not fit the frame of {input_bytes}")
        buf[INDEX_BYTES:INDEX_BYTES + x.size] = x
    return buf


def case_profile(tflite: bytes) -> tuple[int, int]:
    """(kernel calls, multiply-accumulates) of a case: calls that run code (a RESHAPE alias runs
    none); MACs of the conv / depthwise / fully connected calls, from the lowered params."""
    from tinysplit.exporter.codegen import render_model
    from tinysplit.exporter.codegen.lower import ConvParams, FcParams

    macs = 0
    calls = render_model(tflite, "m").lowered.calls
    for c in calls:
        p = c.params
        if isinstance(p, ConvParams):
            per_out = p.k_h * p.k_w * (1 if c.opcode == "DEPTHWISE_CONV_2D" else p.in_c)
            macs += p.out_h * p.out_w * p.out_c * per_out
        elif isinstance(p, FcParams):
            macs += p.batches * p.depth * p.units
    return sum(not c.alias for c in calls), macs
