"""Helpers shared by the code generator tests and the benchmark: build a host harness around one or
more generated models, run it, and run the same inputs through TFLite Micro."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tinysplit.exporter.codegen import generate_model_sources
from tinysplit.modelsrc import ModelSources

HOST_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-O2")

_HARNESS = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
%(includes)s

typedef struct {
    int8_t *(*input)(void);
    const int8_t *(*output)(void);
    int (*invoke)(void);
    size_t in_bytes, out_bytes;
} entry_t;

static const entry_t entries[] = {
%(entries)s
};

/* usage: harness INDEX [REPS] < inputs > outputs; with REPS, prints ns per invoke to stderr */
int main(int argc, char **argv) {
    const entry_t *e;
    int8_t *buf;
    long reps = 1, r, n = 0;
    double ns = 0.0;
    if (argc < 2) {
        return 2;
    }
    e = &entries[atoi(argv[1])];
    if (argc > 2) {
        reps = atol(argv[2]);
    }
    buf = (int8_t *)malloc(e->in_bytes);
    while (fread(buf, 1, e->in_bytes, stdin) == e->in_bytes) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (r = 0; r < reps; ++r) {
            /* later layers reuse the input's memory: write the input before every invoke */
            memcpy(e->input(), buf, e->in_bytes);
            if (e->invoke() != 0) {
                return 3;
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ns += (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
        n += reps;
        fwrite(e->output(), 1, e->out_bytes, stdout);
    }
    if (argc > 2 && n > 0) {
        fprintf(stderr, "%%.1f\n", ns / (double)n);
    }
    free(buf);
    return 0;
}
"""


@dataclass(frozen=True)
class Harness:
    binary: Path
    models: tuple[ModelSources, ...]

    def run(self, index: int, inputs: np.ndarray, reps: int = 0) -> tuple[np.ndarray, float]:
        """Run model ``index`` on int8 ``inputs`` (N, ...); returns outputs (N, out_bytes) and ns/invoke."""
        m = self.models[index]
        x = np.ascontiguousarray(inputs, dtype=np.int8).reshape(len(inputs), -1)
        assert x.shape[1] == m.input.bytes, (x.shape, m.input.bytes)
        args = [str(self.binary), str(index)] + ([str(reps)] if reps else [])
        r = subprocess.run(args, input=x.tobytes(), capture_output=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"harness failed ({r.returncode}): {r.stderr.decode(errors='replace')}")
        out = np.frombuffer(r.stdout, dtype=np.int8).reshape(len(x), m.output.bytes)
        ns = float(r.stderr.decode().strip() or 0) if reps else 0.0
        return out, ns


def compile_c(sources: Sequence[Path], out: Path, include: Path, cc: str = "gcc",
              flags: Sequence[str] = HOST_CFLAGS) -> Path:
    cmd = [cc, *flags, "-I", str(include), *map(str, sources), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:8])} ... failed:\n{r.stderr[:4000]}")
    return out


def build_harness(tflites: Sequence[bytes], work: Path, prefixes: Sequence[str] | None = None,
                  stream: bool | None = None) -> Harness:
    """Generate C for each model into ``work`` and compile them with one harness (host gcc).
    ``stream``: streamed inverted-residual blocks on/off (None: the generator's default)."""
    work.mkdir(parents=True, exist_ok=True)
    prefixes = list(prefixes or [f"m{i}" for i in range(len(tflites))])
    opts = {} if stream is None else {"stream": stream}
    models = tuple(generate_model_sources(t, p, work, **opts) for t, p in zip(tflites, prefixes))
    includes = "\n".join(f'#include "{m.header}"' for m in models)
    entries = ",\n".join(f"    {{{p}_input, {p}_output, {p}_invoke, {p.upper()}_INPUT_BYTES, {p.upper()}_OUTPUT_BYTES}}"
                         for p in prefixes)
    h = work / "harness.c"
    h.write_text(_HARNESS % {"includes": includes, "entries": entries})
    sources = [h, work / "ts_kernels.c", *[m.sources[0] for m in models]]
    return Harness(compile_c(sources, work / "harness", work), models)


def tflm_outputs(tflite: bytes, inputs: np.ndarray) -> np.ndarray:
    """TFLite Micro (reference kernels) on each int8 input; returns (N, output bytes) int8."""
    from tinysplit.exporter.runtimes import TflmRunner

    rt = TflmRunner(tflite, num_outputs=1)
    from tinysplit.exporter.tflite_model import parse_tflite

    shape = parse_tflite(tflite).input_tensors()[0].shape
    outs = [rt.run(np.asarray(x, dtype=np.int8).reshape(shape))[0].reshape(-1) for x in inputs]
    return np.stack(outs)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
