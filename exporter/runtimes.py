"""The two reference runtimes an int8 model is checked against.

- LiteRT with TFLite's reference kernels (BUILTIN_REF): "the TFLite reference".
- The TFLite Micro runtime from the tflite-micro package: the runtime device code replaces.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from tinysplit.errors import UnsupportedModelError, VerificationError

TFLM_ARENA_BYTES = 1 << 20  # the arena the TFLite Micro reference runs with: more than a microcontroller has


@contextmanager
def capture_c_stderr() -> Iterator[list[str]]:
    """Capture what C/C++ code writes to file descriptor 2 (Python's sys.stderr is not enough)."""
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as f:
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            lines.extend(f.read().decode(errors="replace").splitlines())


class ReferenceRunner:
    """LiteRT interpreter with TFLite's reference kernels; int8 in, int8 out, one sample at a time."""

    def __init__(self, model_bytes: bytes) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self._it = Interpreter(model_content=model_bytes,
                               experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        self._it.allocate_tensors()
        self._in = self._it.get_input_details()
        self._out = self._it.get_output_details()

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        for d, x in zip(self._in, inputs):
            self._it.set_tensor(d["index"], x)
        self._it.invoke()
        return [self._it.get_tensor(d["index"]).copy() for d in self._out]


def _allocation_error(e: RuntimeError, lines: list[str], arena_size: int) -> Exception:
    """What TFLite Micro's failure to load a model means for the user."""
    said = " ".join(line.strip() for line in lines if line.strip())
    missing = re.search(r"Didn't find op for builtin opcode '(\w+)'", said)
    if missing:
        return UnsupportedModelError(
            f"TFLite Micro has no kernel for {missing.group(1)}: the model cannot run on a microcontroller with it. "
            "Replace the layer it comes from (`tinysplit ops` lists the ops that run) or move it to the host tail")
    if "allocate" not in str(e).lower() and "resize buffer" not in said.lower():
        return UnsupportedModelError(f"TFLite Micro cannot load this model: {e}" + (f" ({said})" if said else ""))
    m = re.search(r"Requested: (\d+), available (\d+)", said)
    need = f" (it asked for {int(m.group(1)):,} bytes with {int(m.group(2)):,} left)" if m else ""
    return UnsupportedModelError(
        f"TFLite Micro could not allocate the model's tensors in a {arena_size:,}-byte arena{need}: the device "
        "model's activations are too large for a microcontroller. Make the device piece smaller: a smaller input "
        "(downsample it), fewer channels, or an earlier stride or pooling before the wide layers")


class TflmRunner:
    """The TFLite Micro interpreter (reference kernels, x86 build of the real runtime)."""

    def __init__(self, model_bytes: bytes, num_outputs: int, arena_size: int = TFLM_ARENA_BYTES) -> None:
        from tflite_micro.python.tflite_micro import runtime

        with capture_c_stderr() as lines:
            try:
                self._it = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
                failed = None
            except RuntimeError as e:
                failed = e
        if failed is not None:
            raise _allocation_error(failed, lines, arena_size) from None
        self.num_outputs = num_outputs

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        for i, x in enumerate(inputs):
            self._it.set_input(x, i)
        self._it.invoke()
        return [self._it.get_output(i).copy() for i in range(self.num_outputs)]

    def arena_bytes(self) -> int:
        """The arena TFLite Micro really allocated for this model (from its recording allocator)."""
        with capture_c_stderr() as lines:
            self._it.print_allocations()
        for line in lines:
            m = re.search(r"Arena allocation total (\d+) bytes", line)
            if m:
                return int(m.group(1))
        raise VerificationError("could not read the TFLite Micro arena size from print_allocations(); "
                                f"got: {' | '.join(lines[:3])!r}")

