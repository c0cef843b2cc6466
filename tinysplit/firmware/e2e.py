"""End to end: bundle -> nair firmware in QEMU -> wire protocol -> TailServer -> labels, checked
against the Python reference pipeline (TFLite Micro head + zero-filling + ONNX tail).

``run_e2e(bundle, board, samples, transport, budgets)`` generates the device model's C (or takes
``sources``), renders and builds the ``nair`` app for the board, starts it in QEMU with a
``NairLink`` and an in-process ``TailServer`` on the link's data transport, and for each budget:
sends a CONTROL budget frame, the held-out samples as INPUT frames over the UART, and collects the
server's predictions. The result (JSON-ready) gives per budget: samples, the fraction of labels
equal to ``tinysplit.reference.labels_at_budgets`` (must be 1.0), slice bytes per sample, and the
server's counters for that budget; plus the firmware's flash/RAM, the device's STATS, and the
device -> host throughput.

``add_e2e_arguments(parser)`` adds ``--e2e --transport --budgets`` to a ``tinysplit hil`` parser;
``e2e_options(args)`` reads them back (None without ``--e2e``).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinysplit.boards import get_board
from tinysplit.errors import InputError, VerificationError
from tinysplit.firmware.build import build_project
from tinysplit.firmware.nairdev import NairLink
from tinysplit.firmware.project import nair_config, render_project
from tinysplit.manifest import load_manifest
from tinysplit.modelsrc import ModelSources

log = logging.getLogger(__name__)

TRANSPORTS = ("uart", "udp")


@dataclass(frozen=True)
class E2eOptions:
    transport: str
    budgets: tuple[int, ...]


def parse_budgets(text: str) -> tuple[int, ...]:
    """'1,4,16' -> (1, 4, 16); InputError for anything else."""
    try:
        budgets = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise InputError(f"--budgets must be comma-separated unit counts like 1,4,16, got '{text}'") from None
    if not budgets or min(budgets) < 1:
        raise InputError(f"--budgets must list unit counts >= 1, got '{text}'")
    return budgets


def add_e2e_arguments(p: Any) -> None:
    """The end-to-end options of ``tinysplit hil`` (its --bundle/--board/--samples/--json are shared)."""
    p.add_argument("--e2e", action="store_true",
                   help="end to end: the nair app streams slices over the wire protocol to the tail server; "
                        "labels are compared with the Python reference pipeline")
    p.add_argument("--transport", choices=TRANSPORTS, default="uart",
                   help="device -> host transport of --e2e (udp: qemu-mps2-an386, qemu-mps3-an547)")
    p.add_argument("--budgets", default=None, metavar="B1,B2,...",
                   help="slice budgets in units for --e2e (default: 1,4,...,units_total)")


def e2e_options(args: Any) -> E2eOptions | None:
    if not getattr(args, "e2e", False):
        return None
    return E2eOptions(args.transport, parse_budgets(args.budgets) if args.budgets else ())


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_e2e(bundle: str | Path, board_name: str, samples: int = 20, transport: str = "uart",
            budgets: tuple[int, ...] | list[int] = (), *, device_id: int = 1, workdir: str | Path | None = None,
            model: str | None = None,
            sources: ModelSources | None = None, reference_features: np.ndarray | None = None,
            timeout: float = 30.0) -> dict[str, Any]:
    """Run the end-to-end check; returns the report (see the module docstring). ``sources`` and
    ``reference_features`` (the device model's int8 outputs for the samples) replace the code
    generator and the TFLite Micro reference (tests with a fake device model)."""
    from tinysplit.reference import heldout, labels_at_budgets, quantized_inputs
    from tinysplit.slices import plan_for

    bundle = Path(bundle)
    if transport not in TRANSPORTS:
        raise InputError(f"transport must be one of {', '.join(TRANSPORTS)}, got '{transport}'")
    if samples < 1:
        raise InputError(f"--samples must be >= 1, got {samples}")
    board = get_board(board_name)
    manifest = load_manifest(bundle)
    if model is not None and model != manifest.device_models[0].name:
        raise InputError(f"--e2e serves the bundle's first device model ('{manifest.device_models[0].name}'), "
                         f"the one its host tail consumes; got --model {model}")
    plan = plan_for(manifest)
    budgets = tuple(budgets) or tuple(sorted({1, *range(4, plan.units_total, 4), plan.units_total}))
    bad = [b for b in budgets if not 1 <= b <= plan.units_total]
    if bad:
        raise InputError(f"budgets {bad} are not in 1..{plan.units_total} (the bundle's units)")
    x, _ = heldout(bundle, manifest)
    if samples > len(x):
        raise InputError(f"the bundle holds {len(x)} held-out samples, asked for {samples}")
    xq = quantized_inputs(manifest, x[:samples])
    cfg = nair_config(manifest, device_id=device_id, transport=transport,
                      udp_port=free_udp_port() if transport == "udp" else 5600)

    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="tinysplit-e2e-")) if own_tmp else Path(workdir)
    try:
        work.mkdir(parents=True, exist_ok=True)
        if sources is None:
            from tinysplit.firmware.hilcheck import generate_sources

            sources = generate_sources(bundle, manifest, work / "model", model)
        t0 = time.perf_counter()
        project = render_project(board, sources, work / f"{board.name}-{transport}", app="nair", nair=cfg)
        built = build_project(project.dir)
        build_s = time.perf_counter() - t0
        ref = labels_at_budgets(bundle, list(budgets), n=samples, features_q=reference_features)
        report = asyncio.run(_drive(bundle, manifest, board, built.elf, cfg, xq, budgets, ref, timeout))
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)
    report.update({"board": board.name, "transport": transport, "samples": samples,
                   "bundle_id": manifest.bundle_id, "device_id": device_id,
                   "firmware": {"flash_bytes": built.flash_bytes, "ram_bytes": built.ram_bytes,
                                "stack_bytes": built.stack_bytes, "build_s": round(build_s, 2)}})
    report["ok"] = all(r["labels_equal_reference"] == 1.0 for r in report["budgets"].values())
    return report


async def _drive(bundle: Path, manifest: Any, board: Any, elf: Path, cfg: Any, xq: np.ndarray,
                 budgets: tuple[int, ...], ref: dict[int, np.ndarray], timeout: float) -> dict[str, Any]:
    from tinysplit.host_server.server import ServerConfig, TailServer
    from tinysplit.host_server.sinks import MemorySink

    sink = MemorySink()
    per_budget: dict[str, Any] = {}
    async with NairLink(board, elf, cfg, timeout=timeout) as link:
        server = TailServer(ServerConfig(bundle, listen=[], deadline_s=timeout, send_results=cfg.transport == "uart"),
                            sink, manifest, transports=link.transports)
        await server.start()
        try:
            await link.attach()
            seq = 0
            for b in budgets:
                before = server.metrics.snapshot()
                first = len(sink.records)
                await link.set_budget(b)
                seqs = []
                t0 = time.perf_counter()
                for i in range(len(xq)):
                    seq += 1
                    seqs.append(seq)
                    await link.send_input(seq, xq[i])
                await link.until(lambda: len(sink.records) >= first + len(seqs),
                                  f"{len(seqs)} predictions at budget {b}", timeout)
                seconds = time.perf_counter() - t0
                got = {r["sample"]: r for r in sink.records[first:]}
                labels = np.array([got[s]["label"] if s in got else -1 for s in seqs])
                frames = [link.samples.get(s) for s in seqs]
                slice_bytes = [sum(len(f) for f in fr.frames) if fr else 0 for fr in frames]
                after = server.metrics.snapshot()
                per_budget[str(b)] = {
                    "budget_units": b,
                    "samples": len(seqs),
                    "labels_equal_reference": float(np.mean(labels == ref[b])),
                    "labels": labels.tolist(),
                    "mismatches": [int(s) for s, lab, r in zip(seqs, labels, ref[b]) if lab != r],
                    "complete": sum(1 for s in seqs if got.get(s, {}).get("complete")),
                    "units_received": sorted({int(got[s]["units_received"]) for s in seqs if s in got}),
                    "slice_frames_per_sample": len(frames[0].frames) if frames and frames[0] else 0,
                    "bytes_per_sample": float(np.mean(slice_bytes)),
                    "seconds": round(seconds, 3),
                    "samples_per_s": round(len(seqs) / seconds, 1),
                    "server": {k: after["counters"].get(k, 0) - before["counters"].get(k, 0)
                               for k in after["counters"]}
                              | {"drops": {k: v - before["drops"].get(k, 0) for k, v in after["drops"].items()
                                           if v != before["drops"].get(k, 0)}},
                }
            device_stats = await link.stats()
            server_report = server.report()  # before the exit closes the line (a 'link_error' then)
            exit_code = await link.exit(0)
        finally:
            await server.stop()
            await link.close()
    if exit_code != 0:
        raise VerificationError(f"{board.name}: the nair firmware exited with status {exit_code}")
    return {"budgets": per_budget, "device_stats": device_stats, "exit_code": exit_code,
            "hello": asdict(link.hello) if link.hello is not None else None,
            "throughput": link.throughput(), "server": server_report}


def run_e2e_args(args: Any, emit_json: Any = None) -> int:
    """``tinysplit hil --e2e``: run with the parsed arguments (--bundle --board --samples --json
    --keep --model shared with plain hil); prints the report; 0 when every label matched, else 5."""
    import json
    import sys

    opts = e2e_options(args)
    if opts is None:
        raise InputError("run_e2e_args needs --e2e")
    keep = getattr(args, "keep", None)
    r = run_e2e(Path(args.bundle), args.board, args.samples, opts.transport, opts.budgets,
                workdir=Path(keep) if keep else None, model=getattr(args, "model", None))
    if getattr(args, "json", False):
        if emit_json is not None:
            emit_json(r)
        else:
            json.dump(r, sys.stdout, indent=2)
            sys.stdout.write("\n")
    else:
        print(f"{r['board']} over {r['transport']}: {r['samples']} samples per budget; firmware flash "
              f"{r['firmware']['flash_bytes']:,} B, RAM {r['firmware']['ram_bytes']:,} B")
        for b, row in r["budgets"].items():
            print(f"  budget {int(b):3} units: labels equal to the reference {100 * row['labels_equal_reference']:6.2f}%"
                  f", {row['bytes_per_sample']:.0f} B/sample, {row['samples_per_s']:.1f} samples/s")
        t = r["throughput"]
        print(f"  device -> host: {t['frames_per_s']:.0f} frames/s, {t['bytes_per_s'] / 1000:.1f} kB/s; "
              f"device drops {r['device_stats']['drops']}, server drops {r['server']['drops']}")
    return 0 if r["ok"] else 5
