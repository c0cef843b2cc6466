"""The contract between the C code generator (exporter) and the firmware project generator.

``tinysplit.exporter.codegen.generate_model_sources`` turns an int8 .tflite into C files and
returns a ``ModelSources``; the firmware project generator copies those files into a project and
calls the model through this C API (``p`` is ``prefix``, ``P`` is ``prefix.upper()``):

    #include "<p>_model.h"
    #define P_ARENA_BYTES   ...   // the static arena the model uses (planned on the host)
    #define P_INPUT_BYTES   ...
    #define P_OUTPUT_BYTES  ...
    int8_t       *p_input(void);   // where to write one int8 NHWC input (inside the arena)
    const int8_t *p_output(void);  // where the int8 NHWC output is, after p_invoke()
    int           p_invoke(void);  // runs the model; 0 on success
    // only when generated with skippable blocks (skip_blocks > 0):
    #define P_SKIP_BLOCKS   ...   // B, the skippable residual blocks
    int           p_invoke_skip(uint32_t skip_mask);  // bit i skips block i; P_BAD_SKIP_MASK if a bit >= B is set
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TensorIO:
    shape: tuple[int, ...]  # NHWC, batch 1
    scale: float
    zero_point: int
    bytes: int


@dataclass(frozen=True)
class ModelSources:
    prefix: str  # a C identifier, e.g. "head"
    sources: tuple[Path, ...]  # .c files to compile: the generated model and the kernel runtime
    headers: tuple[Path, ...]  # .h files they need (copied beside the sources)
    header: str  # the model's public header file name, e.g. "head_model.h"
    arena_bytes: int  # static RAM for activations
    const_bytes: int  # weights and requantization parameters (flash)
    input: TensorIO
    output: TensorIO
    skip_blocks: int = 0  # skippable residual blocks (p_invoke_skip), 0 if not generated with them
