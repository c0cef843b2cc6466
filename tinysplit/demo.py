"""The demo: the whole path on the digits example, on an emulated board, no network.

train -> NAIR re-tune (and the original order as the baseline) -> export int8 bundles
-> generate and build firmware for qemu-mps2-an386 -> QEMU runs the head and streams importance-
ordered slices to the host tail server -> predictions at several budgets -> a table and a plot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tinysplit.files import write_atomic

BOARD = "qemu-mps2-an386"


@dataclass(frozen=True)
class DemoConfig:
    out: Path
    train_epochs: int = 30
    retune_epochs: int = 3
    samples: int | None = None  # None: the whole test split
    budgets: tuple[int, ...] = (1, 2, 4, 8, 16)
    transport: str = "udp"
    board: str = BOARD

    @staticmethod
    def quick(out: Path) -> "DemoConfig":
        """The CI form: a short training and re-tuning, 60 test samples, three budgets."""
        return DemoConfig(out, train_epochs=10, retune_epochs=1, samples=60, budgets=(1, 4, 16))


def run_demo(cfg: DemoConfig, progress: Callable[[str], None]) -> dict[str, Any]:
    from tinysplit.firmware.apps.nair import run_e2e
    from tinysplit.methods.nair.order import RetuneConfig
    from tinysplit.methods.nair.evaluate import digits_nair_spec, evaluate

    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    progress(f"training the digits model ({cfg.train_epochs} epochs; scikit-learn's 8x8 digits, no download)")
    spec = digits_nair_spec(cfg.train_epochs)
    progress("NAIR: ranking channels, re-tuning, exporting int8 bundles (and the original order as baseline)")
    ev = evaluate(spec, out, ("original", "nair"), RetuneConfig(epochs=cfg.retune_epochs), progress=progress)
    bundle = Path(ev["variants"]["nair"]["bundle"])
    y = spec.y_heldout
    n = len(y) if cfg.samples is None else min(cfg.samples, len(y))
    progress(f"firmware for {cfg.board}, QEMU + tail server over {cfg.transport}: {n} test samples at budgets "
             f"{', '.join(map(str, cfg.budgets))} units")
    e2e = run_e2e(bundle, cfg.board, n, cfg.transport, cfg.budgets, workdir=out / "firmware")
    rows = []
    for b in cfg.budgets:
        r = e2e["budgets"][str(b)]
        labels = np.array(r["labels"])
        rows.append({"budget_units": b, "units_total": ev["units_total"],
                     "bytes_per_sample": int(round(r["bytes_per_sample"])),
                     "latency_ms_250kbps": ev["latency_ms"][b - 1],
                     "device_accuracy": float((labels == y[:n]).mean()),
                     "labels_equal_reference": r["labels_equal_reference"],
                     "baseline_accuracy": ev["variants"]["original"]["accuracy"][b - 1],
                     "samples_per_s": r["samples_per_s"]})
    result = {"board": cfg.board, "transport": cfg.transport, "samples": n, "rows": rows,
              "bundle": str(bundle), "firmware": e2e["firmware"], "plot": str(out / "nair_eval.png"),
              "nair_eval": str(out / "nair_eval.json"), "ok": e2e["ok"]}
    write_atomic(out / "demo.json", json.dumps(result, indent=2))
    return result


def format_demo(result: dict[str, Any]) -> str:
    lines = [f"NAIR on {result['board']} (QEMU), slices over {result['transport']} to the host tail server, "
             f"{result['samples']} test samples:",
             f"{'budget':>11} {'bytes/sample':>13} {'ms @250kbps':>12} {'device accuracy':>16} "
             f"{'= reference':>12} {'unordered baseline':>19}"]
    for r in result["rows"]:
        lines.append(f"{str(r['budget_units']) + '/' + str(r['units_total']) + ' units':>11} "
                     f"{r['bytes_per_sample']:>13} {r['latency_ms_250kbps']:>12.1f} "
                     f"{100 * r['device_accuracy']:>15.2f}% {100 * r['labels_equal_reference']:>11.0f}% "
                     f"{100 * r['baseline_accuracy']:>18.2f}%")
    lines.append(f"firmware: flash {result['firmware']['flash_bytes']:,} B, RAM {result['firmware']['ram_bytes']:,} B")
    lines.append(f"plot: {result['plot']}")
    lines.append(f"results: {Path(result['plot']).parent} (bundles/, firmware/, nair_eval.json, demo.json)")
    return "\n".join(lines)
