"""Kernel sets: which inner loops the kernel runtime (ts_kernels.c) compiles for a board's core.

One registry, name -> KernelSet. ``portable`` is plain C99 for every core; ``dsp`` uses the Armv7E-M /
Armv8-M DSP extension (SMLAD, SXTB16, ... through ACLE); ``mve`` uses Helium (M-profile vector
extension) on the Cortex-M55. Every set is bit-exact with TFLite Micro (the per-op suite and the
whole models run on each). The board's core chooses the default (``kernel_set_for``); a user may force
a lower one (``--kernels portable`` on a DSP core, to compare). The choice reaches the C code as
``-DTS_KERNELS=<id>`` on the kernel runtime's compile line, with the set's optimization flags; without
that define ts_kernels.c derives the same choice from the compiler's target macros
(``__ARM_FEATURE_MVE``, ``__ARM_FEATURE_DSP``), so a hand-made build gets it too (a test checks the
two agree for every board).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tinysplit.errors import InputError

if TYPE_CHECKING:  # annotations only: the CLI reads KERNEL_SETS without loading the boards
    from tinysplit.boards import Board


@dataclass(frozen=True)
class KernelSet:
    name: str
    ident: int  # TS_KERNELS in ts_kernels.c
    cores: frozenset[str] | None  # board core.cpu values that can run it; None: every core
    flags: tuple[str, ...]  # compile flags of the kernel runtime with this set (after the firmware's)
    description: str


DSP_CORES = frozenset({"cortex-m4", "cortex-m7", "cortex-m33", "cortex-m35p", "cortex-m55", "cortex-m85"})
MVE_CORES = frozenset({"cortex-m55", "cortex-m85"})

KERNEL_SETS: dict[str, KernelSet] = {
    "portable": KernelSet("portable", 0, None, ("-O2",), "plain C99, every core"),
    # without instruction scheduling GCC keeps the DSP loops' values in registers (measured on the
    # Cortex-M4, docs/firmware.md "DSP kernel set": 0.94x the instructions of plain -O2, less flash)
    "dsp": KernelSet("dsp", 1, DSP_CORES, ("-O2", "-fno-schedule-insns", "-fno-schedule-insns2"),
                     "Arm DSP extension (SMLAD, SXTB16) through ACLE"),
    "mve": KernelSet("mve", 2, MVE_CORES, ("-O2",), "Arm Helium (MVE) vectors through arm_mve.h"),
}
# most capable first: the default for a core is the first set it can run
_PREFERENCE = ("mve", "dsp", "portable")


def runs_on(ks: KernelSet, board: Board) -> bool:
    return ks.cores is None or board.core.cpu in ks.cores


def kernel_set_for(board: Board) -> str:
    """The board's default kernel set: the most capable one its core runs."""
    return next(n for n in _PREFERENCE if runs_on(KERNEL_SETS[n], board))


def choose_kernel_set(board: Board, requested: str | None = None) -> KernelSet:
    """``requested`` (None or "auto": the board's default), checked against the board's core."""
    if requested in (None, "auto"):
        return KERNEL_SETS[kernel_set_for(board)]
    ks = KERNEL_SETS.get(requested)
    if ks is None:
        raise InputError(f"unknown kernel set '{requested}'; choose one of auto, {', '.join(KERNEL_SETS)}")
    if not runs_on(ks, board):
        able = ", ".join(n for n in KERNEL_SETS if runs_on(KERNEL_SETS[n], board))
        raise InputError(f"board '{board.name}' ({board.core.cpu}) cannot run the '{ks.name}' kernels "
                         f"({ks.description}); it runs: {able}")
    return ks


def kernel_flags(board: Board, requested: str | None = None) -> tuple[str, ...]:
    """The kernel runtime's extra compile flags on ``board``: the set's optimization and its id."""
    ks = choose_kernel_set(board, requested)
    return (*ks.flags, f"-DTS_KERNELS={ks.ident}")
