"""Adaptive ResNet, the method: skip masks in PyTorch, the drop policies, the export (each residual chain
shares one int8 quantization, the consumers' biases rescaled: int8 accuracy follows float for every
mask), the bundle layout and the host assembler."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tinysplit.errors import InputError, ManifestError
from tinysplit.methods.adaptive_resnet.model import DIGITS, AdaptiveNet, HeadConfig
from tinysplit.methods.adaptive_resnet.train import TrainConfig, float_mask_accuracy, gates_for, study_masks


def test_a_skipped_block_is_the_identity() -> None:
    torch.manual_seed(0)
    net = AdaptiveNet(DIGITS).eval()
    x = torch.rand(3, 1, 8, 8)
    net.skip_mask = 0b0101
    got = net.head(x)
    h = x
    i = 0
    for m in net.head.layers:  # by hand: blocks 0 and 2 left out
        if m in net.head.blocks:
            if i not in (0, 2):
                h = m(h)
            i += 1
        else:
            h = m(h)
    assert torch.equal(got, h)
    net.skip_mask = 0
    assert not torch.equal(net.head(x), got)


def test_masks_are_checked() -> None:
    net = AdaptiveNet(DIGITS)
    assert net.blocks == 4
    with pytest.raises(InputError, match="bits at or above bit 4"):
        net.skip_mask = 16
    with pytest.raises(InputError, match="not an integer"):
        net.skip_mask = 1.0  # type: ignore[assignment]


def test_gates_follow_the_policies() -> None:
    g = torch.Generator().manual_seed(0)
    assert gates_for("none", 4, 8, g, 0.5, 0.25) is None
    n = 20000
    sd = gates_for("stochastic_depth", 4, n, g, 0.5, 0.25)
    bd = gates_for("block_drop", 4, n, g, 0.5, 0.25)
    for i, gate in enumerate(sd):  # p_l = 1 - (l + 1) / L * (1 - p_L), kept branches scaled by 1 / p_l
        p = 1 - (i + 1) / 4 * 0.5
        assert gate.shape == (n, 1, 1, 1)
        assert set(torch.unique(gate).tolist()) <= {0.0, float(np.float32(1 / p))}
        assert abs(float((gate > 0).float().mean()) - p) < 0.02
    for gate in bd:  # dropped with probability 0.25, never rescaled
        assert set(torch.unique(gate).tolist()) <= {0.0, 1.0}
        assert abs(float((gate == 0).float().mean()) - 0.25) < 0.02


def test_train_config_refuses_bad_values() -> None:
    with pytest.raises(InputError, match="unknown drop policy"):
        TrainConfig(policy="dropout")
    with pytest.raises(InputError, match="survival"):
        TrainConfig(survival=0.0)
    with pytest.raises(InputError, match="epochs"):
        TrainConfig(epochs=0)


def test_study_masks() -> None:
    assert study_masks(3) == list(range(8))
    m = study_masks(10)
    assert m[0] == 0 and len(m) == 1 + 10 + 45 and len(set(m)) == len(m)


def test_head_config_counts_blocks() -> None:
    assert DIGITS.blocks == 4
    assert HeadConfig(3, 16, ((16, 3), (32, 2), (64, 2))).blocks == 7
    assert AdaptiveNet(HeadConfig(3, 8, ((8, 1), (16, 2)))).blocks == 3


@pytest.mark.slow
def test_block_drop_training_tolerates_skips(adaptive_trained) -> None:
    t = adaptive_trained
    acc = float_mask_accuracy(t.model, t.x_heldout, t.y_heldout, [0, 1, 2, 4, 8])
    assert acc[0] >= 0.95
    assert min(acc[m] for m in (1, 2, 4, 8)) >= 0.9  # any one block skipped


@pytest.mark.slow
def test_export_shares_each_chain_and_int8_follows_float(adaptive_trained, adaptive_export) -> None:
    from tinysplit.methods.adaptive_resnet.bundle import layout_for
    from tinysplit.methods.adaptive_resnet.reference import labels_for_masks

    t, ex = adaptive_trained, adaptive_export
    sb = ex.report["device_models"]["head"]["skip_blocks"]
    assert sb["blocks"] == 4 and len(sb["ranges"]) == 4 and sb["chains_requantized"] >= 1
    lay = layout_for(ex.manifest)
    assert (lay.blocks, lay.default_mask, lay.output_shape) == (4, 0, (4, 4, 32))
    masks = list(range(16))
    fl = float_mask_accuracy(t.model, t.x_heldout, t.y_heldout, masks)
    labels = labels_for_masks(ex.bundle_dir, masks)
    for m in masks:  # a wrongly rescaled bias costs tens of points here; quantization a point or two
        assert abs(float((labels[m] == t.y_heldout).mean()) - fl[m]) <= 0.02, m


@pytest.mark.slow
def test_exporter_checks_the_declared_block_count(adaptive_trained, tmp_path) -> None:
    from tinysplit.errors import ConversionError
    from tinysplit.exporter import DevicePiece, ExportSpec, export_bundle

    t = adaptive_trained
    spec = ExportSpec(name="wrong", device=[DevicePiece("head", t.model.head, "features", skip_blocks=5)],
                      calibration=t.x_train[:50], heldout=t.x_heldout[:20])
    with pytest.raises(ConversionError, match="has 4 identity residual blocks, the piece declares 5"):
        export_bundle(spec, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    with pytest.raises(InputError, match="skip_blocks"):
        export_bundle(ExportSpec(name="wrong", device=[DevicePiece("head", t.model.head, skip_blocks=33)],
                                 calibration=t.x_train[:50], heldout=t.x_heldout[:20]), tmp_path / "c")


# --- the bundle layout and the assembler, on a hand-made manifest ---------------------------------------

def _manifest(blocks: int = 3, default_mask: int = 0, shape=(1, 10, 10, 25), **data):
    from tinysplit.manifest import DeviceModel, FTensor, HostTail, InputSpec, Manifest, QTensor

    dm = DeviceModel("head", "device/head.tflite", "0" * 64, "features", (QTensor("in", (1, 8, 8, 1), "int8", 0.1, 0),),
                     (QTensor("out", shape, "int8", 0.05, -3),), ("CONV_2D", "ADD"), 1000, 1000)
    tail = HostTail("tail", "host/tail.onnx", "0" * 64, ("head",), (FTensor("head", shape, "float32"),),
                    (FTensor("logits", (1, 10), "float32"),))
    return Manifest(name="t", bundle_id="0000abcd", method="adaptive_resnet",
                    input=InputSpec((1, 8, 8), "float32", "data/heldout.npz"), classes=(),
                    device_models=(dm,), host_tails=(tail,),
                    method_data={"adaptive_resnet": {"blocks": blocks, "default_mask": default_mask, **data}})


def test_layout_checks_the_method_data() -> None:
    from tinysplit.methods.adaptive_resnet.bundle import layout_for

    lay = layout_for(_manifest())
    assert (lay.blocks, lay.output_bytes, lay.masks) == (3, 2500, 8)
    with pytest.raises(ManifestError, match="default_mask"):
        layout_for(_manifest(default_mask=8))
    with pytest.raises(ManifestError, match="block_names"):
        layout_for(_manifest(block_names=["a"]))


def _frames(lay, out, mask, instr, seq, device=2):
    from tinysplit.methods.adaptive_resnet.devicesim import sample_frames
    from tinysplit.wire import decode_frame

    return [decode_frame(f) for f in sample_frames(out, lay, mask, instr, device, 0xABCD, seq)]


def test_assembler_reassembles_parts_and_zero_fills_at_the_deadline() -> None:
    from tinysplit.host_server.assemblers.adaptive_resnet import AdaptiveAssembler
    from tinysplit.host_server.metrics import Metrics
    from tinysplit.wire import DecodeError

    m = Metrics()
    a = AdaptiveAssembler(_manifest(), 1.0, m)
    lay = a.layout
    assert a.parts == 3  # 2500 bytes in chunks of 1016
    out = np.arange(2500).astype(np.int8)
    fr = _frames(lay, out, 5, 1234, seq=1)
    assert [f.part_count for f in fr] == [3, 3, 3] and [len(f.payload) for f in fr] == [1024, 1024, 476]
    assert a.add(fr[2], 0.0) == [] and a.add(fr[0], 0.1) == []
    assert a.add(fr[0], 0.2) == [] and m.counters["duplicates"] == 1
    done = a.add(fr[1], 0.3)
    assert len(done) == 1 and np.array_equal(done[0].inputs[0], out)
    assert done[0].record == {"skip_mask": 5, "instructions": 1234} and not done[0].by_deadline
    assert a.add(fr[1], 0.4) == [] and m.counters["late_parts"] == 1
    fr2 = _frames(lay, out, 1, 99, seq=2)
    a.add(fr2[0], 1.0)
    assert a.expire(1.5) == [] and a.pending == 1
    late = a.expire(2.0)
    assert len(late) == 1 and late[0].by_deadline and late[0].record["parts_missing"] == 2
    got = late[0].inputs[0]
    assert np.array_equal(got[:1016], out[:1016]) and (got[1016:] == lay.zero_point).all()
    assert m.counters["incomplete_samples"] == 1
    first = _frames(lay, out, 0, 0, seq=3)[0]
    with pytest.raises(DecodeError):  # a mask with a bit for a block the head does not have
        a.add(replace(first, payload=(8).to_bytes(4, "little") + first.payload[4:]), 3.0)
    fr4 = _frames(lay, out, 1, 10, seq=4)
    a.add(fr4[0], 4.0)
    with pytest.raises(DecodeError):  # the parts of one sample disagree on the mask
        a.add(_frames(lay, out, 2, 10, seq=4)[1], 4.1)
    with pytest.raises(DecodeError):  # a part count other than the output's
        a.add(replace(_frames(lay, out, 1, 10, seq=5)[0], part_count=2), 5.0)
    with pytest.raises(DecodeError):  # a chunk of the wrong size
        f = _frames(lay, out, 1, 10, seq=6)[2]
        a.add(replace(f, payload=f.payload[:-1]), 6.0)


@pytest.mark.slow
def test_the_server_sends_a_mask_to_a_known_device_only(adaptive_bundle) -> None:
    """The host's side of a re-plan: TailServer.send_control to a device that said HELLO over UDP; a
    device id the server has not heard from is an error naming the known ones; a CONTROL frame that a
    device sends to the host is counted and dropped (unexpected_type), the server carries on."""
    import asyncio
    import socket

    from tinysplit.host_server.server import ServerConfig, TailServer
    from tinysplit.host_server.sinks import MemorySink
    from tinysplit.host_server.transports import open_transport
    from tinysplit.manifest import load_manifest
    from tinysplit.methods.adaptive_resnet.bundle import layout_for
    from tinysplit.methods.adaptive_resnet.devicesim import hello
    from tinysplit.wire import FrameType, decode_frame, encode_frame
    from tinysplit.wire.payloads import KeyValues, decode_payload, make_frame

    m = load_manifest(adaptive_bundle)
    bid = int(m.bundle_id, 16)
    udp = open_transport("udp://127.0.0.1:0")
    got = {}

    async def main():
        server = TailServer(ServerConfig(adaptive_bundle, [], deadline_s=0.5), MemorySink(), transports=[udp])
        await server.start()
        dev = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dev.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            h = hello(layout_for(m), "qemu-mps2-an386", 64)
            dev.sendto(encode_frame(make_frame(FrameType.HELLO, h, 7, bid, 0)), ("127.0.0.1", udp.bound_port))
            for _ in range(100):
                if 7 in server._device_sessions:
                    break
                await asyncio.sleep(0.01)
            with pytest.raises(InputError, match=r"no device 8 has spoken to this server \(known devices: 7\)"):
                await server.send_control(8, [(4, 3)])
            await server.send_control(7, [(4, 0b1010)])
            got["control"] = decode_frame(await asyncio.wait_for(loop.sock_recv(dev, 2048), 5))
            stray = make_frame(FrameType.CONTROL, KeyValues(((4, 1),)), 7, bid, 1)
            dev.sendto(encode_frame(stray), ("127.0.0.1", udp.bound_port))
            for _ in range(100):
                if server.metrics.dropped:
                    break
                await asyncio.sleep(0.01)
        finally:
            dev.close()
            await server.stop()
        return server

    server = asyncio.run(main())
    f = got["control"]
    assert f.type == FrameType.CONTROL and f.device_id == 7 and decode_payload(f).items == ((4, 10),)
    assert server.metrics.counters["controls_sent"] == 1
    assert server.report()["drops"] == {"unexpected_type": 1}
