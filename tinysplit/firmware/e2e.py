"""End to end in QEMU, for any split method: the bundle's method app on an emulated board, the wire
protocol, the real TailServer, and the labels compared with the method's Python reference pipeline.

``tinysplit hil --e2e`` reads the bundle's method and runs that method app's ``run_e2e`` (in
``tinysplit.firmware.apps.<app>``): each app adds its own options (NAIR: ``--budgets``) through
``add_e2e_arguments`` and returns a JSON-ready report whose ``ok`` says whether every label equalled
the reference. The run itself (build, QEMU with a DeviceLink, the in-process TailServer, settings sent
as CONTROL frames, samples as INPUT frames, predictions collected) is shared: ``prepare`` and
``run_app`` below; a method gives its settings, its configuration and its row of the report.
"""

from __future__ import annotations

import asyncio
import importlib
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tinysplit.errors import InputError, VerificationError
from tinysplit.firmware.apps import APPS, app_for_method
from tinysplit.firmware.project import TRANSPORTS


def add_e2e_arguments(p: Any) -> None:
    """The end-to-end options of ``tinysplit hil`` (its --bundle/--board/--samples/--json are shared)."""
    p.add_argument("--e2e", action="store_true",
                   help="end to end: the bundle's method app sends over the wire protocol to the tail server; "
                        "labels are compared with the Python reference pipeline")
    p.add_argument("--transport", choices=TRANSPORTS, default="uart",
                   help="device -> host transport of --e2e (udp: qemu-mps2-an386, qemu-mps3-an547)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--auth", action="store_true",
                      help="--e2e with authenticated frames, under a fresh random key for this run")
    auth.add_argument("--keys", metavar="KEYS.json",
                      help="--e2e with authenticated frames, under the device's key from this key file")
    p.add_argument("--device-id", type=int, default=1, metavar="ID", help="the device id of --e2e (default 1)")
    for app in APPS.values():
        if app.module is not None:
            importlib.import_module(app.module).add_e2e_arguments(p)


def run_e2e_for_bundle(bundle: Path, board: str, samples: int, transport: str, args: Any,
                       workdir: Path | None = None, model: str | None = None) -> dict[str, Any]:
    """Run the end-to-end check of the bundle's method (its app's ``e2e_from_args``)."""
    from tinysplit.manifest import load_manifest

    app = app_for_method(load_manifest(bundle).method)
    module = importlib.import_module(app.module)
    kw: dict[str, Any] = {}
    key = device_key_from_args(args)
    if key is not None:
        kw["device_key"] = key
    if getattr(args, "device_id", 1) != 1:
        kw["device_id"] = args.device_id
    return module.e2e_from_args(bundle, board, samples, transport, args, workdir=workdir, model=model, **kw)


def device_key_from_args(args: Any) -> bytes | None:
    """The device key of ``hil --e2e --auth`` (fresh) or ``--keys FILE`` (the device id's), else None."""
    import secrets

    if getattr(args, "auth", False):
        return secrets.token_bytes(32)
    if getattr(args, "keys", None):
        from tinysplit.keys import load_keys

        keys = load_keys(args.keys)
        dev = getattr(args, "device_id", 1)
        if dev not in keys:
            raise InputError(f"key file '{args.keys}' has no key for device {dev} (it has {sorted(keys)}); add one "
                             f"with 'tinysplit keys create --file {args.keys} --device {dev}'")
        return keys[dev].key
    return None


def format_e2e(report: dict[str, Any]) -> str:
    """The report for people, by the app of the report's method."""
    return importlib.import_module(app_for_method(report["method"]).module).format_e2e(report)


# --- the shared harness of every method app's end-to-end check ----------------------------------------

@dataclass(frozen=True)
class Setting:
    """One setting of a run (a NAIR budget, a ReBEL threshold): the CONTROL pairs sent before its samples."""

    key: str  # the report's key for it ("4", "0.9")
    what: str  # for messages ("budget 4")
    control: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class SettingRun:
    """What the device and the server did for one setting, for the method's row of the report."""

    seqs: list[int]
    records: dict[int, dict[str, Any]]  # the server's prediction per seq (missing: not predicted)
    frames: list[list[bytes]]  # the device's data frames per seq, as the link saw them
    labels: np.ndarray  # the server's label per seq (-1 where it made none)
    stats: dict[str, int]  # the device's STATS reply after the setting's predictions (DeviceLink.stats)


@dataclass(frozen=True)
class Prepared:
    bundle: Path
    board: Any
    manifest: Any
    xq: np.ndarray  # the held-out samples, quantized as the device takes them


def prepare(bundle: str | Path, board_name: str, samples: int, transport: str, model: str | None) -> Prepared:
    """The checks every method's end-to-end run makes before building anything."""
    from tinysplit.boards import get_board
    from tinysplit.manifest import load_manifest
    from tinysplit.reference import heldout, quantized_inputs

    if transport not in TRANSPORTS:
        raise InputError(f"transport must be one of {', '.join(TRANSPORTS)}, got '{transport}'")
    if samples < 1:
        raise InputError(f"--samples must be >= 1, got {samples}")
    board = get_board(board_name)
    bundle = Path(bundle)
    manifest = load_manifest(bundle)
    if model is not None and model != manifest.device_models[0].name:
        raise InputError(f"--e2e serves the bundle's first device model ('{manifest.device_models[0].name}'), "
                         f"the one its host tail consumes; got --model {model}")
    x, _ = heldout(bundle, manifest)
    if samples > len(x):
        raise InputError(f"the bundle holds {len(x)} held-out samples, asked for {samples}")
    return Prepared(bundle, board, manifest, quantized_inputs(manifest, x[:samples]))


def run_app(p: Prepared, app: str, cfg: Any, settings: list[Setting], row: Callable[[Setting, SettingRun], dict],
            check_hello: Callable[[Any], str | None], *, sources: Any = None, model: str | None = None,
            workdir: str | Path | None = None, timeout: float = 30.0, device_key: bytes | None = None) -> dict[str, Any]:
    """Render and build ``app`` with ``cfg`` (generating the device model's C unless ``sources`` are
    given), run it in QEMU with a DeviceLink and an in-process TailServer on the link's data transport,
    and for each setting send its CONTROL pairs and every sample as INPUT frames, then collect the
    server's predictions. Each setting's row is the method's (``row``) plus samples, labels, frames
    and bytes per sample, time, and the server's counters for that setting. ``check_hello`` returns
    what is wrong with the device's HELLO, or None. ``device_key``: an authenticated build with this
    key (docs/wire-protocol.md): the server accepts only its authenticated frames, and every frame to
    the device is sealed."""
    from tinysplit.firmware.build import build_project
    from tinysplit.firmware.generate import generate_sources
    from tinysplit.firmware.project import render_project

    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="tinysplit-e2e-")) if own_tmp else Path(workdir)
    try:
        work.mkdir(parents=True, exist_ok=True)
        if sources is None:
            sources = generate_sources(p.bundle, p.manifest, work / "model", model, skippable=APPS[app].skippable)
        t0 = time.perf_counter()
        project = render_project(p.board, sources, work / f"{p.board.name}-{cfg.transport}", app=app, app_config=cfg,
                                 device_key=device_key)
        built = build_project(project.dir)
        build_s = time.perf_counter() - t0
        report = asyncio.run(_drive(p, app, built.elf, cfg, settings, row, check_hello, timeout, device_key))
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)
    report.update({"method": p.manifest.method, "board": p.board.name, "transport": cfg.transport,
                   "authenticated": device_key is not None,
                   "samples": len(p.xq), "bundle_id": p.manifest.bundle_id, "device_id": cfg.device_id,
                   "firmware": {"flash_bytes": built.flash_bytes, "ram_bytes": built.ram_bytes,
                                "stack_bytes": built.stack_bytes, "build_s": round(build_s, 2)}})
    return report


async def _drive(p: Prepared, app: str, elf: Path, cfg: Any, settings: list[Setting],
                 row: Callable[[Setting, SettingRun], dict], check_hello: Callable[[Any], str | None],
                 timeout: float, device_key: bytes | None = None) -> dict[str, Any]:
    from tinysplit.firmware.devicelink import DeviceLink
    from tinysplit.host_server.server import ServerConfig, TailServer
    from tinysplit.host_server.sinks import MemorySink

    board, sink = p.board, MemorySink()
    rows: dict[str, Any] = {}
    async with DeviceLink(board, elf, cfg, timeout=timeout) as link:
        server = TailServer(ServerConfig(p.bundle, listen=[], deadline_s=timeout,
                                         send_results=cfg.transport == "uart",
                                         keys=None if device_key is None else {cfg.device_id: device_key}),
                            sink, p.manifest, transports=link.transports)
        link.auth = server.auth  # one host session for the device: the server's and the link's frames share it
        await server.start()
        try:
            await link.attach()
            wrong = check_hello(link.hello)
            if wrong:
                raise VerificationError(f"{board.name}: {wrong}")
            seq = 0
            for s in settings:
                before = server.metrics.snapshot()
                first = len(sink.records)
                await link.control(list(s.control))
                seqs = []
                t0 = time.perf_counter()
                for i in range(len(p.xq)):
                    seq += 1
                    seqs.append(seq)
                    await link.send_input(seq, p.xq[i])
                await link.until(lambda: len(sink.records) >= first + len(seqs),
                                  f"{len(seqs)} predictions at {s.what}", timeout)
                seconds = time.perf_counter() - t0
                got = {r["sample"]: r for r in sink.records[first:]}
                frames = [link.samples[q].frames if q in link.samples else [] for q in seqs]
                stats = await link.stats()
                run = SettingRun(seqs, got, frames, np.array([got[q]["label"] if q in got else -1 for q in seqs]),
                                 stats)
                after = server.metrics.snapshot()
                rows[s.key] = {
                    **row(s, run),
                    "samples": len(seqs),
                    "labels": run.labels.tolist(),
                    "frames_per_sample": float(np.mean([len(f) for f in frames])),
                    "bytes_per_sample": float(np.mean([link.samples[q].wire_bytes if q in link.samples else 0
                                                       for q in seqs])),
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
        raise VerificationError(f"{board.name}: the {app} firmware exited with status {exit_code}")
    return {"settings": rows, "device_stats": device_stats, "exit_code": exit_code,
            "hello": asdict(link.hello) if link.hello is not None else None,
            "throughput": link.throughput(), "server": server_report}
