"""What every command prints through: progress lines on stderr, JSON on stdout.

Shared by the CLI's command modules and the methods' CLI verbs, so that neither imports the CLI.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


class Progress:
    """Progress lines on stderr with elapsed time; silent with --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[tinysplit {time.perf_counter() - self.t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def kib(n: int) -> str:
    return f"{n:,} B ({n / 1024:.1f} KiB)"
