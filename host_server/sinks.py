"""Prediction sinks. JSONL: one JSON object per line, flushed per line, fsynced on close."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from tinysplit.errors import InputError


class Sink(Protocol):
    def write_many(self, records: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError(f"predictions file '{self.path}' is a directory: give a file path with --out")
        self._f = None  # opened at the first record: a server that fails to start leaves no file behind
        self.written = 0

    def write_many(self, records: list[dict[str, Any]]) -> None:
        """Append records as lines with one write and one flush (a micro-batch at a time)."""
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8")
        self._f.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        self._f.flush()
        self.written += len(records)

    def close(self) -> None:
        if self._f is not None and not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()


class MemorySink:
    """Keeps records in a list (tests, benchmarks)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write_many(self, records: list[dict[str, Any]]) -> None:
        self.records.extend(records)

    def close(self) -> None:
        pass
