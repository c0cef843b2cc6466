"""Authenticated frames end to end in QEMU: the NAIR app built with a device key (render_project
device_key: -DTS_AUTH, ts_auth.c, the key file), its boot nonce loaded by QEMU, the in-process
server with the key. While the real device streams the digits samples, an attacker attacks both
directions:

- host -> device, over the device's UART: CONTROL frames forged with another key, sealed by another
  device's key under this device's id, tampered, unauthenticated, and a replayed INPUT;
- device -> host, at the server's UDP port: the device's own frames replayed, frames forged with
  another key, another device's key under this device's id, tampered, unauthenticated slices for the
  device's next seqs, and a device with no key.

Every hostile frame is dropped and counted under its reason, on the device (STATS keys 16 + r) and
on the server. The forged CONTROL budgets never take effect, and every label of the real device
equals the reference at its budget."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from codegen_support import have
from tinysplit.wire import encode_frame
from tinysplit.wire.auth import HOST_TO_DEVICE, seal, split
from test_server_auth import tampered
from tinysplit.wire.frame import FrameType
from tinysplit.wire.payloads import Chunk, KeyValues, decode_payload, make_frame


N = 12
KEY, OTHER_KEY = bytes(range(7, 39)), bytes(range(200, 232))
DEVICE = 1


@pytest.mark.emulator
@pytest.mark.slow
@pytest.mark.skipif(not have("qemu-system-arm") or not have("arm-none-eabi-gcc"),
                    reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_both_directions_under_attack_in_qemu(digits_bundle, tmp_path):
    from tinysplit.firmware.apps.nair import CONTROL_BUDGET_UNITS, config_from_manifest
    from tinysplit.firmware.build import build_project
    from tinysplit.firmware.devicelink import DeviceLink, free_udp_port
    from tinysplit.firmware.e2e import prepare
    from tinysplit.firmware.generate import generate_sources
    from tinysplit.firmware.project import render_project
    from tinysplit.host_server.server import ServerConfig, TailServer
    from tinysplit.host_server.sinks import MemorySink
    from tinysplit.methods.nair.reference import labels_at_budgets

    p = prepare(digits_bundle, "qemu-mps2-an386", N, "udp", None)
    cfg = config_from_manifest(p.manifest, device_id=DEVICE, transport="udp", udp_port=free_udp_port())
    sources = generate_sources(p.bundle, p.manifest, tmp_path / "model")
    project = render_project(p.board, sources, tmp_path / "fw", app="nair", app_config=cfg, device_key=KEY)
    assert (project.dir / "src" / "ts_device_key.c").stat().st_mode & 0o077 == 0
    elf = build_project(project.dir).elf
    ref = labels_at_budgets(p.bundle, [16], n=N)[16]
    bid = cfg.bundle_id
    sink = MemorySink()

    async def main():
        async with DeviceLink(p.board, elf, cfg, timeout=60) as link:
            server = TailServer(ServerConfig(p.bundle, [], deadline_s=5.0, keys={DEVICE: KEY, 2: OTHER_KEY}), sink,
                                p.manifest, transports=link.transports)
            link.auth = server.auth
            await server.start()
            evil = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            to = ("127.0.0.1", cfg.udp_port)
            try:
                await link.attach()
                hs = server.auth.sessions[DEVICE]
                assert hs.device_nonce != 0 and hs.host_nonce != 0
                await link.control([(CONTROL_BUDGET_UNITS, 16)])
                sent_inputs: list[bytes] = []
                device_sent = {"unauthenticated": 0, "auth": 0, "replay": 0}
                host_sent = {"unauthenticated": 0, "auth": 0, "replay": 0, "unknown_device": 0}
                for i in range(N):
                    frames = link.input_frames(i, p.xq[i])
                    sent_inputs += frames
                    for f in frames:
                        await link.send(f)
                    got = await link.wait_frames(i)
                    assert got
                    if i == N // 2:  # the attack, both directions, mid-stream
                        budget1 = make_frame(FrameType.CONTROL, KeyValues(((CONTROL_BUDGET_UNITS, 1),)), DEVICE, bid, 99)
                        c = hs.send_counter + 100
                        down = {
                            "auth": [seal(budget1, OTHER_KEY, HOST_TO_DEVICE, hs.device_nonce, hs.host_nonce, c),
                                     seal(budget1, KEY, HOST_TO_DEVICE, hs.device_nonce, hs.host_nonce ^ 1, c + 1),
                                     tampered(link.frame(FrameType.CONTROL, KeyValues(((CONTROL_BUDGET_UNITS, 16),)),
                                                         98), c + 2)],
                            "unauthenticated": [encode_frame(budget1)],
                            "replay": [sent_inputs[0]],
                        }
                        for reason, fs in down.items():
                            device_sent[reason] += len(fs)
                            for f in fs:
                                await link.send(f)
                        mine = link.samples[i].wire
                        slice_plain = split(mine[0]).frame
                        up = {
                            "replay": list(mine) + list(link.samples[0].wire),
                            "auth": [seal(slice_plain, OTHER_KEY, 1, hs.device_nonce, hs.host_nonce, 10_000),
                                     tampered(mine[0], 10_001)],
                            "unauthenticated": [encode_frame(make_frame(FrameType.NAIR_SLICE,
                                                                        decode_payload(slice_plain), DEVICE, bid, s2))
                                                for s2 in range(i + 1, i + 4)],
                            "unknown_device": [seal(make_frame(FrameType.LATENT, Chunk(b"x"), 9, bid, 1), KEY, 1, 1,
                                                    1, 1)],
                        }
                        for reason, fs in up.items():
                            host_sent[reason] += len(fs)
                            for f in fs:
                                evil.sendto(f, to)
                await link.until(lambda: len(sink.records) >= N, f"{N} predictions", 30)
                await asyncio.sleep(0.3)
                stats = await link.stats()
                code = await link.exit(0)
            finally:
                evil.close()
                await server.stop()
        return server, stats, code, device_sent, host_sent

    server, stats, code, device_sent, host_sent = asyncio.run(main())
    assert code == 0
    recs = sorted(sink.records, key=lambda r: r["sample"])
    assert [r["sample"] for r in recs] == list(range(N))
    assert np.array_equal([r["label"] for r in recs], ref)  # every label right, during the attack
    assert all(r["units_received"] == 16 for r in recs)  # the forged budget-1 CONTROLs never took effect
    reasons = {"unauthenticated": 13, "auth": 14, "replay": 15, "session": 16}
    for reason, n in device_sent.items():
        assert stats.get(f"drops_{reason}", stats.get(f"key_{16 + reasons[reason]}")) == n, (reason, stats)
    for reason, n in host_sent.items():
        assert server.metrics.drops.get(reason, 0) == n, (reason, server.metrics.drops)


def test_the_generator_embeds_the_key_privately(digits_bundle, tmp_path):
    import json

    from conftest import run_cli
    from tinysplit.errors import InputError
    from tinysplit.firmware.generate import generate_project
    from tinysplit.wire.auth import key_fingerprint

    project, *_ = generate_project(digits_bundle, "qemu-mps2-an386", tmp_path / "fw", app="nair", device_key=KEY,
                                   device_id=5)
    src = project.dir / "src"
    key_c = (src / "ts_device_key.c").read_text()
    assert (src / "ts_device_key.c").stat().st_mode & 0o077 == 0
    assert all(f"0x{b:02x}" in key_c for b in KEY) and "SECRET" in key_c
    assert (src / "ts_auth.c").is_file() and "-DTS_AUTH" in (project.dir / "CMakeLists.txt").read_text()
    meta = json.loads((project.dir / "project.json").read_text())
    assert meta["authenticated"] and meta["key_fingerprint"] == key_fingerprint(KEY)
    assert KEY.hex() not in json.dumps(meta)
    assert not any(KEY.hex() in f.read_text(errors="ignore") for f in digits_bundle.rglob("*.json"))  # nor the bundle
    plain, *_ = generate_project(digits_bundle, "qemu-mps2-an386", tmp_path / "plain", app="nair")
    assert not (plain.dir / "src" / "ts_device_key.c").exists() and "TS_AUTH" not in (
        plain.dir / "CMakeLists.txt").read_text()
    with pytest.raises(InputError, match="only method apps"):
        generate_project(digits_bundle, "qemu-mps2-an386", tmp_path / "hil", app="hil", device_key=KEY)
    with pytest.raises(InputError, match="32 bytes"):
        generate_project(digits_bundle, "qemu-mps2-an386", tmp_path / "short", app="nair", device_key=b"x" * 5)
    assert not (tmp_path / "hil").exists() and not (tmp_path / "short").exists()
    keys = tmp_path / "k.json"
    assert run_cli("keys", "create", "--file", str(keys), "--device", "3").returncode == 0
    r = run_cli("firmware", "--bundle", str(digits_bundle), "--board", "qemu-mps2-an386", "--app", "nair", "--keys",
                str(keys), "--device-id", "4", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "no key for device 4" in r.stderr and not (tmp_path / "x").exists()
