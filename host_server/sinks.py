"""Prediction sinks. JSONL: one JSON object per line, one write and flush per micro-batch, fsynced on close.

``JsonlSink.open()`` opens the file when the server starts, so an unusable path (a directory, a
folder that cannot be created, /proc, no permission) is an InputError before any frame is taken. A
write that fails later (disk full, /dev/full, an I/O error) raises ``SinkError``: the batch's bytes
already written are cut off again where the file allows it (no half line stays), the server counts
the batch as lost and stops.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Protocol

from tinysplit.errors import InputError, OutputError


class SinkError(OutputError):
    """Writing predictions failed after the sink was opened (disk full, I/O error)."""


class Sink(Protocol):
    def write_many(self, records: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


def _finite(x: Any) -> Any:
    """``x`` with NaN and infinite floats replaced by None (JSON has no NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def json_line(record: dict[str, Any]) -> str:
    """One record as a valid JSON line: a NaN or infinite number is written as null."""
    try:
        return json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
    except ValueError:
        return json.dumps(_finite(record), separators=(",", ":"), allow_nan=False) + "\n"


class JsonlSink:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError(f"predictions file '{self.path}' is a directory: give a file path with --out")
        self._f = None
        self._created = False
        self._failed = False
        self.written = 0

    def open(self) -> None:
        """Open (append to) the file now: InputError naming the path if it cannot be written. A file this
        call created is removed again by ``close`` if no record was written to it."""
        if self._f is not None:
            return
        what = f"predictions file '{self.path}' (--out)"
        for folder in (self.path.parent, *self.path.parent.parents):
            if folder.exists():
                if not folder.is_dir():
                    raise InputError(f"{what}: '{folder}' is a file, not a folder; give a path in a writable folder")
                break
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{what}: cannot create its folder '{self.path.parent}': {e.strerror or e}; "
                             "give a path in a writable folder") from None
        existed = self.path.exists()
        if existed and not (self.path.is_file() or self.path.is_char_device()):
            raise InputError(f"{what} exists and is not a regular file; give a file path")
        try:
            self._f = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise InputError(f"{what} cannot be opened for writing: {e.strerror or e}; give a path in a "
                             "writable folder") from None
        self._created = not existed

    def write_many(self, records: list[dict[str, Any]]) -> None:
        """Append records as lines with one write and one flush (a micro-batch at a time); SinkError if
        the write or flush fails."""
        if self._failed:
            raise SinkError(f"predictions file '{self.path}' failed earlier; nothing more is written to it")
        if self._f is None:
            self.open()
        f = self._f
        try:
            start = f.tell() if f.seekable() else None
        except OSError:
            start = None
        try:
            f.write("".join(json_line(r) for r in records))
            f.flush()
        except OSError as e:
            self._discard_partial(start)
            raise SinkError(f"writing predictions to '{self.path}' failed: {e.strerror or e}") from None
        self.written += len(records)

    def _discard_partial(self, start: int | None) -> None:
        """After a failed write: drop what is still buffered and cut off the part of the batch that reached
        the file, where the file allows it (not /dev/full, pipes)."""
        f, self._f = self._f, None
        try:
            os.close(f.fileno())  # close the descriptor first: closing the file object would flush again
        except OSError:
            pass
        try:
            f.close()
        except (OSError, ValueError):
            pass
        if start is not None and self.path.is_file():
            try:
                os.truncate(self.path, start)
            except OSError:
                pass
        self._failed = True

    def close(self) -> None:
        f = self._f
        if f is None or f.closed:
            return
        try:
            f.flush()
            if self.path.is_file():
                os.fsync(f.fileno())
        except OSError as e:
            self._discard_partial(None)
            raise SinkError(f"closing the predictions file '{self.path}' failed: {e.strerror or e}") from None
        self._f = None
        f.close()
        if self._created and self.written == 0:
            try:  # a server that wrote nothing leaves no file behind
                self.path.unlink()
            except OSError:
                pass


class MemorySink:
    """Keeps records in a list (tests, benchmarks)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write_many(self, records: list[dict[str, Any]]) -> None:
        self.records.extend(records)

    def close(self) -> None:
        pass
