"""Prediction sinks. JSONL: one JSON object per line, flushed per line, fsynced on close."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol


class Sink(Protocol):
    def write_many(self, records: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")
        self.written = 0

    def write_many(self, records: list[dict[str, Any]]) -> None:
        """Append records as lines with one write and one flush (a micro-batch at a time)."""
        self._f.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        self._f.flush()
        self.written += len(records)

    def close(self) -> None:
        if not self._f.closed:
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
