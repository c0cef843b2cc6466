"""The host stage's registry: one assembler per split method, keyed by the manifest's ``method``.

An assembler is held by the server (one per bundle, not one per device session), so a sample may
gather parts from several devices. It declares the frame types it takes; the server routes those
to it and handles HELLO and STATS itself. It turns frames into ``Completed`` samples: either the
inputs of a host tail (which the server micro-batches through ONNX Runtime) or a final prediction
made on the device (no tail). A method that has nothing for the host (``plain``) maps to None.
A test asserts that this table names exactly the methods of ``tinysplit.methods.METHODS``.

Every sample an assembler starts is counted (``samples_received``) and leaves it only as a
``Completed`` (at its last part, its deadline, an eviction, a flush or ``forget``), so the server
can check that samples received = predicted + dropped under a named reason (+ still in flight).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tinysplit.errors import InputError
from tinysplit.wire import Frame, FrameType

if TYPE_CHECKING:
    from tinysplit.host_server.metrics import Metrics
    from tinysplit.manifest import Manifest


@dataclass(frozen=True)
class Completed:
    """One sample, ready for a tail (``tail`` names it) or already predicted on the device
    (``tail`` None, ``label`` and ``scores`` set)."""

    device: int
    seq: int
    tail: str | None
    inputs: tuple[np.ndarray, ...] = ()  # what the assembler's tail_inputs() batches (int8 as received)
    t_first: float = 0.0
    by_deadline: bool = False  # completed at its deadline with parts missing
    parts: int = 0  # parts (units, portions) received: sent back in RESULT frames
    record: dict[str, Any] = field(default_factory=dict)  # the method's fields for the predictions sink
    label: int | None = None
    scores: tuple[float, ...] | None = None


class Assembler(Protocol):
    frame_types: tuple[FrameType, ...]
    tails: tuple[str, ...]  # host tails this bundle's samples may go to (the server opens each once)

    def add(self, frame: Frame, now: float) -> list[Completed]:
        """One frame of a declared type. Raise tinysplit.wire.DecodeError(reason) to drop a bad one."""

    def expire(self, now: float) -> list[Completed]:
        """Samples whose deadline passed, completed as they are."""

    def flush(self, now: float) -> list[Completed]:
        """Everything pending, completed now (shutdown)."""

    def forget(self, device: int, now: float) -> list[Completed]:
        """The device's session expired or was reclaimed (or it said HELLO again, so its seqs restart):
        its pending samples, completed now, and none of its state kept. Optional (the server skips
        an assembler without it)."""

    def tail_inputs(self, tail: str, items: list[Completed]) -> list[np.ndarray]:
        """Worker thread: one batched float32 array per input of ``tail`` for these samples."""

    @property
    def pending(self) -> int: ...


# method -> "module:Class" (imported when a bundle of that method is served), or None
ASSEMBLERS: dict[str, str | None] = {
    "plain": None,
    "nair": "tinysplit.host_server.assemblers.nair:NairAssembler",
    "rebel": "tinysplit.host_server.assemblers.rebel:RebelAssembler",
    "rocoin": "tinysplit.host_server.assemblers.rocoin:RocoinAssembler",
    "adaptive_resnet": "tinysplit.host_server.assemblers.adaptive_resnet:AdaptiveAssembler",
}


def make_assembler(manifest: "Manifest", deadline_s: float, metrics: "Metrics") -> Assembler:
    """The assembler of the manifest's method for this bundle (InputError if it has none)."""
    if manifest.method not in ASSEMBLERS:
        raise InputError(f"bundle '{manifest.name}' has method '{manifest.method}', which this server has no "
                         f"assembler for (known: {', '.join(k for k, v in ASSEMBLERS.items() if v)})")
    target = ASSEMBLERS[manifest.method]
    if target is None:
        raise InputError(f"bundle '{manifest.name}' is a '{manifest.method}' bundle: its device models run whole on "
                         "the device and there is nothing for a host server to do")
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)(manifest, deadline_s, metrics)
