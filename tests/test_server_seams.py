"""The server's method seam with a fake assembler (unit tests; the real ones run in
test_conformance.py and test_host_server.py): frame types routed by what the assembler declares,
predictions made on the device written without a tail, and samples that gather parts from several
devices (one assembler per server, not per device session)."""

from __future__ import annotations

import asyncio

import pytest

from tinysplit.host_server import assemblers
from tinysplit.host_server.assemblers import Completed
from tinysplit.host_server.server import ServerConfig, TailServer
from tinysplit.host_server.sinks import MemorySink
from tinysplit.host_server.transports import open_transport
from tinysplit.manifest import manifest_from_dict
from tinysplit.wire import DecodeError, Frame, FrameType, encode_frame
from tinysplit.wire.payloads import Chunk, EarlyLabel, decode_payload, make_frame

BUNDLE_ID = 0x0123ABCD


class TwoDeviceLabels:
    """A fake method: EARLY_LABEL frames from devices 1 and 2 for the same sample; the sample is a
    device-made prediction (no tail) once both arrived: the sum of the two labels."""

    frame_types = (FrameType.EARLY_LABEL,)
    tails: tuple[str, ...] = ()

    def __init__(self, manifest, deadline_s, metrics) -> None:
        self.parts: dict[int, dict[int, int]] = {}

    def add(self, frame: Frame, now: float) -> list[Completed]:
        p: EarlyLabel = decode_payload(frame)
        if frame.device_id not in (1, 2):
            raise DecodeError("payload", "unknown device")
        got = self.parts.setdefault(frame.seq, {})
        got[frame.device_id] = p.label
        if len(got) < 2:
            return []
        del self.parts[frame.seq]
        return [Completed(0, frame.seq, None, t_first=now, parts=2, record={"devices": 2},
                          label=sum(got.values()), scores=(float(p.confidence),))]

    def expire(self, now: float) -> list[Completed]:
        return []

    def flush(self, now: float) -> list[Completed]:
        return []

    def tail_inputs(self, tail, items):
        raise AssertionError("no tail")

    @property
    def pending(self) -> int:
        return len(self.parts)


def _manifest() -> dict:
    q = {"name": "t", "shape": [1, 4], "dtype": "int8", "scale": 0.1, "zero_point": 0}
    return manifest_from_dict({
        "format": "tinysplit-bundle", "version": 1, "tinysplit_version": "0.1.0", "name": "fake",
        "bundle_id": f"{BUNDLE_ID:08x}", "method": "plain", "input": {"shape_nchw": [1, 4], "dtype": "float32"},
        "classes": [str(i) for i in range(10)],
        "device_models": [{"name": "m", "file": "device/m.tflite", "sha256": "0" * 64, "kind": "classifier",
                           "inputs": [q], "outputs": [q], "ops": ["FULLY_CONNECTED"], "flash_bytes": 1,
                           "arena_bytes": 1}],
        "host_tails": [], "method_data": {}})


def test_device_predictions_from_several_devices_need_no_tail(monkeypatch):
    monkeypatch.setitem(assemblers.ASSEMBLERS, "plain", f"{__name__}:TwoDeviceLabels")
    sink = MemorySink()

    def frame(ftype, payload, device, seq) -> bytes:
        return encode_frame(make_frame(ftype, payload, device, BUNDLE_ID, seq))

    async def main():
        server = TailServer(ServerConfig(None, []), sink, _manifest(), transports=[open_transport("loop://seam")])
        assert server.tails == {}  # zero tails: nothing to open
        await server.start()
        try:
            t = server.transports[0]
            server.on_frame(t, frame(FrameType.EARLY_LABEL, EarlyLabel(3, 200), 1, 7), "a")
            assert sink.records == [] and server.assembler.pending == 1
            server.on_frame(t, frame(FrameType.EARLY_LABEL, EarlyLabel(4, 250), 2, 7), "b")
            server.on_frame(t, frame(FrameType.LATENT, Chunk(b"xx"), 1, 8), "a")  # not declared: dropped
            server.on_frame(t, frame(FrameType.EARLY_LABEL, EarlyLabel(1, 1), 9, 9), "c")  # assembler refuses
        finally:
            await server.stop()
        return server

    server = asyncio.run(main())
    assert len(sink.records) == 1
    r = sink.records[0]
    assert (r["sample"], r["label"], r["class"], r["path"], r["devices"], r["complete"]) == (7, 7, "7", "device", 2, True)
    assert server.metrics.drops == {"unexpected_type": 1, "payload": 1}
    assert server.metrics.counters["predictions"] == 1 and len(server.sessions) == 3


def test_a_bundle_without_an_assembler_is_refused():
    with pytest.raises(Exception, match="nothing for a host server to do"):
        TailServer(ServerConfig(None, []), MemorySink(), _manifest(), transports=[])


def test_unknown_method_in_a_manifest_object_is_refused(monkeypatch):
    m = _manifest()
    monkeypatch.delitem(assemblers.ASSEMBLERS, "plain")
    with pytest.raises(Exception, match="has no assembler"):
        TailServer(ServerConfig(None, []), MemorySink(), m, transports=[])
