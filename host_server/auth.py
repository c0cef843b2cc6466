"""The server's gate for authenticated frames (docs/wire-protocol.md, "Authenticated frames").

Every frame from a device is verified before any state is kept for it: its device id must have a key
(else `unknown_device`), its tag must verify under that key and the device's session (`auth`), its
counter must be new in the session's replay window (`replay`), and it must come after a HELLO
(`session`). A HELLO that verifies gets a SESSION frame back, to the peer that sent it. State is
one ``HostSession`` per device of the key file, so an attacker cannot grow it. Results and CONTROL
frames to a device are sealed in its session and go to the peer of its last authenticated frame.
"""

from __future__ import annotations

import secrets
from typing import Callable, Mapping, NamedTuple

from tinysplit.wire import DecodeError, Frame, FrameType
from tinysplit.wire.auth import HostSession, split


class Admitted(NamedTuple):
    frame: Frame
    reply: bytes | None  # a HELLO's SESSION frame, to send to the HELLO's sender
    started: Frame | None  # the HELLO of the session this frame confirmed (the device (re)started), or None


class AuthGate:
    def __init__(self, keys: Mapping[int, bytes], bundle_id: int,
                 new_nonce: Callable[[], int] = lambda: secrets.randbits(32)) -> None:
        self.keys = dict(keys)
        self.bundle_id = bundle_id
        self.new_nonce = new_nonce
        self.sessions: dict[int, HostSession] = {}
        self.hellos: dict[int, Frame] = {}  # the last HELLO per device, until a session confirms it

    def session(self, device: int) -> HostSession:
        hs = self.sessions.get(device)
        if hs is None:
            if device not in self.keys:
                raise DecodeError("unknown_device", f"device {device} has no key")
            hs = self.sessions[device] = HostSession(device, self.keys[device])
        return hs

    def admit(self, data: bytes) -> Admitted:
        """The verified frame; for a HELLO, the SESSION frame to send back; DecodeError otherwise.

        A HELLO only gets its SESSION: a recorded HELLO verifies as well as a fresh one, so it changes
        nothing else. The frame that confirms a new session (the device's first under it) carries
        ``started``: the HELLO it answers, for the server to treat as the device's (re)start."""
        s = split(data)
        if s.frame.bundle_id != self.bundle_id:
            raise DecodeError("bundle", f"bundle {s.frame.bundle_id:08x}")
        hs = self.session(s.frame.device_id)
        if s.frame.type == FrameType.HELLO:
            reply = hs.on_hello(s, self.bundle_id, self.new_nonce)
            self.hellos[s.frame.device_id] = s.frame
            return Admitted(s.frame, reply, None)
        had_pending = hs.pending
        frame = hs.open(s)
        started = self.hellos.pop(frame.device_id, None) if had_pending is not None and hs.pending is None else None
        return Admitted(frame, None, started)

    def seal(self, frame: Frame) -> bytes:
        """A host -> device frame in the device's session; DecodeError('session') before its HELLO."""
        hs = self.sessions.get(frame.device_id)
        if hs is None:
            raise DecodeError("session", f"device {frame.device_id} has not said HELLO")
        return hs.seal(frame)

    def has_session(self, device: int) -> bool:
        hs = self.sessions.get(device)
        return hs is not None and (hs.host_nonce != 0 or hs.pending is not None)
