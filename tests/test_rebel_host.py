"""ReBEL's deployment, host side: the plan read from the manifest (and its checks), the device simulator's
frames, the assembler (early labels, latents, drops, duplicates, zero-filled confidences), the reference
pipeline, and the server counting both paths. Unit tests use a synthetic manifest; the rest the session's
briefly trained digits ReBEL bundle (tests/conftest.py rebel_bundle)."""

from __future__ import annotations

import asyncio
import copy
import json
import math
import shutil
import struct

import numpy as np
import pytest

from tinysplit.errors import InputError, ManifestError
from tinysplit.host_server.assemblers import make_assembler
from tinysplit.host_server.metrics import Metrics
from tinysplit.manifest import load_manifest, manifest_from_dict, validate_manifest_dict
from tinysplit.methods.rebel.decision import threshold_q
from tinysplit.methods.rebel.devicesim import sample_frames
from tinysplit.methods.rebel.plan import plan_for
from tinysplit.quant import dequantize
from tinysplit.wire import DecodeError, cobs_encode, decode_frame, encode_frame
from tinysplit.wire.frame import Frame, FrameType
from tinysplit.wire.payloads import Chunk, EarlyLabel, decode_payload, make_frame

D, C, S, SCALE, ZP = 4, 3, 2.0, 0.02, -5


def rebel_manifest(**rebel) -> dict:
    """A valid 'rebel' manifest dict (no files: for the plan and the assembler)."""
    out = {"name": "PartitionedCall:0", "shape": [1, 1, 1, D + C], "dtype": "int8", "scale": SCALE, "zero_point": ZP}
    inp = {"name": "x", "shape": [1, 8, 8, 1], "dtype": "int8", "scale": 0.004, "zero_point": -128}
    return {
        "format": "tinysplit-bundle", "version": 1, "tinysplit_version": "0.1.0", "name": "r",
        "bundle_id": "0123abcd", "method": "rebel",
        "input": {"shape_nchw": [1, 8, 8], "dtype": "float32"}, "classes": ["a", "b", "c"],
        "device_models": [{"name": "head1", "file": "device/head1.tflite", "sha256": "0" * 64, "kind": "features",
                           "inputs": [inp], "outputs": [out], "ops": ["CONV_2D"], "flash_bytes": 1, "arena_bytes": 1}],
        "host_tails": [{"name": "remote", "file": "host/remote.onnx", "sha256": "1" * 64, "consumes": ["head1"],
                        "inputs": [{"name": "head1", "shape": [1, 1, 1, D + C], "dtype": "float32"}],
                        "outputs": [{"name": "logits", "shape": [1, C], "dtype": "float32"}]}],
        "method_data": {"rebel": {"latent_dim": D, "classes": C, "confidence_scale": S, "default_threshold": 0.5,
                                  **rebel}},
    }


def output(z, conf) -> np.ndarray:
    return np.array([*z, *conf], dtype=np.int8)


# --- the plan ------------------------------------------------------------------------------------------

def test_plan_reads_the_layout_and_turns_thresholds_into_the_device_integer():
    p = plan_for(manifest_from_dict(rebel_manifest()))
    assert (p.latent, p.classes, p.confidence_scale, p.scale, p.zero_point) == (D, C, S, SCALE, ZP)
    assert (p.output_bytes, p.output_shape, p.device_model, p.tail) == (7, (1, 1, 7), "head1", "remote")
    assert p.threshold_q(0.5) == threshold_q(0.5, S, SCALE, ZP) == ZP + 50 == p.default_threshold_q
    assert p.threshold_q(0.0) == ZP and p.threshold_q(1.0) == ZP + 100
    assert p.control_value(0.5) == ZP + 50 + 128 and p.control_value(0.0) == ZP + 128
    assert threshold_q(1.0, S, 0.01, 0) == 128  # code 200 > 127: never early; CONTROL value 256
    assert p.confidence(ZP + 100) == pytest.approx(1.0)
    for bad in (-0.01, 1.01, math.nan, math.inf, "0.5", None, True):
        with pytest.raises(InputError, match=r"threshold must be a number in \[0, 1\]"):
            p.threshold_q(bad)


@pytest.mark.parametrize("rebel, field", [
    ({"latent_dim": 5}, "method_data.rebel.latent_dim"),  # 5 + 3 != 7 output values
    ({"latent_dim": 5, "classes": 2}, "method_data.rebel.classes"),  # 7 values, but the bundle has 3 classes
])
def test_a_classifier_that_does_not_match_the_latent_is_refused_at_load(rebel, field):
    m = manifest_from_dict(rebel_manifest(**rebel))  # the schema alone cannot see it
    with pytest.raises(ManifestError, match=f"field '{field}'"):
        plan_for(m)
    with pytest.raises(ManifestError, match=f"field '{field}'"):
        make_assembler(m, 0.5, Metrics())


def test_plan_needs_the_remote_tail_on_the_whole_output():
    d = rebel_manifest()
    d["host_tails"][0]["name"] = "tail"
    with pytest.raises(ManifestError, match="field 'host_tails'"):
        plan_for(manifest_from_dict(d))
    d = rebel_manifest()
    d["host_tails"][0]["inputs"][0]["shape"] = [1, 1, 1, D]
    with pytest.raises(ManifestError, match=r"field 'host_tails\[0\].inputs'"):
        plan_for(manifest_from_dict(d))
    with pytest.raises(ManifestError, match="method_data.rebel"):
        plan_for(manifest_from_dict(dict(rebel_manifest(), method="plain", method_data={})))


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.pop("confidence_scale"), "method_data.rebel"),
    (lambda r: r.update(latent_dim=0), "method_data.rebel.latent_dim"),
    (lambda r: r.update(latent_dim=1019), "method_data.rebel.latent_dim"),  # more than one LATENT frame
    (lambda r: r.update(classes=0), "method_data.rebel.classes"),
    (lambda r: r.update(confidence_scale=0), "method_data.rebel.confidence_scale"),
    (lambda r: r.update(default_threshold=1.5), "method_data.rebel.default_threshold"),
    (lambda r: r.update(default_threshold=-0.1), "method_data.rebel.default_threshold"),
    (lambda r: r.update(covariance="spherical"), "method_data.rebel.covariance"),
    (lambda r: r.update(surprise=1), "method_data.rebel"),
])
def test_method_data_schema_names_the_field(mutate, field):
    d = rebel_manifest()
    mutate(d["method_data"]["rebel"])
    with pytest.raises(ManifestError) as e:
        validate_manifest_dict(copy.deepcopy(d))
    assert f"field '{field}'" in str(e.value)
    d = rebel_manifest()
    d["method_data"] = {}
    with pytest.raises(ManifestError, match="field 'method_data.rebel' is missing"):
        validate_manifest_dict(d)


def test_informational_fields_pass_the_schema():
    validate_manifest_dict(rebel_manifest(clip=4.0, clip_max=8.0, whitened_max=4.0, floor=-80.0, floor_margin=8.0,
                                          covariance="diag", components=4, proj_dim=None, variant={"beta": 0.001}))


# --- the device simulator --------------------------------------------------------------------------------

def test_device_frames_follow_the_contract_byte_for_byte():
    p = plan_for(manifest_from_dict(rebel_manifest()))
    out = output([1, -2, 3, 127], [40, 60, 60])  # a tie: c* is the FIRST index of the max
    early = decode_frame(sample_frames(out, p, 60, 9, 0x0123ABCD, 77)[0])
    assert (early.type, early.device_id, early.bundle_id, early.seq, early.part_index, early.part_count) == \
        (FrameType.EARLY_LABEL, 9, 0x0123ABCD, 77, 0, 1)
    assert early.payload == struct.pack("<HB", 1, 60 + 128)
    latent = decode_frame(sample_frames(out, p, 61, 9, 0x0123ABCD, 78)[0])
    assert latent.type == FrameType.LATENT and latent.payload == bytes([1, 254, 3, 127])
    assert decode_frame(sample_frames(output([0] * 4, [127] * 3), p, 128, 1, 1, 0)[0]).type == FrameType.LATENT
    assert decode_frame(sample_frames(output([0] * 4, [-128] * 3), p, -128, 1, 1, 0)[0]).type == FrameType.EARLY_LABEL
    with pytest.raises(ValueError):
        sample_frames(output([0] * 3, [0] * 3), p, 0, 1, 1, 0)
    from tinysplit.methods.rebel.devicesim import hello
    from tinysplit.wire.payloads import CAP_REBEL, CAP_UDP, Hello

    assert hello(p, "b", 64, udp=True) == Hello("b", CAP_REBEL | CAP_UDP, 64, D + C, 0, 0)
    assert hello(p, "b", 64).capabilities == CAP_REBEL == 1 << 1


# --- the assembler ---------------------------------------------------------------------------------------

def test_assembler_early_labels_latents_drops_and_duplicates():
    metrics = Metrics()
    a = make_assembler(manifest_from_dict(rebel_manifest()), 0.5, metrics)
    assert a.frame_types == (FrameType.EARLY_LABEL, FrameType.LATENT) and a.tails == ("remote",)
    assert metrics.counters["early_labels"] == metrics.counters["latents"] == 0
    p = a.plan
    el = decode_frame(sample_frames(output([1, 2, 3, 4], [ZP, ZP + 100, ZP]), p, ZP + 50, 3, 1, 10)[0])
    [c] = a.add(el, 1.0)
    assert (c.device, c.seq, c.tail, c.label, c.parts, c.by_deadline) == (3, 10, None, 1, 1, False)
    assert c.scores == (pytest.approx(1.0),) and c.record == {"early": True, "confidence_q": ZP + 100}
    lat = decode_frame(sample_frames(output([1, -2, 3, 4], [ZP, ZP + 10, ZP]), p, ZP + 50, 3, 1, 11)[0])
    [c2] = a.add(lat, 1.0)
    assert (c2.tail, c2.label, c2.record) == ("remote", None, {"early": False})
    assert c2.inputs[0].tolist() == [1, -2, 3, 4]
    # a second frame for a completed (device, seq), of either type, is counted and never used
    assert a.add(el, 2.0) == [] and a.add(lat, 2.0) == []
    assert a.add(Frame(FrameType.LATENT, 3, 1, 10, bytes(D)), 2.0) == []
    assert metrics.counters["duplicates"] == 3
    assert len(a.add(Frame(FrameType.LATENT, 4, 1, 10, bytes(D)), 2.0)) == 1  # another device's seq 10
    assert (metrics.counters["early_labels"], metrics.counters["latents"]) == (1, 2)
    bad = [Frame(FrameType.LATENT, 3, 1, 20, bytes(D - 1)),  # z of the wrong size
           Frame(FrameType.LATENT, 3, 1, 21, bytes(D + C)),  # the whole output is not a latent
           make_frame(FrameType.EARLY_LABEL, EarlyLabel(C, 200), 3, 1, 22),  # class out of range
           Frame(FrameType.EARLY_LABEL, 3, 1, 23, b"\x00\x00"),  # short payload
           Frame(FrameType.LATENT, 3, 1, 24, bytes(D), 0, 2)]  # a sample is one frame
    for f in bad:
        with pytest.raises(DecodeError) as e:
            a.add(f, 3.0)
        assert e.value.reason == "payload"
    assert a.pending == 0 and a.expire(100.0) == [] and a.flush(100.0) == []
    # a dropped frame did not use up its seq: the good frame that follows is taken
    assert len(a.add(Frame(FrameType.LATENT, 3, 1, 20, bytes(D)), 4.0)) == 1


def test_tail_inputs_fill_the_confidences_with_the_zero_point():
    a = make_assembler(manifest_from_dict(rebel_manifest()), 0.5, Metrics())
    cs = [a.add(Frame(FrameType.LATENT, 1, 1, s, np.array(z, np.int8).tobytes()), 0.0)[0]
          for s, z in enumerate(([1, 2, 3, 4], [-128, 0, 127, -1]))]
    [x] = a.tail_inputs("remote", cs)
    want = dequantize(np.array([[1, 2, 3, 4, ZP, ZP, ZP], [-128, 0, 127, -1, ZP, ZP, ZP]]), SCALE, ZP)
    assert x.dtype == np.float32 and x.shape == (2, 1, 1, 7)
    np.testing.assert_array_equal(x.reshape(2, 7), want)
    assert (x.reshape(2, 7)[:, D:] == 0).all()


# --- on the digits bundle --------------------------------------------------------------------------------

def test_bundle_and_reference(rebel_bundle):
    from tinysplit.methods.rebel.reference import labels_at_thresholds, remote_labels
    from tinysplit.reference import device_outputs, heldout, quantized_inputs, tail_logits

    m = load_manifest(rebel_bundle)
    assert m.method == "rebel" and [t.name for t in m.host_tails] == ["remote"]
    r = m.method_data["rebel"]
    assert (r["latent_dim"], r["classes"], r["default_threshold"], r["covariance"]) == (16, 10, 0.9, "full")
    p = plan_for(m)
    x, y = heldout(rebel_bundle, m)
    outs = device_outputs(rebel_bundle, m, quantized_inputs(m, x[:60])).reshape(60, -1)
    # the tail slices z: the confidences it is given do not change its logits
    full = tail_logits(rebel_bundle, m, outs.reshape(60, *p.output_shape))
    zero = tail_logits(rebel_bundle, m, p.host_view(outs[:, :p.latent]))
    np.testing.assert_allclose(full, zero, rtol=0, atol=1e-5)
    assert (remote_labels(rebel_bundle, outs) == full.argmax(1)).all()
    ref = labels_at_thresholds(rebel_bundle, [0.0, 1.0], outputs_q=outs)
    assert ref[0.0].early.all() and (ref[0.0].labels == ref[0.0].early_label).all()
    assert not ref[1.0].early.any() and (ref[1.0].labels == full.argmax(1)).all()
    assert ref[1.0].paths()[:2] == ["remote", "remote"] and ref[0.0].paths()[0] == "device"
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        labels_at_thresholds(rebel_bundle, [0.5, 1.5], outputs_q=outs)


def test_export_refuses_a_default_threshold_outside_0_1(tmp_path):
    from tinysplit.methods.rebel.export import export_rebel

    for t in (-0.5, 1.2, math.nan):
        with pytest.raises(InputError, match="default_threshold"):
            export_rebel(None, np.zeros((1, 1, 8, 8), np.float32), None, None, tmp_path / "b", default_threshold=t)


def test_a_mismatched_bundle_is_refused_by_the_server(rebel_bundle, tmp_path):
    from tinysplit.host_server.server import ServerConfig, TailServer
    from tinysplit.host_server.sinks import MemorySink

    bad = tmp_path / "bad"
    shutil.copytree(rebel_bundle, bad)
    d = json.loads((bad / "manifest.json").read_text())
    d["method_data"]["rebel"]["latent_dim"] = 15
    (bad / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(ManifestError, match="field 'method_data.rebel.latent_dim'.*does not match the latent size"):
        TailServer(ServerConfig(bad, []), MemorySink(), transports=[])

def _median_threshold_case(bundle, n: int):
    """The first n held-out samples' int8 device outputs and the reference at the threshold that sends
    about half of them early: (manifest, plan, outputs, reference, bundle id)."""
    from tinysplit.methods.rebel.reference import labels_at_thresholds
    from tinysplit.reference import device_outputs, heldout, quantized_inputs

    m = load_manifest(bundle)
    p = plan_for(m)
    x, _ = heldout(bundle, m)
    outs = device_outputs(bundle, m, quantized_inputs(m, x[:n])).reshape(n, -1)
    t = float(np.median(p.confidence(outs[:, p.latent:].max(1))))
    return m, p, outs, labels_at_thresholds(bundle, [t], outputs_q=outs)[t], int(m.bundle_id, 16)


def test_server_counts_both_paths_drops_and_duplicates(rebel_bundle):
    from tinysplit.host_server.server import ServerConfig, TailServer
    from tinysplit.host_server.sinks import MemorySink
    from tinysplit.host_server.transports import open_transport
    from tinysplit.host_server.transports.loop import loop_peer

    n = 30
    m, p, outs, ref, bid = _median_threshold_case(rebel_bundle, n)
    frames = [sample_frames(outs[i], p, ref.threshold_q, 2, bid, i)[0] for i in range(n)]
    junk = [encode_frame(Frame(FrameType.LATENT, 2, bid, 100, bytes(p.latent + 1))),
            encode_frame(make_frame(FrameType.EARLY_LABEL, EarlyLabel(p.classes, 255), 2, bid, 101))]
    sink = MemorySink()
    peer = loop_peer("rebel-host")

    async def main():
        server = TailServer(ServerConfig(rebel_bundle, [], deadline_s=5.0), sink,
                            transports=[open_transport("loop://rebel-host")])
        await server.start()
        try:
            for f in frames + frames[:3] + junk:  # three duplicates
                peer.write(cobs_encode(f) + b"\x00")
            for _ in range(500):
                if len(sink.records) >= n:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
        finally:
            await server.stop()
        return server

    server = asyncio.run(main())
    recs = sorted(sink.records, key=lambda r: r["sample"])
    assert [r["sample"] for r in recs] == list(range(n))
    assert [r["label"] for r in recs] == ref.labels.tolist()
    assert [r["path"] for r in recs] == ref.paths()
    assert all(r["early"] == ("confidence_q" in r) for r in recs)
    for r in recs:
        if r["early"]:
            assert r["confidence_q"] >= ref.threshold_q and len(r["scores"]) == 1
        else:
            assert len(r["scores"]) == p.classes
    c = server.metrics.counters
    assert (c["early_labels"], c["latents"]) == (int(ref.early.sum()), int((~ref.early).sum()))
    assert 0 < c["early_labels"] < n
    assert c["duplicates"] == 3 and server.metrics.drops == {"payload": 2}
    assert c["predictions"] == c["samples"] == n
    prom = server.metrics.prometheus()
    assert "tinysplit_early_labels_total" in prom and "tinysplit_latents_total" in prom
    assert decode_payload(decode_frame(frames[0])) in (Chunk(outs[0, :p.latent].tobytes()),
                                                        EarlyLabel(int(ref.early_label[0]),
                                                                   int(outs[0, p.latent:].max()) + 128))


def test_faults_every_frame_accounted_and_no_sample_twice(rebel_bundle):
    """Dropped, duplicated and reordered frames: a sample whose frame arrived is predicted exactly once
    (with the reference's path and label), a lost one is not predicted, and every delivered frame is
    a prediction or a counted duplicate."""
    from tinysplit.host_server.server import ServerConfig, TailServer
    from tinysplit.host_server.sinks import MemorySink
    from tinysplit.host_server.transports import open_transport
    from tinysplit.host_server.transports.faults import FaultyTransport
    from tinysplit.host_server.transports.loop import loop_peer

    n = 60
    m, p, outs, ref, bid = _median_threshold_case(rebel_bundle, n)
    frames = [sample_frames(outs[i], p, ref.threshold_q, 4, bid, i)[0] for i in range(n)]
    faulty = FaultyTransport(open_transport("loop://rebel-faults"), drop=0.1, duplicate=0.2, reorder=0.2, seed=3)
    sink = MemorySink()
    peer = loop_peer("rebel-faults")

    async def main():
        server = TailServer(ServerConfig(rebel_bundle, [], deadline_s=0.1), sink, transports=[faulty])
        await server.start()
        try:
            for f in frames:
                peer.write(cobs_encode(f) + b"\x00")
                await asyncio.sleep(0)
            faulty.release_held()
            await asyncio.sleep(0.3)
        finally:
            await server.stop()
        return server

    server = asyncio.run(main())
    log = faulty.log
    lost = {decode_frame(f).seq for f in log.dropped_frames}
    recs = sorted(sink.records, key=lambda r: r["sample"])
    assert [r["sample"] for r in recs] == [i for i in range(n) if i not in lost]
    assert all(r["label"] == ref.labels[r["sample"]] and r["early"] == ref.early[r["sample"]] for r in recs)
    c = server.metrics.counters
    assert log.dropped > 0 and log.duplicated > 0
    assert c["frames"] == log.delivered == len(recs) + c["duplicates"]
    assert c["duplicates"] == log.duplicated and c["late"] == 0 and server.metrics.dropped == 0
    assert c["early_labels"] + c["latents"] == len(recs) and c["deadline_misses"] == 0
