"""The rocoin device app and the fleet runner: the app's ROCOIN_PORTION frames from the C firmware in
QEMU, byte-identical with the contract's rendering (written out here with tinysplit.wire), under a
device id given to a copy of the ELF (provisioning); its configuration from method_data.rocoin and
the checks at render time; and a fleet of six QEMU devices on two board kinds and both transports,
with devices killed mid-run, every sample still answered and every label equal to the reference for
the partitions that arrived.

The students are fake models (tests/firmware_support.py: the output is a known function of the
input); the host assembler and the reference are small fakes of the contract's
(host_server/assemblers/rocoin.py, tinysplit.methods.rocoin.reference), the tail a linear ONNX
aggregator written here."""

from __future__ import annotations

import asyncio
import atexit
import math
import shutil
import tempfile
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from firmware_support import fake_expected, write_fake_model
from tinysplit.boards import get_board
from tinysplit.errors import InputError, ManifestError
from tinysplit.firmware.apps import get_app
from tinysplit.firmware.apps.rocoin import (PORTION_CHUNK, RocoinAppConfig, config_from_manifest, layout_for,
                                            provision)
from tinysplit.firmware.devicelink import DeviceLink, free_udp_port
from tinysplit.firmware.fleet import format_fleet, parse_kill, run_fleet
from tinysplit.firmware.project import render_project
from tinysplit.firmware.provision import find_object
from tinysplit.host_server.assemblers import Completed
from tinysplit.manifest import DeviceModel, FTensor, HostTail, InputSpec, Manifest, QTensor
from tinysplit.quant import dequantize
from tinysplit.wire import DecodeError, FrameType, encode_frame
from tinysplit.wire.frame import BROADCAST, MAX_PAYLOAD
from tinysplit.wire.payloads import CAP_ROCOIN, CAP_UDP, Chunk, RocoinPortion, decode_payload, make_frame

IN = 100  # the students' input: 10 x 10 x 1 int8
BUNDLE = 0x5EED0C01
IN_SCALE, OUT_SCALE, OUT_ZP = 0.5, 0.05, -3
_ROOT = Path(tempfile.mkdtemp(prefix="tinysplit-rocointest-"))
atexit.register(shutil.rmtree, _ROOT, True)


def expected_frames(x: np.ndarray, n: int, k: int, kk: int, device_id: int, seq: int) -> list[bytes]:
    """The contract's frames for one input: the fake student's n int8 features as ROCOIN_PORTION frames
    (u16 k, u16 K, a chunk of MAX_PAYLOAD - 4 bytes), part 0.. of ceil(n / chunk)."""
    out = fake_expected(x, n).tobytes()
    chunk = MAX_PAYLOAD - 4
    parts = [out[i:i + chunk] for i in range(0, n, chunk)]
    return [encode_frame(make_frame(FrameType.ROCOIN_PORTION, RocoinPortion(k, kk, p), device_id, BUNDLE, seq, i,
                                    len(parts))) for i, p in enumerate(parts)]


def broadcast_input(seq: int, x: np.ndarray, device_id: int = BROADCAST, chunk: int = MAX_PAYLOAD) -> list[bytes]:
    data = x.astype(np.int8).tobytes()
    parts = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    return [encode_frame(make_frame(FrameType.INPUT, Chunk(p), device_id, BUNDLE, seq, i, len(parts)))
            for i, p in enumerate(parts)]


def _run(coro, limit: float = 90):
    return asyncio.run(asyncio.wait_for(coro, limit))


# --- a hand-made rocoin manifest (the contract's method_data.rocoin) --------------------------------------

def make_manifest(groups: list[tuple[str, int, list[tuple[str, int, str, str]]]], deadline_ms: float = 1000.0,
                  **rocoin) -> Manifest:
    """groups: (student, n_k, [(fleet id, wire id, board, transport)]) in partition order."""
    dms = tuple(DeviceModel(s, f"{s}.tflite", "0" * 64, "features", (QTensor("x", (1, 10, 10, 1), "int8", IN_SCALE, 0),),
                            (QTensor("y", (1, 1, 1, n), "int8", OUT_SCALE, OUT_ZP),), ("CONV_2D",), 1000, 1000)
                for s, n, _ in groups)
    tail = HostTail("aggregator", "aggregator.onnx", "0" * 64, tuple(s for s, _, _ in groups),
                    tuple(FTensor(s, (1, 1, 1, n), "float32") for s, n, _ in groups),
                    (FTensor("logits", (1, 10), "float32"),))
    data = {"partitions": [list(range(sum(n for _, n, _ in groups[:k]), sum(n for _, n, _ in groups[:k + 1])))
                           for k in range(len(groups))],
            "portion_values": [n for _, n, _ in groups], "teacher_filters": sum(n for _, n, _ in groups),
            "deadline_ms": deadline_ms,
            "groups": [{"partition": k, "student": s, "arch": "fake",
                        "devices": [{"id": i, "device_id": w, "board": b, "transport": t} for i, w, b, t in devs]}
                       for k, (s, _, devs) in enumerate(groups)],
            **rocoin}
    return Manifest("rocoin_fake", f"{BUNDLE:08x}", "rocoin", InputSpec((1, 1, 10, 10), heldout_file="heldout.npz"),
                    tuple(f"c{i}" for i in range(10)), dms, (tail,), {"rocoin": data})


MPS2, RV = "qemu-mps2-an386", "qemu-riscv32-virt"
GROUPS = [("student_0", 30, [("cam1", 1, MPS2, "uart"), ("cam2", 2, MPS2, "udp")]),
          ("student_1", 1100, [("door", 5, RV, "uart")]),
          ("student_2", 16, [("hall", 9, RV, "uart"), ("gate", 4, MPS2, "uart")])]


def test_config_from_manifest_finds_the_device_group():
    m = make_manifest(GROUPS)
    cfg = config_from_manifest(m, device_id=9)
    assert (cfg.bundle_id, cfg.device_id, cfg.partition, cfg.partitions_total, cfg.portion_bytes, cfg.transport,
            cfg.student, cfg.input_bytes) == (BUNDLE, 9, 2, 3, 16, "uart", "student_2", IN)
    assert config_from_manifest(m, device_id=2).transport == "udp"  # the bundle's transport for the device
    assert config_from_manifest(m, device_id=2, transport="uart", udp_port=6001).transport == "uart"
    assert config_from_manifest(m, device_id=5).parts == 2  # 1100 bytes: 1020 + 80
    # without a device id: the first device of the model's group (tinysplit firmware --app rocoin --model ...)
    assert config_from_manifest(m, model="student_2").device_id == 9
    assert config_from_manifest(m).device_id == 1
    assert get_app("rocoin").config_from_manifest(m, model="student_1").device_id == 5
    with pytest.raises(InputError, match=r"no device with wire id 77; its devices: cam1 \(1\), cam2 \(2\), door \(5\)"):
        config_from_manifest(m, device_id=77)
    with pytest.raises(InputError, match="runs 'student_2' \\(partition 2\\), not 'student_0'"):
        config_from_manifest(m, device_id=9, model="student_0")
    with pytest.raises(InputError, match="no group of the bundle runs 'student_9'"):
        config_from_manifest(m, model="student_9")
    lay = layout_for(m)
    assert [len(g.devices) for g in lay.groups] == [2, 1, 2] and lay.deadline_ms == 1000.0
    assert lay.by_name("gate").device_id == 4
    with pytest.raises(InputError, match="no device 'attic'"):
        lay.by_name("attic")


def test_layout_errors_name_the_field():
    def bad(match: str, groups=GROUPS, **rocoin):
        with pytest.raises(ManifestError, match=match):
            layout_for(make_manifest(groups, **rocoin))

    bad(r"3 groups for K = 4", portion_values=[30, 1100, 16, 8])  # wrong K
    bad(r"portion_values\[1\]': 1101, but student 'student_1' has 1100", portion_values=[30, 1101, 16])
    bad(r"groups\[2\].devices\[1\].device_id': 5 is also device 'door'",
        groups=[*GROUPS[:2], ("student_2", 16, [("hall", 9, RV, "uart"), ("gate", 5, MPS2, "uart")])])
    bad(r"groups\[0\].devices\[0\].device_id': 65535 is not in 1..65534",
        groups=[("student_0", 30, [("cam1", 0xFFFF, MPS2, "uart")])])
    bad(r"groups\[0\].devices\[0\].transport': 'ble'", groups=[("student_0", 30, [("cam1", 1, MPS2, "ble")])])
    bad(r"deadline_ms': must be > 0", deadline_ms=0)
    bad(r"groups\[0\].devices\[0\].device_id': expected an integer, got '1'",
        groups=[("student_0", 30, [("cam1", "1", MPS2, "uart")])])
    m = make_manifest(GROUPS)
    data = m.method_data["rocoin"]
    with pytest.raises(ManifestError, match=r"groups\[1\].partition': 0 is not a partition"):
        layout_for(replace(m, method_data={"rocoin": {**data, "groups": [data["groups"][0], data["groups"][0],
                                                                          data["groups"][2]]}}))
    with pytest.raises(ManifestError, match="no device model named 'student_7'"):
        layout_for(replace(m, method_data={"rocoin": {**data, "groups": [{**data["groups"][0], "student": "student_7"},
                                                                          *data["groups"][1:]]}}))
    with pytest.raises(ManifestError, match=r"groups\[0\].devices' is missing"):
        layout_for(replace(m, method_data={"rocoin": {**data, "groups": [{"partition": 0, "student": "student_0"},
                                                                          *data["groups"][1:]]}}))
    with pytest.raises(ManifestError, match="method_data.rocoin"):
        layout_for(replace(m, method="nair", method_data={}))


# --- rendering (no emulator) --------------------------------------------------------------------------------

def _cfg(transport: str = "uart", port: int = 5600, **kw) -> RocoinAppConfig:
    return RocoinAppConfig(**{"bundle_id": BUNDLE, "device_id": 3, "partition": 1, "partitions_total": 3,
                              "portion_bytes": 30, "transport": transport, "udp_port": port, "input_bytes": IN, **kw})


@lru_cache(maxsize=None)
def _model(n: int):
    return write_fake_model(_ROOT / f"model{n}", prefix=f"student_n{n}", in_bytes=IN, out_bytes=n,
                            arena_bytes=IN + n)


def test_render_checks_the_config(tmp_path: Path):
    m, board = _model(30), get_board(MPS2)
    cases = [(None, "needs its configuration"),
             (_cfg(portion_bytes=31), r"partition 1 has 31 values \(portion_values\[1\]\), but the student "
                                      "'student_n30' has 30 output bytes"),
             (_cfg(partition=3), r"partition 3 is not in 0..2 \(K = 3\)"),
             (_cfg(partitions_total=0, partition=0), "K = 0 partitions"),
             (_cfg(device_id=0), "device id 0 is not in 1..65534"),
             (_cfg(input_bytes=99), "takes 99 input bytes, the model 'student_n30' 100"),
             (_cfg(board_name="\u00e9"), "must be ASCII")]
    for i, (cfg, match) in enumerate(cases):
        with pytest.raises(InputError, match=match):
            render_project(board, m, tmp_path / str(i), app="rocoin", app_config=cfg)
    with pytest.raises(InputError, match="cannot send over udp"):
        render_project(get_board(RV), m, tmp_path / "rv", app="rocoin", app_config=_cfg("udp"))
    p = render_project(board, m, tmp_path / "ok", app="rocoin", app_config=_cfg("udp", 6002))
    main = (p.dir / "src" / "main.c").read_text()
    assert main.startswith("/* generated by tinysplit")
    for line in ("#define ROCOIN_BUNDLE_ID 0x5EED0C01u", "#define ROCOIN_DEVICE_ID 3u", "#define ROCOIN_PARTITION 1u",
                 "#define ROCOIN_PARTITIONS 3u", "#define ROCOIN_PORTION_BYTES 30u", "#define ROCOIN_UDP 1",
                 ".capabilities = TS_CAP_ROCOIN,", "const volatile rocoin_provision_t rocoin_provision = {",
                 '"TSRCPV1"', "ts_device_run(&cfg, &app);"):
        assert line in main, line
    assert "#define NET_DST_PORT 6002u" in (p.dir / "src" / "net.c").read_text()


# --- in QEMU: the app's frames ----------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _built(board: str, transport: str, n: int, k: int, kk: int):
    from tinysplit.firmware.build import build_project

    cfg = _cfg(transport, free_udp_port() if transport == "udp" else 5600, partition=k, partitions_total=kk,
               portion_bytes=n)
    project = render_project(get_board(board), _model(n), _ROOT / f"{board}-{transport}-{n}", app="rocoin",
                             app_config=cfg)
    return cfg, build_project(project.dir)


@pytest.mark.emulator
@pytest.mark.parametrize("board,transport,n,k,kk", [
    (MPS2, "uart", 2100, 2, 5),  # three frames: 1020 + 1020 + 60
    (MPS2, "udp", PORTION_CHUNK + 1, 0, 1),  # two frames: 1020 + 1
    (RV, "uart", PORTION_CHUNK, 1, 2),  # exactly one full frame
])
def test_portion_frames_byte_identical(board: str, transport: str, n: int, k: int, kk: int, tmp_path: Path):
    cfg, built = _built(board, transport, n, k, kk)
    assert find_object(built.elf, "rocoin_provision").size == 16
    dev = 41  # not the built-in id (3): the copy's provisioning record says 41
    elf = provision(built.elf, tmp_path / "dev41.elf", cfg, dev)
    assert elf.read_bytes() != built.elf.read_bytes() and len(elf.read_bytes()) == len(built.elf.read_bytes())
    rng = np.random.default_rng(n)

    async def main():
        async with DeviceLink(get_board(board), elf, replace(cfg, device_id=dev)) as link:
            await link.attach(serve=True)
            if transport == "udp":
                await link.until(lambda: link.hello_seen == 2, "the HELLO by UDP")  # UART and UDP
            h = link.hello
            assert (h.capabilities, h.input_bytes, h.output_bytes, h.units_total, h.unit_bytes) == \
                (CAP_ROCOIN | (CAP_UDP if transport == "udp" else 0), IN, n, kk, 0)
            sent = 0
            for seq in range(1, 6):
                x = rng.integers(-128, 128, IN, dtype=np.int8)
                # the host's broadcast (in chunks of 33 bytes for seq 2), or INPUT to the device's own id
                for f in broadcast_input(seq, x, dev if seq == 3 else BROADCAST, 33 if seq == 2 else MAX_PAYLOAD):
                    await link.send(f)
                got = await link.wait_frames(seq)
                assert got == expected_frames(x, n, k, kk, dev, seq), f"seq {seq}"
                assert len(got) == math.ceil(n / PORTION_CHUNK)
                sent += len(got)
            # INPUT for the built-in id (another device now) is not this device's: no portion
            for f in broadcast_input(6, rng.integers(-128, 128, IN, dtype=np.int8), 3):
                await link.send(f)
            x = rng.integers(-128, 128, IN, dtype=np.int8)
            for f in broadcast_input(7, x):
                await link.send(f)
            assert await link.wait_frames(7) == expected_frames(x, n, k, kk, dev, 7)
            sent += len(expected_frames(x, n, k, kk, dev, 7))
            assert 6 not in link.samples
            stats = await link.stats()
            assert stats["drops"] == 0 and stats["last_error"] == 0 and stats["instructions"] > 0
            assert stats["received"] == 5 + math.ceil(IN / 33) + 1  # INPUT frames for it, this STATS request
            hellos = 2 if transport == "udp" else 1
            assert stats["sent"] == hellos + sent + 1  # HELLO(s), the portions, this STATS reply
            assert link.counters.other_device == 0 and link.counters.undecodable == 0
            assert await link.exit(0) == 0

    _run(main())


def test_provision_refuses_other_firmware(tmp_path: Path):
    """No emulator: the build of the UART case above, patched with the wrong partition / a missing symbol."""
    from tinysplit.firmware.provision import patch_symbol

    cfg, built = _built(RV, "uart", PORTION_CHUNK, 1, 2)
    with pytest.raises(InputError, match="not a rocoin firmware for partition 0 of 2"):
        provision(built.elf, tmp_path / "a.elf", replace(cfg, partition=0), 5)
    with pytest.raises(InputError, match="device id 65535 is not in 1..65534"):
        provision(built.elf, tmp_path / "b.elf", cfg, 0xFFFF)
    with pytest.raises(InputError, match="has no object 'nair_provision'"):
        patch_symbol(built.elf, tmp_path / "c.elf", "nair_provision", 16, lambda b: b)
    with pytest.raises(InputError, match="is 16 bytes, expected 8"):
        patch_symbol(built.elf, tmp_path / "d.elf", "rocoin_provision", 8, lambda b: b)
    (tmp_path / "e.elf").write_bytes(b"not an elf")
    with pytest.raises(InputError, match="not a 32-bit little-endian ELF"):
        provision(tmp_path / "e.elf", tmp_path / "f.elf", cfg, 5)
    assert not (tmp_path / "a.elf").exists()


# --- the fleet ------------------------------------------------------------------------------------------
# Three partitions on six devices, two board kinds, both transports. cam1 and cam2 run one build
# (mps2, student_0, uart) in two provisioned copies; student_1's portion takes two frames.

FLEET = [("student_0", 24, [("cam1", 11, MPS2, "uart"), ("cam2", 12, MPS2, "uart"), ("porch", 13, RV, "uart")]),
         ("student_1", 1100, [("door", 21, MPS2, "udp"), ("shed", 22, RV, "uart")]),
         ("student_2", 16, [("gate", 31, MPS2, "uart")])]
FLEET_SAMPLES = 7
CLASSES = 10


def write_fleet_bundle(out: Path, groups=FLEET, samples: int = FLEET_SAMPLES) -> Path:
    """The bundle's files the fleet reads besides the manifest: held-out inputs and the ONNX aggregator
    (portions concatenated in partition order, one linear layer)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    np.savez(out / "heldout.npz", x=rng.uniform(-60, 60, (samples, 1, 10, 10)).astype(np.float32),
             y=rng.integers(0, CLASSES, samples))
    total = sum(n for _, n, _ in groups)
    nodes, inits = [], [numpy_helper.from_array(rng.normal(size=(total, CLASSES)).astype(np.float32), "w")]
    for s, n, _ in groups:
        inits.append(numpy_helper.from_array(np.array([-1, n], np.int64), f"{s}_shape"))
        nodes.append(helper.make_node("Reshape", [s, f"{s}_shape"], [f"{s}_flat"]))
    nodes += [helper.make_node("Concat", [f"{s}_flat" for s, _, _ in groups], ["cat"], axis=1),
              helper.make_node("MatMul", ["cat", "w"], ["logits"])]
    graph = helper.make_graph(nodes, "aggregator",
                              [helper.make_tensor_value_info(s, TensorProto.FLOAT, ["N", 1, 1, n]) for s, n, _ in groups],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, out / "aggregator.onnx")
    return out


class FakeRocoinAssembler:
    """The contract's host assembler, reduced to what the fleet needs: samples keyed by seq; the first
    complete portion per partition wins; complete with all K, or at t_first + deadline with the missing
    partitions zero-filled (0.0) for the 'aggregator' tail."""

    frame_types = (FrameType.ROCOIN_PORTION,)
    tails = ("aggregator",)

    def __init__(self, manifest: Manifest, deadline_s: float, metrics) -> None:
        lay = layout_for(manifest)
        self.sizes = lay.portion_values
        self.quant = [(manifest.device_model(g.student).outputs[0].scale,
                       manifest.device_model(g.student).outputs[0].zero_point) for g in lay.groups]
        self.deadline_s, self.metrics = deadline_s, metrics
        self._open: dict[int, dict] = {}
        self._done: set[int] = set()

    @property
    def pending(self) -> int:
        return len(self._open)

    def add(self, frame, now: float) -> list[Completed]:
        p = decode_payload(frame)
        if p.partitions_total != len(self.sizes):
            raise DecodeError("payload", f"K {p.partitions_total}")
        if frame.seq in self._done:
            self.metrics.inc("late_portions")
            return []
        s = self._open.setdefault(frame.seq, {"t": now, "won": {}, "chunks": {}})
        chunks = s["chunks"].setdefault((p.partition, frame.device_id), {})
        chunks[frame.part_index] = p.data
        if len(chunks) < frame.part_count:
            return []
        data = b"".join(chunks[i] for i in range(frame.part_count))
        if len(data) != self.sizes[p.partition]:
            raise DecodeError("payload", f"{len(data)} bytes")
        if p.partition in s["won"]:
            self.metrics.inc("replica_portions")
            return []
        s["won"][p.partition] = (frame.device_id, np.frombuffer(data, np.int8))
        self.metrics.inc("portions")
        return [self._complete(frame.seq, False)] if len(s["won"]) == len(self.sizes) else []

    def expire(self, now: float) -> list[Completed]:
        return [self._complete(q, True) for q, s in list(self._open.items()) if now >= s["t"] + self.deadline_s]

    def flush(self, now: float) -> list[Completed]:
        return [self._complete(q, True) for q in list(self._open)]

    def _complete(self, seq: int, by_deadline: bool) -> Completed:
        s = self._open.pop(seq)
        self._done.add(seq)
        won = s["won"]
        kk = len(self.sizes)
        return Completed(next(iter(won.values()))[0], seq, "aggregator",
                         tuple(won[k][1] if k in won else np.zeros(0, np.int8) for k in range(kk)), s["t"], by_deadline,
                         len(won), {"partitions": sorted(won), "missing": [k for k in range(kk) if k not in won],
                                    "answered_by": {str(k): won[k][0] for k in sorted(won)}})

    def tail_inputs(self, tail: str, items: list[Completed]) -> list[np.ndarray]:
        out = []
        for k, n in enumerate(self.sizes):
            a = np.zeros((len(items), 1, 1, n), np.float32)
            for i, c in enumerate(items):
                if c.inputs[k].size:
                    a[i, 0, 0] = dequantize(c.inputs[k], *self.quant[k])
            out.append(a)
        return out


def fake_reference(manifest: Manifest):
    """The contract's reference for fake students: each student's output on the held-out inputs,
    dequantized, 0.0 where a partition did not arrive, the ONNX aggregator -> labels."""
    import onnxruntime as ort

    from tinysplit.reference import heldout, quantized_inputs

    lay = layout_for(manifest)

    def reference(bundle: Path, arrived: np.ndarray) -> np.ndarray:
        n = len(arrived)
        xq = quantized_inputs(manifest, heldout(bundle, manifest)[0][:n]).reshape(n, -1)
        feats = []
        for g in lay.groups:
            n_k = lay.portion_values[g.partition]
            a = np.zeros((n, 1, 1, n_k), np.float32)
            for i in range(n):
                if arrived[i, g.partition]:
                    a[i, 0, 0] = dequantize(fake_expected(xq[i], n_k), OUT_SCALE, OUT_ZP)
            feats.append(a)
        sess = ort.InferenceSession(str(bundle / "aggregator.onnx"), providers=["CPUExecutionProvider"])
        return sess.run(None, {g.student: f for g, f in zip(lay.groups, feats)})[0].argmax(1)

    return reference


def _fleet_sources(groups=FLEET):
    return {s: write_fake_model(_ROOT / "fleet" / s, prefix=s, in_bytes=IN, out_bytes=n, arena_bytes=IN + n)
            for s, n, _ in groups}


def test_fleet_checks_its_inputs_before_building(tmp_path: Path):
    m = make_manifest(FLEET)
    bundle = write_fleet_bundle(tmp_path / "bundle")
    kw = {"manifest": m, "sources": {}, "reference": fake_reference(m), "assembler": FakeRocoinAssembler,
          "workdir": tmp_path / "work"}
    for args, match in [((3, {"attic": 1}), "no device 'attic'"),
                        ((3, {"cam1": 4}), r"kill cam1@4: the sample must be in 0..3"),
                        ((FLEET_SAMPLES + 1,), f"holds {FLEET_SAMPLES} held-out samples, asked for {FLEET_SAMPLES + 1}"),
                        ((0,), "--samples must be >= 1"),
                        ((3, {}, -5.0), "--deadline-ms must be positive")]:
        with pytest.raises(InputError, match=match):
            run_fleet(bundle, *args, **kw)
    other = replace(m, device_models=(m.device_models[0], replace(m.device_models[1], inputs=(
        QTensor("x", (1, 10, 10, 1), "int8", 0.25, 0),)), m.device_models[2]))
    with pytest.raises(ManifestError, match="RoCoIn broadcasts one input to every student"):
        run_fleet(bundle, 3, **{**kw, "manifest": other})
    assert not (tmp_path / "work" / "build").exists()
    assert parse_kill("cam1@0") == ("cam1", 0) and parse_kill("a@b@12") == ("a@b", 12)
    for bad in ("cam1", "@3", "cam1@", "cam1@-1", "cam1@x"):
        with pytest.raises(InputError, match="ID@SAMPLE"):
            parse_kill(bad)


@pytest.mark.emulator
def test_fleet_answers_every_sample_while_devices_are_killed(tmp_path: Path):
    # the deadline only has to outlast a live device's answer on a loaded machine; two samples wait it out
    m = make_manifest(FLEET, deadline_ms=4000)
    bundle = write_fleet_bundle(tmp_path / "bundle")
    lines: list[str] = []
    # cam2 dies before the first sample, cam1 after sample 2 (porch still runs student_0), door (UDP)
    # after 3 (shed runs student_1), gate after 5: partition 2 then has no device left
    kills = {"cam2": 0, "cam1": 2, "door": 3, "gate": 5}
    r = run_fleet(bundle, FLEET_SAMPLES, kills, manifest=m, sources=_fleet_sources(), reference=fake_reference(m),
                  assembler=FakeRocoinAssembler, workdir=tmp_path / "work", timeout=20.0, progress=lines.append)
    assert r["all_answered"] and r["answered"] == FLEET_SAMPLES
    assert r["labels_equal_reference"] == 1.0 and r["ok"], r["per_sample"]
    # one build per (board, student, transport): cam1 and cam2 share theirs
    assert sorted((f["board"], f["student"], f["transport"], tuple(f["devices"])) for f in r["firmware"]) == [
        (MPS2, "student_0", "uart", ("cam1", "cam2")), (MPS2, "student_1", "udp", ("door",)),
        (MPS2, "student_2", "uart", ("gate",)), (RV, "student_0", "uart", ("porch",)),
        (RV, "student_1", "uart", ("shed",))]
    assert len(list((tmp_path / "work" / "devices").glob("*.elf"))) == 6
    dev = {d["id"]: d for d in r["devices"]}
    assert {n: (d["killed"], d["killed_after"], d["samples_sent"]) for n, d in dev.items()} == {
        "cam1": (True, 2, 2), "cam2": (True, 0, 0), "porch": (False, None, 7),
        "door": (True, 3, 3), "shed": (False, None, 7), "gate": (True, 5, 5)}
    # a device is killed once its last sample was answered and its own portions of what it was sent
    # arrived (a replica that lost the race may lag): every device's portions are what it was sent
    for n, d in dev.items():
        assert d["portions"] == d["samples_sent"], (n, d)
    assert dev["shed"]["frames"] == 7 * 2 and dev["porch"]["frames"] == 7 and dev["door"]["frames"] in (4, 5, 6)
    assert dev["porch"]["exit_code"] == 0 and dev["shed"]["exit_code"] == 0 and dev["cam1"]["exit_code"] == -9
    assert dev["porch"]["stats"]["drops"] == 0 and dev["cam1"]["stats"] is None
    ps = r["per_sample"]
    for p in ps:
        full = p["sample"] <= 5
        assert p["answered"] and p["partitions"] == ([0, 1, 2] if full else [0, 1]), p
        assert p["missing"] == ([] if full else [2]) and p["by_deadline"] is (not full)
        assert p["answered_by"]["0"] in {"cam1", "porch"} and p["answered_by"]["1"] in {"door", "shed"}
        assert full is ("2" in p["answered_by"])
    assert [p["answered_by"]["0"] for p in ps[2:]] == ["porch"] * 5  # cam1 and cam2 are gone
    assert [p["answered_by"]["1"] for p in ps[3:]] == ["shed"] * 4
    assert {p["sample"]: p["senders"] for p in ps}[6] == ["porch", "shed"]
    assert r["arrivals"] == [7, 7, 5] and [g["arrivals"] for g in r["groups"]] == [7, 7, 5]
    assert r["unknown_device_frames"] == 0 and r["server"]["drops"] == {}
    assert r["server"]["counters"]["predictions"] == FLEET_SAMPLES
    text = format_fleet(r)
    assert "killed after sample 2" in text and "samples answered 7/7" in text and text.endswith("ok")
    assert any("missing 2" in line for line in lines) and sum(line.startswith("sample ") for line in lines) == 7


# --- the CLI verb and hil --e2e ---------------------------------------------------------------------------

def test_rocoin_fleet_verb(tmp_path: Path, capsys):
    from tinysplit import cli
    from tinysplit.firmware.apps.rocoin import e2e_from_args
    from tinysplit.methods.rocoin.fleet_command import COMMANDS, parse_kills

    assert cli.COMMANDS["rocoin-fleet"] == COMMANDS["rocoin-fleet"]
    args = cli.build_parser().parse_args(["rocoin-fleet", "b", "--samples", "4", "--kill", "cam1@2", "gate@0",
                                          "--kill", "door@3", "--deadline-ms", "250", "--json"])
    assert (args.bundle, args.samples, args.deadline_ms, args.json) == ("b", 4, 250.0, True)
    assert parse_kills(args.kill) == {"cam1": 2, "gate": 0, "door": 3}
    with pytest.raises(InputError, match="names device 'cam1' twice"):
        parse_kills(["cam1@2", "cam1@3"])
    assert cli.main(["rocoin-fleet", str(tmp_path / "nope"), "--samples", "2", "-q"]) == 2
    assert "tinysplit: error:" in capsys.readouterr().err
    assert cli.main(["rocoin-fleet", str(tmp_path), "--kill", "cam1", "-q"]) == 2
    assert "ID@SAMPLE" in capsys.readouterr().err
    with pytest.raises(InputError, match="tinysplit rocoin-fleet b --samples 3"):
        e2e_from_args(Path("b"), MPS2, 3, "uart", args)


@pytest.mark.slow
@pytest.mark.emulator
def test_a_trained_bundle_on_six_devices_survives_killed_devices(rocoin_bundle, tmp_path):
    """Issue 12's HIL: the distilled digits students of the shipped 6-device fleet (3 groups of 2 on
    three board kinds, UART and UDP), the real assembler and the reference pipeline. With every device
    up the labels are the reference's; then whole groups die mid-run: every sample is still answered
    by its deadline, with the reference's label for exactly the partitions that arrived."""
    from tinysplit.firmware.fleet import run_fleet
    from tinysplit.manifest import load_manifest
    from tinysplit.methods.rocoin.bundle import plan_for

    plan = plan_for(load_manifest(rocoin_bundle))
    groups: dict[int, list[str]] = {}
    for d in plan.devices:
        groups.setdefault(d.partition, []).append(d.id)
    assert len(groups) == 3 and all(len(ids) == 2 for ids in groups.values())
    assert len({d.board for d in plan.devices}) >= 2
    # one of each pair dies early (its replica answers), then the whole first group, then one more
    first, second = groups[0], groups[1]
    kills = {first[0]: 3, second[1]: 4, first[1]: 6}
    # a deadline that outlasts a live device's answer on a loaded machine (the bundle suggests 200 ms)
    r = run_fleet(rocoin_bundle, samples=12, kills=kills, deadline_ms=2500, workdir=tmp_path)
    assert r["ok"] and r["all_answered"] and r["labels_equal_reference"] == 1.0
    assert r["server"]["drops"] == {} or not any(r["server"]["drops"].values())
    per = r["per_sample"]
    for p in per[:6]:  # samples 1..6: every partition arrived (a replica stood in after each kill)
        assert p["partitions"] == [0, 1, 2] and not p["by_deadline"]
    for p in per[6:]:  # samples 7..12: partition 0's group is gone, zero-filled at the deadline
        assert p["missing"] == [0] and p["by_deadline"]
    assert r["arrivals"] == [6, 12, 12]
    killed = {d["id"]: d["killed_after"] for d in r["devices"] if d["killed"]}
    assert killed == kills
