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

from tinysplit.errors import VerificationError


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


class TflmRunner:
    """The TFLite Micro interpreter (reference kernels, x86 build of the real runtime)."""

    def __init__(self, model_bytes: bytes, num_outputs: int, arena_size: int = 1 << 20) -> None:
        from tflite_micro.python.tflite_micro import runtime

        self._it = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
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

