"""The demo: the whole path on the digits example, on an emulated board, no network.

NAIR: train -> NAIR re-tune (and the original order as the baseline) -> export int8 bundles
-> generate and build firmware for qemu-mps2-an386 -> QEMU runs the head and streams importance-
ordered slices to the host tail server -> predictions at several budgets -> a table and a plot.

ReBEL: the same trained model -> a variational Head1 + Gaussian mixture early classifier (Head2 +
Tail on the host) -> one int8 device model -> the rebel firmware in QEMU at several thresholds (set
by CONTROL frames): early labels from the device, latents to the host tail server -> coverage and
local / remote / overall accuracy per threshold, checked against the reference pipeline.
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
    rebel_epochs: int = 30  # ReBEL joint training
    rebel_finetune_epochs: int = 8  # then Head2 + Tail
    thresholds: tuple[float, ...] = (0.0, 0.9, 0.99, 1.0)

    @staticmethod
    def quick(out: Path) -> "DemoConfig":
        """The CI form: a short training and re-tuning, 60 test samples, three budgets and thresholds."""
        return DemoConfig(out, train_epochs=10, retune_epochs=1, samples=60, budgets=(1, 4, 16), rebel_epochs=4,
                          rebel_finetune_epochs=1, thresholds=(0.0, 0.9, 1.0))


def run_demo(cfg: DemoConfig, progress: Callable[[str], None]) -> dict[str, Any]:
    from tinysplit.examples.digits import train_digits
    from tinysplit.firmware.apps.nair import run_e2e
    from tinysplit.methods.nair.order import RetuneConfig
    from tinysplit.methods.nair.evaluate import digits_nair_spec, evaluate

    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    progress(f"training the digits model ({cfg.train_epochs} epochs; scikit-learn's 8x8 digits, no download)")
    trained = train_digits(epochs=cfg.train_epochs)
    spec = digits_nair_spec(trained=trained)  # NAIR re-tunes copies: the trained model stays for ReBEL
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
    result["rebel"] = run_rebel_part(cfg, n, trained, progress)
    result["ok"] = result["ok"] and result["rebel"]["ok"]
    write_atomic(out / "demo.json", json.dumps(result, indent=2))
    return result


def run_rebel_part(cfg: DemoConfig, n: int, trained: Any, progress: Callable[[str], None]) -> dict[str, Any]:
    """ReBEL on the digits model: train the regularized GMC variant, export it, run the rebel firmware
    in QEMU at each threshold, and measure coverage and accuracy from what the device and the server
    gave."""
    from tinysplit.firmware.apps.rebel import run_e2e
    from tinysplit.methods.rebel.evaluate import digits_rebel_spec, evaluate
    from tinysplit.methods.rebel.train import RebelConfig

    out = cfg.out / "rebel"
    progress(f"ReBEL: Head1 + Gaussian mixture early classifier on the same model ({cfg.rebel_epochs} joint + "
             f"{cfg.rebel_finetune_epochs} fine-tune epochs), one int8 device model")
    spec = digits_rebel_spec(trained=trained)
    ev = evaluate(spec, out, {"gmc": {}}, RebelConfig(epochs=cfg.rebel_epochs, finetune_epochs=cfg.rebel_finetune_epochs),
                  posthoc={}, one_output_cost=False, progress=progress)
    bundle = Path(ev["int8"]["bundle"])
    progress(f"ReBEL firmware for {cfg.board}, QEMU + tail server over {cfg.transport}: {n} test samples at "
             f"thresholds {', '.join(f'{t:g}' for t in cfg.thresholds)} (each set by a CONTROL frame)")
    e2e = run_e2e(bundle, cfg.board, n, cfg.transport, cfg.thresholds, workdir=out / "firmware")
    y = spec.y_heldout[:n]
    rows = []
    for r in e2e["thresholds"].values():
        labels, early = np.array(r["labels"]), np.array(r["early"], bool)
        hit = labels == y
        rows.append({"threshold": r["threshold"], "q_t": r["q_t"], "coverage": float(early.mean()),
                     "local_accuracy": float(hit[early].mean()) if early.any() else None,
                     "remote_accuracy": float(hit[~early].mean()) if (~early).any() else None,
                     "overall_accuracy": float(hit.mean()), "bytes_per_sample": r["bytes_per_sample"],
                     "labels_equal_reference": r["labels_equal_reference"],
                     "paths_equal_reference": r["paths_equal_reference"]})
    return {"rows": rows, "bundle": str(bundle), "firmware": e2e["firmware"], "latent": ev["latent"],
            "plot": str(out / "rebel_eval.png"), "rebel_eval": str(out / "rebel_eval.json"), "ok": e2e["ok"]}


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
    r = result.get("rebel")
    if r:
        pct = lambda v: f"{100 * v:.2f}%" if v is not None else "-"
        lines += ["", f"ReBEL on {result['board']} (QEMU): early labels from the device, latents ({r['latent']} B) over "
                      f"{result['transport']} to the host tail server, {result['samples']} test samples:",
                  f"{'threshold':>10} {'on device':>10} {'local acc.':>11} {'remote acc.':>12} {'overall':>8} "
                  f"{'bytes/sample':>13} {'= reference':>12}"]
        for row in r["rows"]:
            lines.append(f"{row['threshold']:>10g} {pct(row['coverage']):>10} {pct(row['local_accuracy']):>11} "
                         f"{pct(row['remote_accuracy']):>12} {pct(row['overall_accuracy']):>8} "
                         f"{row['bytes_per_sample']:>13.1f} {100 * min(row['labels_equal_reference'], row['paths_equal_reference']):>11.0f}%")
        lines.append(f"firmware: flash {r['firmware']['flash_bytes']:,} B, RAM {r['firmware']['ram_bytes']:,} B; "
                     f"plot: {r['plot']}")
    lines.append(f"results: {Path(result['plot']).parent} (bundles/, firmware/, nair_eval.json, rebel/, demo.json)")
    return "\n".join(lines)
