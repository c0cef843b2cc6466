"""Test support for firmware tests: a fake model and a cache of built projects.

The fake C "model" honours the ModelSources contract, so firmware tests do not depend on the real
code generator:

    out[i] = in[i % IN] + 3 + i  (mod 256), then out[0] += sum(in) (mod 256)

It keeps input and output inside one static arena of ``arena_bytes`` (as generated models do).
``built(board_name, app)`` renders and builds a project once per test session.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from tinysplit.modelsrc import ModelSources, TensorIO


def write_fake_model(out_dir: Path, prefix: str = "fake", in_bytes: int = 64, out_bytes: int = 10,
                     arena_bytes: int = 1024, const_bytes: int = 0, declared_arena_bytes: int | None = None,
                     extra_c: str = "", hang: bool = False, fault: bool = False) -> ModelSources:
    """Write the fake model's C files; ``declared_arena_bytes`` lets the ModelSources lie about the
    arena (to reach the post-build fit check), ``extra_c`` appends code to the source."""
    P = prefix.upper()
    out_dir.mkdir(parents=True, exist_ok=True)
    header = out_dir / f"{prefix}_model.h"
    source = out_dir / f"{prefix}_model.c"
    header.write_text(f"""/* fake model for tests */
#ifndef {P}_MODEL_H
#define {P}_MODEL_H
#include <stdint.h>
#define {P}_ARENA_BYTES  {arena_bytes}
#define {P}_INPUT_BYTES  {in_bytes}
#define {P}_OUTPUT_BYTES {out_bytes}
int8_t *{prefix}_input(void);
const int8_t *{prefix}_output(void);
int {prefix}_invoke(void);
#endif
""")
    source.write_text(f"""/* fake model for tests */
#include "{prefix}_model.h"
_Static_assert({P}_INPUT_BYTES + {P}_OUTPUT_BYTES <= {P}_ARENA_BYTES, "arena too small");
static int8_t {prefix}_arena[{P}_ARENA_BYTES] __attribute__((aligned(16)));
#define CONST_BYTES {const_bytes}
#if CONST_BYTES > 0
static const uint8_t {prefix}_weights[CONST_BYTES] = {{1}};
#endif
int8_t *{prefix}_input(void) {{ return {prefix}_arena; }}
const int8_t *{prefix}_output(void) {{ return {prefix}_arena + {P}_INPUT_BYTES; }}
int {prefix}_invoke(void)
{{
    const uint8_t *in = (const uint8_t *){prefix}_arena;
    uint8_t *out = (uint8_t *)({prefix}_arena + {P}_INPUT_BYTES);
    uint32_t sum = 0;
    for (uint32_t i = 0; i < {P}_INPUT_BYTES; i++) {{
        sum += in[i];
    }}
#if CONST_BYTES > 0
    sum += {prefix}_weights[sum % CONST_BYTES];
#endif
    for (uint32_t i = 0; i < {P}_OUTPUT_BYTES; i++) {{
        out[i] = (uint8_t)(in[i % {P}_INPUT_BYTES] + 3u + i);
    }}
    out[0] = (uint8_t)(out[0] + sum);
    if ({int(fault)}) {{
        __builtin_trap(); /* fault=True: an undefined instruction (udf / ebreak) */
    }}
    while ({int(hang)}) {{
        __asm__ volatile("" ::: "memory"); /* hang=True: a model that never returns */
    }}
    return 0;
}}
""" + extra_c)
    return ModelSources(prefix=prefix, sources=(source,), headers=(header,), header=header.name,
                        arena_bytes=arena_bytes if declared_arena_bytes is None else declared_arena_bytes,
                        const_bytes=const_bytes,
                        input=TensorIO((1, in_bytes), 0.5, 0, in_bytes),
                        output=TensorIO((1, out_bytes), 0.25, -3, out_bytes))


def fake_expected(x: np.ndarray, out_bytes: int = 10) -> np.ndarray:
    """What the fake model computes for one int8 input (const_bytes == 0)."""
    u = x.astype(np.uint8).astype(np.int64)
    out = np.array([(u[i % len(u)] + 3 + i) % 256 for i in range(out_bytes)], dtype=np.int64)
    out[0] = (out[0] + int(u.sum())) % 256
    return out.astype(np.uint8).astype(np.int8)


IN_BYTES = 64
OUT_BYTES = 10
EXIT_CODE = 42  # the non-zero status the 'exit' app returns in tests

_ROOT = Path(tempfile.mkdtemp(prefix="tinysplit-fwtest-"))
atexit.register(shutil.rmtree, _ROOT, True)


@lru_cache(maxsize=None)
def fake_model() -> ModelSources:
    return write_fake_model(_ROOT / "model", in_bytes=IN_BYTES, out_bytes=OUT_BYTES)


@lru_cache(maxsize=None)
def built(board_name: str, app: str = "hil"):
    """Render and build (once per session) the fake-model project for a board and app."""
    from tinysplit.boards import get_board
    from tinysplit.firmware.build import build_project
    from tinysplit.firmware.project import render_project

    project = render_project(get_board(board_name), fake_model(), _ROOT / f"{board_name}-{app}", app=app,
                             exit_code=EXIT_CODE if app == "exit" else 0)
    return project, build_project(project.dir)
