"""Test vectors for authenticated frames (auth_vectors.json beside this file), shared by the Python
code (tinysplit.wire.auth) and the C runtime (ts_auth.c):

- SHA-256: the FIPS 180-2 examples ("abc", the 448-bit message, a million 'a') and the empty string;
- HMAC-SHA-256: RFC 4231 test cases 1 to 7 (case 5 truncated to 128 bits, as the frames' tags are);
- frames: sealed frames in both directions under one key and session, with their plain (version 1)
  encoding, and altered frames with the reason a receiver must drop them for;
- the replay window: a sequence of counters with accept or reject for each.

Regenerate deliberately with ``python -m tinysplit.wire.auth_vectors --write``; a test checks the
committed file against this builder.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import sys
from importlib import resources
from typing import Any

from tinysplit.wire.auth import (AUTH_VERSION, DEVICE_TO_HOST, HOST_TO_DEVICE, ReplayWindow, seal)
from tinysplit.wire.frame import DecodeError, FrameType, crc32, encode_frame
from tinysplit.wire.payloads import (AdaptiveOutput, Chunk, Hello, KeyValues, NairSlice, Result, Session, make_frame)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(32, 64))
DEVICE, BUNDLE = 7, 0x3B465AFA
DEVICE_NONCE, HOST_NONCE = 0x11223344, 0xA5A5A5A5

# RFC 4231 section 4: (key, data, HMAC-SHA-256 as published; case 5 is truncated to 128 bits)
RFC4231 = [
    ("0b" * 20, b"Hi There".hex(), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe".hex(), b"what do ya want for nothing?".hex(),
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("aa" * 20, "dd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)).hex(), "cd" * 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    ("0c" * 20, b"Test With Truncation".hex(), "a3b6167473100ee06e0c796c2955552b"),
    ("aa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First".hex(),
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    ("aa" * 131, (b"This is a test using a larger than block-size key and a larger than block-size data. The key "
                  b"needs to be hashed before being used by the HMAC algorithm.").hex(),
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]

# FIPS 180-2 appendix B (and the empty message): (message, count, digest)
SHA256 = [
    ("", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abc".hex(), 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".hex(), 1,
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    (b"a".hex(), 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
]


def _frames() -> list[dict[str, Any]]:
    ramp = bytes(range(256)) * 4
    d2h, h2d = DEVICE_TO_HOST, HOST_TO_DEVICE
    cases = [  # (name, frame, direction, device_nonce, host_nonce, counter)
        ("hello", make_frame(FrameType.HELLO, Hello("qemu-mps2-an386", 1 << 3, 64, 512, 4, 0), DEVICE, BUNDLE, 0),
         d2h, DEVICE_NONCE, 0, DEVICE_NONCE),
        ("session", make_frame(FrameType.SESSION, Session(DEVICE_NONCE, HOST_NONCE), DEVICE, BUNDLE, 0),
         h2d, DEVICE_NONCE, 0, 1),
        ("stats_confirm", make_frame(FrameType.STATS, KeyValues(((1, 2), (2, 1))), DEVICE, BUNDLE, 0),
         d2h, DEVICE_NONCE, HOST_NONCE, 1),
        ("input_part", make_frame(FrameType.INPUT, Chunk(bytes([0x80, 0x00, 0x7F, 0x01]) * 16), DEVICE, BUNDLE, 41,
                                  1, 3), h2d, DEVICE_NONCE, HOST_NONCE, 1),
        ("control", make_frame(FrameType.CONTROL, KeyValues(((4, 0b101),)), DEVICE, BUNDLE, 2),
         h2d, DEVICE_NONCE, HOST_NONCE, 2),
        ("result", make_frame(FrameType.RESULT, Result(3, 12, 1), DEVICE, BUNDLE, 41), h2d, DEVICE_NONCE, HOST_NONCE,
         3),
        ("nair_slice_max_payload", make_frame(FrameType.NAIR_SLICE, NairSlice(0, 16, 16, ramp[:1018]), DEVICE, BUNDLE,
                                              5), d2h, DEVICE_NONCE, HOST_NONCE, 2),
        ("adaptive_output", make_frame(FrameType.ADAPTIVE_OUTPUT, AdaptiveOutput(0b0110, 98765, bytes(range(40))),
                                       DEVICE, BUNDLE, 12), d2h, DEVICE_NONCE, HOST_NONCE, 0xFFFFFFFF),
    ]
    out = []
    for name, f, direction, dn, hn, counter in cases:
        out.append({"name": name, "direction": direction, "device_nonce": dn, "host_nonce": hn, "counter": counter,
                    "plain": encode_frame(f).hex(), "sealed": seal(f, KEY, direction, dn, hn, counter).hex()})
    return out


def _recrc(b: bytes) -> bytes:
    return b[:-4] + struct.pack("<I", crc32(b[:-4]))


def _flip(b: bytes, i: int) -> bytes:
    x = bytearray(b)
    x[i] ^= 0x01
    return _recrc(bytes(x))


def _bad(good: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Altered frames (CRC recomputed where it says so): what a receiver with KEY and the good frame's
    nonces must drop them as."""
    g = {v["name"]: v for v in good}
    ctl = g["control"]
    sealed = bytes.fromhex(ctl["sealed"])
    plen = len(sealed) - 44
    f = make_frame(FrameType.CONTROL, KeyValues(((4, 0b101),)), DEVICE, BUNDLE, 2)
    cases = [
        ("payload_bit_flipped", _flip(sealed, 20), "auth"),
        ("device_id_changed", _flip(sealed, 4), "auth"),
        ("seq_changed", _flip(sealed, 10), "auth"),
        ("counter_changed", _flip(sealed, 20 + plen), "auth"),
        ("tag_bit_flipped", _flip(sealed, 20 + plen + 4 + 15), "auth"),
        ("other_key", seal(f, OTHER_KEY, HOST_TO_DEVICE, DEVICE_NONCE, HOST_NONCE, 2), "auth"),
        ("other_session", seal(f, KEY, HOST_TO_DEVICE, DEVICE_NONCE, HOST_NONCE ^ 1, 2), "auth"),
        ("other_direction", seal(f, KEY, DEVICE_TO_HOST, DEVICE_NONCE, HOST_NONCE, 2), "auth"),
        ("plain_version_1", bytes.fromhex(ctl["plain"]), "unauthenticated"),
        ("crc_wrong", sealed[:-1] + bytes([sealed[-1] ^ 0xFF]), "crc"),
        ("tag_cut", _recrc(sealed[:-8] + sealed[-4:]), "length"),
        ("version_3", _recrc(sealed[:2] + bytes([3]) + sealed[3:]), "version"),
    ]
    return [{"name": n, "of": "control", "direction": HOST_TO_DEVICE, "device_nonce": DEVICE_NONCE,
             "host_nonce": HOST_NONCE, "hex": b.hex(), "reason": r} for n, b, r in cases]


WINDOW_SEQUENCE = [1, 2, 3, 2, 70, 6, 7, 7, 0, 69, 1000, 937, 936, 1000, 999, 2000, 1937, 5000]


def _window() -> list[dict[str, Any]]:
    w, out = ReplayWindow(), []
    for c in WINDOW_SEQUENCE:
        try:
            w.check(c)
        except DecodeError:
            out.append({"counter": c, "accept": False})
            continue
        w.accept(c)
        out.append({"counter": c, "accept": True})
    return out


def build() -> dict[str, Any]:
    frames = _frames()
    for key, data, want in RFC4231:  # the library agrees with the RFC, or the vectors are not written
        got = hmac.new(bytes.fromhex(key), bytes.fromhex(data), hashlib.sha256).hexdigest()[:len(want)]
        assert got == want, (key, got)
    for msg, count, want in SHA256:
        assert hashlib.sha256(bytes.fromhex(msg) * count).hexdigest() == want
    return {"format": "tinysplit-auth-vectors", "version": AUTH_VERSION,
            "key": KEY.hex(), "other_key": OTHER_KEY.hex(), "device": DEVICE, "bundle": BUNDLE,
            "sha256": [{"message": m, "repeat": c, "digest": d} for m, c, d in SHA256],
            "hmac_sha256": [{"key": k, "data": d, "mac": m} for k, d, m in RFC4231],
            "frames": frames, "bad": _bad(frames), "window": _window()}


def load() -> dict[str, Any]:
    return json.loads(resources.files("tinysplit.wire").joinpath("auth_vectors.json").read_text())


def main(argv: list[str]) -> int:
    text = json.dumps(build(), indent=1) + "\n"
    if argv == ["--write"]:
        from pathlib import Path

        Path(__file__).with_name("auth_vectors.json").write_text(text)
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
