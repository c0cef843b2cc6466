"""Authenticated frames in Python (tinysplit.wire.auth): the published SHA-256 and HMAC-SHA-256
vectors, the committed frame vectors (sealed, altered, replay window), and the session handshake
between a host and a device: forged, tampered, replayed, cross-device and earlier-session frames are
dropped under their reasons in both directions."""

from __future__ import annotations

import hashlib
import hmac
import itertools

import pytest

from tinysplit.wire import DecodeError, FrameType, decode_frame
from tinysplit.wire.auth import (DEVICE_TO_HOST, HOST_TO_DEVICE, DeviceSession, HostSession, ReplayWindow,
                                 key_fingerprint, seal, split, verify)
from tinysplit.wire.auth_vectors import build, load
from tinysplit.wire.payloads import Chunk, KeyValues, Result, make_frame

V = load()
KEY, OTHER = bytes.fromhex(V["key"]), bytes.fromhex(V["other_key"])
BUNDLE = V["bundle"]


def test_the_committed_vectors_are_the_builders():
    assert V == build()


@pytest.mark.parametrize("v", V["sha256"], ids=lambda v: f"{len(v['message']) // 2}x{v['repeat']}")
def test_sha256_published_vectors(v):
    assert hashlib.sha256(bytes.fromhex(v["message"]) * v["repeat"]).hexdigest() == v["digest"]


@pytest.mark.parametrize("v", V["hmac_sha256"], ids=lambda v: v["mac"][:8])
def test_hmac_sha256_rfc4231(v):
    got = hmac.new(bytes.fromhex(v["key"]), bytes.fromhex(v["data"]), hashlib.sha256).hexdigest()
    assert got[:len(v["mac"])] == v["mac"]


def receive(hexstr: str, key: bytes, v: dict):
    s = split(bytes.fromhex(hexstr))
    verify(s, key, v["direction"], v["device_nonce"], v["host_nonce"])
    return s


@pytest.mark.parametrize("v", V["frames"], ids=lambda v: v["name"])
def test_sealed_frames(v):
    plain = decode_frame(bytes.fromhex(v["plain"]))
    s = receive(v["sealed"], KEY, v)
    assert s.frame == plain and s.counter == v["counter"]
    assert seal(plain, KEY, v["direction"], v["device_nonce"], v["host_nonce"], v["counter"]).hex() == v["sealed"]
    assert len(bytes.fromhex(v["sealed"])) == len(bytes.fromhex(v["plain"])) + 20
    with pytest.raises(DecodeError) as e:  # a plain receiver drops it as another version
        decode_frame(bytes.fromhex(v["sealed"]))
    assert e.value.reason == "version"


@pytest.mark.parametrize("v", V["bad"], ids=lambda v: v["name"])
def test_altered_frames_are_dropped_under_their_reason(v):
    with pytest.raises(DecodeError) as e:
        receive(v["hex"], KEY, v)
    assert e.value.reason == v["reason"]


def test_replay_window_sequence():
    w = ReplayWindow()
    got = []
    for step in V["window"]:
        try:
            w.check(step["counter"])
        except DecodeError as e:
            assert e.reason == "replay"
            got.append(False)
            continue
        w.accept(step["counter"])
        got.append(True)
    assert got == [s["accept"] for s in V["window"]]
    assert got.count(False) >= 5 and got.count(True) >= 10


def test_the_window_accepts_any_order_within_it_once():
    w = ReplayWindow()
    order = [5, 1, 64, 3, 2, 65, 4, 66, 63]  # 1 falls out of the window once 65 is newest
    for c in order:
        w.check(c)
        w.accept(c)
    for c in order + [6 - 5]:
        with pytest.raises(DecodeError):
            w.check(c)
    w.check(10)  # 66 - 10 = 56 < 64, never seen


# --- the handshake ----------------------------------------------------------------------------------

def nonces(start=0x1000):
    c = itertools.count(start)
    return lambda: next(c)


def handshake(device=7, key=KEY, boot=0xBEEF0001, host_key=None):
    dev = DeviceSession(device, key, boot)
    host = HostSession(device, host_key or key)
    hello = dev.hello(make_frame(FrameType.HELLO, __import__("tinysplit.wire.payloads", fromlist=["Hello"]).Hello(
        "b", 0, 4, 4, 0, 0), device, BUNDLE, 0))
    session = host.on_hello(split(hello), BUNDLE, nonces())
    dev.open(split(session))
    confirm = dev.seal(make_frame(FrameType.STATS, KeyValues(((1, 1),)), device, BUNDLE, 0))
    host.open(split(confirm))
    return dev, host, hello, session


def dropped(fn, *args) -> str:
    with pytest.raises(DecodeError) as e:
        fn(*args)
    return e.value.reason


def test_a_session_carries_frames_both_ways_and_rejects_replays():
    dev, host, hello, session = handshake()
    assert host.pending is None and host.host_nonce == 0x1000 and dev.host_nonce == 0x1000
    down = [host.seal(make_frame(FrameType.INPUT, Chunk(bytes([i])), 7, BUNDLE, i)) for i in range(1, 4)]
    up = [dev.seal(make_frame(FrameType.LATENT, Chunk(bytes([i])), 7, BUNDLE, i)) for i in range(1, 4)]
    for d, u in zip(down, up):
        assert dev.open(split(d)).type == FrameType.INPUT
        assert host.open(split(u)).type == FrameType.LATENT
    for d, u in zip(down, up):  # replayed: both ends drop them
        assert dropped(dev.open, split(d)) == "replay"
        assert dropped(host.open, split(u)) == "replay"
    assert dropped(dev.open, split(session)) == "replay"  # the SESSION itself cannot be replayed


def test_forged_tampered_and_cross_device_frames_are_dropped():
    dev, host, _, _ = handshake()
    forged = seal(make_frame(FrameType.LATENT, Chunk(b"x"), 7, BUNDLE, 9), OTHER, DEVICE_TO_HOST, dev.device_nonce,
                  dev.host_nonce, 50)
    assert dropped(host.open, split(forged)) == "auth"
    # device 8's frames, relabelled as device 7's (a spoofer with its own valid key)
    dev8, _, _, _ = handshake(8, OTHER, boot=0xBEEF0008)
    theirs = bytearray(dev8.seal(make_frame(FrameType.LATENT, Chunk(b"y"), 8, BUNDLE, 1)))
    theirs[4:6] = (7).to_bytes(2, "little")
    from tinysplit.wire.auth_vectors import _recrc

    assert dropped(host.open, split(_recrc(bytes(theirs)))) == "auth"
    down = bytearray(host.seal(make_frame(FrameType.CONTROL, KeyValues(((4, 1),)), 7, BUNDLE, 1)))
    down[21] ^= 0x04
    assert dropped(dev.open, split(_recrc(bytes(down)))) == "auth"
    # after all that, the real frames still pass
    assert host.open(split(dev.seal(make_frame(FrameType.LATENT, Chunk(b"z"), 7, BUNDLE, 2)))).payload == b"z"


def test_frames_of_an_earlier_boot_or_session_do_not_verify():
    dev, host, old_hello, _ = handshake()
    old_up = dev.seal(make_frame(FrameType.LATENT, Chunk(b"a"), 7, BUNDLE, 1))
    old_down = host.seal(make_frame(FrameType.RESULT, Result(1, 1, 0), 7, BUNDLE, 1))
    # the device reboots with a new nonce: a new session
    dev2 = DeviceSession(7, KEY, 0xBEEF0002)
    hello2 = dev2.hello(make_frame(FrameType.HELLO, split(old_hello).frame.payload and
                                   decode_frame_hello(old_hello), 7, BUNDLE, 0))
    session2 = host.on_hello(split(hello2), BUNDLE, nonces(0x2000))
    dev2.open(split(session2))
    host.open(split(dev2.seal(make_frame(FrameType.STATS, KeyValues(()), 7, BUNDLE, 0))))
    assert (host.device_nonce, host.host_nonce) == (0xBEEF0002, 0x2000)
    assert dropped(host.open, split(old_up)) == "auth"
    assert dropped(dev2.open, split(old_down)) == "auth"
    # a replayed HELLO of the first boot makes the host offer a session the device refuses...
    stale = host.on_hello(split(old_hello), BUNDLE, nonces(0x3000))
    assert dropped(dev2.open, split(stale)) == "auth"  # bound to the old boot's nonce
    # ...and does not divert the host's frames, which stay in the current session
    assert dev2.open(split(host.seal(make_frame(FrameType.CONTROL, KeyValues(((4, 2),)), 7, BUNDLE, 3)))).type \
        == FrameType.CONTROL


def decode_frame_hello(hello_bytes: bytes):
    from tinysplit.wire.payloads import decode_payload

    return decode_payload(split(hello_bytes).frame)


def test_no_session_no_frames():
    host = HostSession(7, KEY)
    dev = DeviceSession(7, KEY, 5)
    assert dropped(host.seal, make_frame(FrameType.INPUT, Chunk(b"a"), 7, BUNDLE, 1)) == "session"
    assert dropped(dev.seal, make_frame(FrameType.LATENT, Chunk(b"a"), 7, BUNDLE, 1)) == "session"
    up = seal(make_frame(FrameType.LATENT, Chunk(b"a"), 7, BUNDLE, 1), KEY, DEVICE_TO_HOST, 5, 9, 1)
    assert dropped(host.open, split(up)) == "session"
    down = seal(make_frame(FrameType.INPUT, Chunk(b"a"), 7, BUNDLE, 1), KEY, HOST_TO_DEVICE, 5, 9, 1)
    assert dropped(dev.open, split(down)) == "session"


def test_keys_are_32_bytes_and_fingerprints_do_not_reveal_them():
    with pytest.raises(ValueError, match="32 bytes"):
        HostSession(7, b"short")
    fp = key_fingerprint(KEY)
    assert len(fp) == 16 and fp not in KEY.hex() and fp == hashlib.sha256(KEY).hexdigest()[:16]
