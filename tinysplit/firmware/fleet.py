"""A RoCoIn fleet in QEMU: every device of a rocoin bundle's groups in its own emulator, one tail
server over all of them, each held-out input broadcast to every live device, and devices killed on
request mid-run, to watch the system answer with the portions that still arrive.

    report = run_fleet(bundle, samples=20, kills={"cam2": 5})

1. **Build** one firmware per distinct (board, student, transport) of the bundle's devices
   (``method_data.rocoin.groups``): the student's C from the code generator (or given ``sources``),
   the ``rocoin`` app. Every UDP build sends to one host port, as a real fleet sends to its host.
2. **Provision** each device: a copy of its build's ELF with its own wire id in the app's
   provisioning record (``tinysplit.firmware.provision``). The partition and K are the build's
   (they come with the student); the device id is the one per-device value, so no device costs a
   build of its own.
3. **Run** every device in its own QEMU (a ``DeviceLink`` each, started together) and one
   ``TailServer`` over every UART link and the one UDP socket, each transport tapped to count the
   portions per device. Sample s (s = 1..N, also its seq) goes out as INPUT frames to the broadcast
   id, the same bytes to every live device; the server's prediction for seq s is awaited (complete
   when all K partitions are in, or at the deadline, ``method_data.rocoin.deadline_ms`` unless given).
   ``kills`` {device: s} ends that device's QEMU (SIGKILL, as a crash would) once sample s was
   answered and its own portions arrived (0: before the first sample).
4. **Check**: per sample the label, the partitions that arrived, the devices whose portions were
   used; per device its frames and whether it was killed; and the labels against the reference for
   exactly the partitions that arrived (``tinysplit.methods.rocoin.reference.labels_with_partitions``
   unless ``reference`` is given). ``ok``: every sample answered and every label equal.

``assembler`` (a factory, as ``TailServer`` takes it) and ``reference`` are pluggable; the tests run
the fleet with fakes of both, and of the students (``sources``) and the manifest (``manifest``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Hashable, Mapping

import numpy as np

from tinysplit.errors import InputError, ManifestError, VerificationError
from tinysplit.firmware.apps.rocoin import (RocoinAppConfig, RocoinDevice, RocoinLayout, config_from_manifest,
                                            layout_for, portion_parts, provision)
from tinysplit.manifest import Manifest
from tinysplit.wire import DecodeError, FrameType, decode_frame, encode_frame
from tinysplit.wire.frame import BROADCAST, MAX_PAYLOAD
from tinysplit.wire.payloads import CAP_ROCOIN, Chunk, make_frame

if TYPE_CHECKING:
    from tinysplit.firmware.devicelink import DeviceLink
    from tinysplit.modelsrc import ModelSources

log = logging.getLogger(__name__)

# (bundle, arrived (N, K) bool) -> the reference label of each sample, (N,)
Reference = Callable[[Path, np.ndarray], np.ndarray]
# (manifest, deadline in s, the server's metrics) -> an assembler (host_server.assemblers.Assembler)
AssemblerFactory = Callable[..., Any]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class FleetFirmware:
    """One build: a student for a board and transport, and the devices that run a copy of it."""

    board: str
    student: str
    transport: str
    config: RocoinAppConfig  # its built-in device id is its first device's
    elf: Path
    flash_bytes: int
    ram_bytes: int
    build_s: float
    devices: tuple[str, ...]


def parse_kill(text: str) -> tuple[str, int]:
    """'cam2@5' -> ('cam2', 5): the device's QEMU ends once sample 5 was answered (0: before sample 1)."""
    name, sep, sample = text.rpartition("@")
    if not sep or not name or not sample.isdigit():
        raise InputError(f"--kill takes ID@SAMPLE (a device id of the bundle and a sample number, e.g. cam2@5), "
                         f"got '{text}'")
    return name, int(sample)


def check_kills(kills: Mapping[str, int], layout: RocoinLayout, samples: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, s in kills.items():
        layout.by_name(name)
        if not 0 <= s <= samples:
            raise InputError(f"kill {name}@{s}: the sample must be in 0..{samples} (0: before the first sample)")
        out[name] = s
    return out


def _student_inputs(manifest: Manifest, layout: RocoinLayout) -> str:
    """Every student takes the same int8 input (it is broadcast): the first student's name, or
    ManifestError."""
    first = manifest.device_model(layout.groups[0].student).inputs[0]
    for g in layout.groups[1:]:
        t = manifest.device_model(g.student).inputs[0]
        if (t.shape, t.scale, t.zero_point) != (first.shape, first.scale, first.zero_point):
            raise ManifestError(f"device model '{g.student}' takes input {t.shape} (scale {t.scale}, zero point "
                                f"{t.zero_point}), '{layout.groups[0].student}' {first.shape} (scale {first.scale}, "
                                f"zero point {first.zero_point}): RoCoIn broadcasts one input to every student")
    return layout.groups[0].student


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def build_fleet(bundle: Path, manifest: Manifest, layout: RocoinLayout, workdir: Path, udp_port: int,
                sources: Mapping[str, "ModelSources"] | None = None,
                progress: Progress | None = None) -> list[FleetFirmware]:
    """One firmware per distinct (board, student, transport) of the bundle's devices."""
    from tinysplit.boards import get_board
    from tinysplit.firmware.build import build_project
    from tinysplit.firmware.generate import generate_sources
    from tinysplit.firmware.project import render_project

    keys: dict[tuple[str, str, str], list[RocoinDevice]] = {}
    for d in layout.devices:
        keys.setdefault((d.board, d.student, d.transport), []).append(d)
    generated: dict[str, Any] = dict(sources or {})
    out = []
    for (board, student, transport), devices in keys.items():
        t0 = time.perf_counter()
        get_board(board)
        if student not in generated:
            if sources is not None:
                raise InputError(f"no model sources given for '{student}'")
            generated[student] = generate_sources(bundle, manifest, workdir / "model" / _safe(student), student)
        cfg = config_from_manifest(manifest, device_id=devices[0].device_id, transport=transport,
                                   udp_port=udp_port, model=student)
        if progress:
            progress(f"building {student} for {board} ({transport}): {', '.join(d.id for d in devices)}")
        project = render_project(get_board(board), generated[student],
                                 workdir / "build" / _safe(f"{board}-{student}-{transport}"), app="rocoin",
                                 app_config=cfg)
        built = build_project(project.dir)
        out.append(FleetFirmware(board, student, transport, cfg, built.elf, built.flash_bytes, built.ram_bytes,
                                 round(time.perf_counter() - t0, 2), tuple(d.id for d in devices)))
    return out


@dataclass
class _Device:
    """One device during a run (mutable, this module's own)."""

    dev: RocoinDevice
    fw: FleetFirmware
    elf: Path
    kill_after: int | None
    link: "DeviceLink | None" = None
    alive: bool = True
    killed_after: int | None = None
    exit_code: int | None = None
    frames: int = 0
    bytes: int = 0
    parts: dict[int, set[int]] = field(default_factory=dict)  # seq -> part indices received
    sent: list[int] = field(default_factory=list)  # the seqs it was sent
    stats: dict[str, int] | None = None

    @property
    def config(self) -> RocoinAppConfig:
        return replace(self.fw.config, device_id=self.dev.device_id)

    def portions(self) -> set[int]:
        """The seqs for which its whole portion arrived."""
        need = portion_parts(self.fw.config.portion_bytes)
        return {s for s, p in self.parts.items() if len(p) == need}


def run_fleet(bundle: str | Path, samples: int = 10, kills: Mapping[str, int] | None = None,
              deadline_ms: float | None = None, *, manifest: Manifest | None = None, workdir: str | Path | None = None,
              sources: Mapping[str, "ModelSources"] | None = None, reference: Reference | None = None,
              assembler: AssemblerFactory | None = None, timeout: float = 30.0,
              progress: Progress | None = None) -> dict[str, Any]:
    """Build, provision and run the bundle's fleet on ``samples`` held-out inputs (see the module
    docstring); returns a JSON-ready report whose ``ok`` says whether every sample was answered with
    the reference's label for the partitions that arrived. ``timeout``: the longest wait for the
    devices' HELLOs, and for a sample's prediction beyond its deadline."""
    from tinysplit.firmware.devicelink import free_udp_port
    from tinysplit.manifest import load_manifest
    from tinysplit.reference import heldout, quantized_inputs

    bundle = Path(bundle)
    manifest = manifest or load_manifest(bundle)
    layout = layout_for(manifest)
    if samples < 1:
        raise InputError(f"--samples must be >= 1, got {samples}")
    if timeout <= 0:
        raise InputError(f"the timeout must be positive, got {timeout}")
    deadline_ms = layout.deadline_ms if deadline_ms is None else float(deadline_ms)
    if not deadline_ms > 0:
        raise InputError(f"--deadline-ms must be positive, got {deadline_ms}")
    kills = check_kills(kills or {}, layout, samples)
    student = _student_inputs(manifest, layout)
    reference = reference or _default_reference()  # before the builds: a missing reference fails at once
    x, _ = heldout(bundle, manifest)
    if samples > len(x):
        raise InputError(f"the bundle holds {len(x)} held-out samples, asked for {samples}")
    xq = quantized_inputs(manifest, x[:samples], student)

    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="tinysplit-fleet-")) if own_tmp else Path(workdir)
    try:
        work.mkdir(parents=True, exist_ok=True)
        udp_port = free_udp_port() if any(d.transport == "udp" for d in layout.devices) else 5600
        firmwares = build_fleet(bundle, manifest, layout, work, udp_port, sources, progress)
        by_key = {(f.board, f.student, f.transport): f for f in firmwares}
        devices = []
        for d in layout.devices:
            fw = by_key[(d.board, d.student, d.transport)]
            elf = provision(fw.elf, work / "devices" / f"{d.device_id}-{_safe(d.id)}.elf", fw.config, d.device_id)
            devices.append(_Device(d, fw, elf, kills.get(d.id)))
        run = asyncio.run(_drive(bundle, manifest, layout, devices, xq, deadline_ms / 1000, udp_port, assembler,
                                 timeout, progress))
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)

    labels, records = run["labels"], run["records"]
    arrived = np.zeros((samples, layout.partitions_total), dtype=bool)
    for i, r in enumerate(records):
        for k in (r or {}).get("partitions", []):
            arrived[i, int(k)] = True
    ref = np.asarray(reference(bundle, arrived)).reshape(-1)
    if ref.shape != (samples,):
        raise VerificationError(f"the reference gave {ref.shape[0]} labels for {samples} samples")
    equal = labels == ref
    report = _report(manifest, layout, firmwares, devices, records, labels, ref, arrived, deadline_ms, udp_port, run)
    report["labels_equal_reference"] = float(np.mean(equal))
    report["ok"] = bool(report["all_answered"] and equal.all())
    return report


def _default_reference() -> Reference:
    """The reference labels for the partitions that arrived (tinysplit.methods.rocoin.reference: every
    student with TFLite Micro, missing partitions zero-filled, the ONNX aggregator), imported here only."""
    from tinysplit.methods.rocoin.reference import labels_with_partitions

    def reference(bundle: Path, arrived: np.ndarray) -> np.ndarray:
        got = labels_with_partitions(bundle, arrived, n=len(arrived))
        return np.asarray(getattr(got, "labels", got))

    return reference


def _broadcast_frames(bundle_id: int, seq: int, x: np.ndarray) -> list[bytes]:
    data = np.asarray(x, dtype=np.int8).tobytes()
    parts = [data[i:i + MAX_PAYLOAD] for i in range(0, len(data), MAX_PAYLOAD)]
    return [encode_frame(make_frame(FrameType.INPUT, Chunk(p), BROADCAST, bundle_id, seq, i, len(parts)))
            for i, p in enumerate(parts)]


def _hello_problem(d: _Device) -> str | None:
    h, c = d.link.hello, d.fw.config
    want = (CAP_ROCOIN, c.input_bytes or h.input_bytes, c.portion_bytes, c.partitions_total, 0)
    got = (h.capabilities & CAP_ROCOIN, h.input_bytes, h.output_bytes, h.units_total, h.unit_bytes)
    if got != want:
        return (f"device {d.dev.id}: HELLO says (rocoin capability, input, output bytes, units, unit bytes) = {got}, "
                f"the bundle {want}")
    return None


class _Run:
    """The frames side of one run: the tap on every transport (portions per device) and the server's
    predictions by seq."""

    def __init__(self, devices: list[_Device]) -> None:
        from tinysplit.host_server.sinks import MemorySink

        self.by_wire = {d.dev.device_id: d for d in devices}
        self.sink = MemorySink()
        self.unknown = 0  # portions from a device id the bundle does not have
        self._records: dict[int, dict[str, Any]] = {}
        self._read = 0

    def tap(self, data: bytes, peer: Hashable) -> None:
        try:
            f = decode_frame(data)
        except DecodeError:
            return  # the server counts it
        if f.type != FrameType.ROCOIN_PORTION:
            return
        d = self.by_wire.get(f.device_id)
        if d is None:
            self.unknown += 1
            return
        d.frames += 1
        d.bytes += len(data)
        d.parts.setdefault(f.seq, set()).add(f.part_index)

    def record(self, seq: int) -> dict[str, Any] | None:
        """The server's prediction for ``seq``, once written."""
        for r in self.sink.records[self._read:]:
            self._records.setdefault(int(r["sample"]), r)
        self._read = len(self.sink.records)
        return self._records.get(seq)

    async def prediction(self, seq: int, limit: float) -> dict[str, Any] | None:
        end = time.monotonic() + limit
        while (r := self.record(seq)) is None and time.monotonic() < end:
            await asyncio.sleep(0.005)
        return r


async def _drive(bundle: Path, manifest: Manifest, layout: RocoinLayout, devices: list[_Device], xq: np.ndarray,
                 deadline_s: float, udp_port: int, assembler: AssemblerFactory | None, timeout: float,
                 progress: Progress | None) -> dict[str, Any]:
    from tinysplit.boards import get_board
    from tinysplit.firmware.devicelink import DeviceLink, TeeTransport
    from tinysplit.host_server.server import ServerConfig, TailServer
    from tinysplit.host_server.transports.udp import UdpTransport

    run = _Run(devices)
    bundle_id = int(manifest.bundle_id, 16)
    async with contextlib.AsyncExitStack() as stack:
        if progress:
            progress(f"starting {len(devices)} devices in QEMU")
        for d in devices:  # each QEMU starts now; they boot together
            d.link = await stack.enter_async_context(DeviceLink(get_board(d.dev.board), d.elf, d.config,
                                                                timeout=timeout))
        # the server reads every UART link and the one UDP socket, each tapped
        transports = [TeeTransport(d.link.transports[0], run.tap) for d in devices if d.dev.transport == "uart"]
        if any(d.dev.transport == "udp" for d in devices):
            transports.append(TeeTransport(UdpTransport(f"udp://127.0.0.1:{udp_port}"), run.tap))
        server = TailServer(ServerConfig(bundle, listen=[], deadline_s=deadline_s, send_results=False), run.sink,
                            manifest, transports=transports, assembler=assembler)
        await server.start()
        try:
            await asyncio.gather(*(d.link.attach() for d in devices))
            for d in devices:
                wrong = _hello_problem(d)
                if wrong:
                    raise VerificationError(wrong)
            records: list[dict[str, Any] | None] = []
            t0 = time.perf_counter()
            for s in range(1, len(xq) + 1):
                await _kill_or_notice(devices, s - 1, timeout)
                live = [d for d in devices if d.alive]
                frames = _broadcast_frames(bundle_id, s, xq[s - 1])
                await asyncio.gather(*(_send_all(d, frames, s) for d in live))
                records.append(await run.prediction(s, deadline_s + timeout if live else 0.0))
                if progress:
                    progress(_sample_line(s, records[-1], run.by_wire))
            seconds = time.perf_counter() - t0
            await _kill_or_notice(devices, len(xq), timeout)
            await _settle(devices, min(timeout, 2.0))
            live = [d for d in devices if d.alive]
            for d, st in zip(live, await asyncio.gather(*(_stats(d) for d in live))):
                d.stats = st
            server_report = server.report()  # before the exits close the UART links
            for d, code in zip(live, await asyncio.gather(*(_exit(d) for d in live))):
                d.exit_code = code
        finally:
            await server.stop()
    labels = np.array([int(r["label"]) if r is not None else -1 for r in records])
    return {"records": records, "labels": labels, "seconds": round(seconds, 3), "server": server_report,
            "unknown_device_frames": run.unknown}


async def _kill_or_notice(devices: list[_Device], after: int, limit: float) -> None:
    """Kill the devices due after sample ``after``, each once its own portions of the samples it was
    sent have arrived (at most ``limit`` s: a replica that lost the race may still be computing; the
    crash comes after its last answer, so the counts do not depend on the host's load); notice those
    that ended on their own."""
    for d in devices:
        if d.alive and d.kill_after == after:
            await _settle([d], limit)
            _kill(d, after)
        elif d.alive and d.link.proc is not None and d.link.proc.poll() is not None:
            d.alive, d.exit_code = False, d.link.proc.returncode


def _kill(d: _Device, after: int) -> None:
    proc = d.link.proc
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    d.alive, d.killed_after = False, after
    d.exit_code = proc.returncode if proc is not None else None


async def _send_all(d: _Device, frames: list[bytes], seq: int) -> None:
    for f in frames:
        await d.link.send(f)
    d.sent.append(seq)


async def _settle(devices: list[_Device], limit: float) -> None:
    """Let the live devices' last portions (replicas that lost the race) arrive, for the counts."""
    end = time.monotonic() + limit
    while time.monotonic() < end and any(d.alive and not set(d.sent) <= d.portions() for d in devices):
        await asyncio.sleep(0.01)


async def _stats(d: _Device) -> dict[str, int] | None:
    try:
        return await d.link.stats(timeout=5.0)
    except Exception as e:  # noqa: BLE001 -- a device that cannot answer is reported, not fatal
        log.info("device %s: no STATS (%s)", d.dev.id, e)
        return None


async def _exit(d: _Device) -> int | None:
    try:
        return await d.link.exit(0, timeout=5.0)
    except Exception as e:  # noqa: BLE001
        log.info("device %s: did not exit (%s)", d.dev.id, e)
        return None


def _names(answered_by: Mapping[str, Any], by_wire: Mapping[int, Any]) -> dict[int, str]:
    out = {}
    for k, wire in answered_by.items():
        d = by_wire.get(int(wire))
        out[int(k)] = d.dev.id if d is not None else str(wire)
    return dict(sorted(out.items()))


def _sample_line(s: int, r: dict[str, Any] | None, by_wire: Mapping[int, Any]) -> str:
    if r is None:
        return f"sample {s}: no prediction"
    names = _names(r.get("answered_by", {}), by_wire)
    missing = r.get("missing", [])
    return (f"sample {s}: label {r['label']}, partitions {_ks(r.get('partitions', []))}"
            + (f" (missing {_ks(missing)}, zero-filled at the deadline)" if missing else "")
            + f"; portions from {', '.join(names.values()) or 'nobody'}")


def _ks(ks: list[int]) -> str:
    return ",".join(str(k) for k in ks) or "none"


def _report(manifest: Manifest, layout: RocoinLayout, firmwares: list[FleetFirmware], devices: list[_Device],
            records: list[dict[str, Any] | None], labels: np.ndarray, ref: np.ndarray, arrived: np.ndarray,
            deadline_ms: float, udp_port: int, run: dict[str, Any]) -> dict[str, Any]:
    by_wire = {d.dev.device_id: d for d in devices}
    used: dict[str, int] = {d.dev.id: 0 for d in devices}
    per_sample = []
    for i, r in enumerate(records):
        s = i + 1
        names = _names((r or {}).get("answered_by", {}), by_wire)
        for name in names.values():
            if name in used:
                used[name] += 1
        per_sample.append({
            "sample": s, "label": int(labels[i]), "reference": int(ref[i]), "equal": bool(labels[i] == ref[i]),
            "answered": r is not None, "partitions": [int(k) for k in np.flatnonzero(arrived[i])],
            "missing": [int(k) for k in np.flatnonzero(~arrived[i])] if r is not None else list(range(arrived.shape[1])),
            "answered_by": {str(k): v for k, v in names.items()},
            "senders": [d.dev.id for d in devices if s in d.portions()],
            "by_deadline": bool(r is not None and not r.get("complete", True)),
            "latency_ms": r.get("latency_ms") if r is not None else None})
    answered = sum(r is not None for r in records)
    return {
        "method": "rocoin", "bundle": manifest.name, "bundle_id": manifest.bundle_id, "samples": len(records),
        "partitions_total": layout.partitions_total, "deadline_ms": deadline_ms,
        "udp_port": udp_port if any(d.dev.transport == "udp" for d in devices) else None,
        "firmware": [{"board": f.board, "student": f.student, "transport": f.transport, "partition": f.config.partition,
                      "flash_bytes": f.flash_bytes, "ram_bytes": f.ram_bytes, "build_s": f.build_s,
                      "devices": list(f.devices)} for f in firmwares],
        "groups": [{"partition": g.partition, "student": g.student, "portion_bytes": layout.portion_values[g.partition],
                    "devices": [d.id for d in g.devices], "arrivals": int(arrived[:, g.partition].sum())}
                   for g in layout.groups],
        "devices": [{"id": d.dev.id, "device_id": d.dev.device_id, "board": d.dev.board, "transport": d.dev.transport,
                     "partition": d.dev.partition, "student": d.dev.student, "killed": d.killed_after is not None,
                     "killed_after": d.killed_after, "exit_code": d.exit_code, "frames": d.frames, "bytes": d.bytes,
                     "samples_sent": len(d.sent), "portions": len(d.portions()), "used": used[d.dev.id],
                     "stats": d.stats} for d in devices],
        "per_sample": per_sample,
        "arrivals": [int(n) for n in arrived.sum(axis=0)],
        "answered": answered, "all_answered": answered == len(records),
        "by_deadline": sum(p["by_deadline"] for p in per_sample),
        "labels": labels.tolist(), "reference_labels": ref.tolist(),
        "seconds": run["seconds"], "unknown_device_frames": run["unknown_device_frames"],
        "server": run["server"],
    }


def format_fleet(r: dict[str, Any]) -> str:
    """The report as tables for people."""
    n, kk = r["samples"], r["partitions_total"]
    lines = [f"RoCoIn fleet: bundle {r['bundle']} ({r['bundle_id']}), K = {kk} partitions, {len(r['devices'])} devices, "
             f"{n} samples, deadline {r['deadline_ms']:g} ms", "",
             f"  {'firmware (board, student, transport)':48} {'flash B':>9} {'RAM B':>9} {'build s':>8}  devices"]
    for f in r["firmware"]:
        lines.append(f"  {f['board'] + ', ' + f['student'] + ', ' + f['transport']:48} {f['flash_bytes']:>9,} "
                     f"{f['ram_bytes']:>9,} {f['build_s']:>8.1f}  {', '.join(f['devices'])}")
    lines += ["", f"  {'partition':>9} {'student':16} {'n_k':>5} {'arrived':>9}  devices"]
    for g in r["groups"]:
        lines.append(f"  {g['partition']:>9} {g['student']:16} {g['portion_bytes']:>5} {g['arrivals']:>4}/{n:<4}  "
                     f"{', '.join(g['devices'])}")
    lines += ["", f"  {'device':16} {'wire':>5} {'board':20} {'link':5} {'part':>4} {'frames':>7} {'portions':>9} "
                  f"{'used':>5}  state"]
    for d in r["devices"]:
        state = ("killed before sample 1" if d["killed_after"] == 0
                 else f"killed after sample {d['killed_after']}" if d["killed"]
                 else "alive" if d["exit_code"] == 0 else f"ended (status {d['exit_code']})")
        lines.append(f"  {d['id']:16} {d['device_id']:>5} {d['board']:20} {d['transport']:5} {d['partition']:>4} "
                     f"{d['frames']:>7} {d['portions']:>4}/{d['samples_sent']:<4} {d['used']:>5}  {state}")
    lines += ["", f"  {'sample':>6} {'label':>5} {'ref':>5}  {'partitions':12} portions used (partition:device)"]
    for p in r["per_sample"]:
        if not p["answered"]:
            lines.append(f"  {p['sample']:>6} {'-':>5} {p['reference']:>5}  {'none':12} no prediction")
            continue
        mark = "" if p["equal"] else "  <- differs from the reference"
        dl = " (deadline)" if p["by_deadline"] else ""
        lines.append(f"  {p['sample']:>6} {p['label']:>5} {p['reference']:>5}  {_ks(p['partitions']):12} "
                     f"{', '.join(f'{k}:{v}' for k, v in p['answered_by'].items())}{dl}{mark}")
    eq = round(r["labels_equal_reference"] * n)
    lines += ["", f"samples answered {r['answered']}/{n}; labels equal to the reference for the partitions that "
                  f"arrived {eq}/{n} ({100 * r['labels_equal_reference']:.1f}%); completed at the deadline "
                  f"{r['by_deadline']}; per-partition arrivals {r['arrivals']}",
              "ok" if r["ok"] else "NOT ok: " + ("some samples got no prediction" if not r["all_answered"]
                                                   else "some labels differ from the reference")]
    return "\n".join(lines)
