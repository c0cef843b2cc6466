"""Consistent Overhead Byte Stuffing, and a stream deframer for serial links (0x00 delimits frames)."""

from __future__ import annotations

from tinysplit.wire.frame import MAX_FRAME

# COBS adds at most one byte per 254, plus one.
MAX_ENCODED = MAX_FRAME + MAX_FRAME // 254 + 1


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data``; the result contains no 0x00 (append the delimiter yourself).

    A run of 254 non-zero bytes that ends the data is not followed by an empty block
    (``01``): the shortest encoding, the one the C codec produces too.
    """
    out = bytearray()
    block = bytearray()
    after_full_block = False
    for b in data:
        after_full_block = False
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(b)
            if len(block) == 254:
                out.append(255)
                out += block
                block.clear()
                after_full_block = True
    if not after_full_block:
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(enc: bytes) -> bytes:
    """Decode one COBS block (without the delimiter). Raises ValueError on malformed input."""
    out = bytearray()
    i, n = 0, len(enc)
    while i < n:
        code = enc[i]
        end = i + code
        if code == 0 or end > n:
            raise ValueError("malformed COBS block")
        chunk = enc[i + 1:end]
        if 0 in chunk:
            raise ValueError("zero byte inside a COBS block")
        out += chunk
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


class CobsDeframer:
    """Feed bytes from a serial stream; get back complete decoded frames' bytes.

    Garbage between delimiters and over-long runs are dropped and counted, never buffered without
    bound: ``drops`` maps a reason ("cobs", "oversize") to a count.
    """

    def __init__(self, max_encoded: int = MAX_ENCODED) -> None:
        self.max_encoded = max_encoded
        self._buf = bytearray()
        self._overflow = False
        self.drops: dict[str, int] = {}

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    @property
    def pending(self) -> bool:
        """True while part of a frame is buffered (no delimiter yet)."""
        return bool(self._buf) or self._overflow

    def reset(self) -> None:
        """Forget a partly received frame (the stream broke off; what comes next starts afresh)."""
        self._buf.clear()
        self._overflow = False

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        start = 0
        while True:
            z = data.find(b"\x00", start)
            piece = data[start:] if z < 0 else data[start:z]
            if not self._overflow:
                if len(self._buf) + len(piece) > self.max_encoded:
                    self._overflow = True
                    self._buf.clear()
                else:
                    self._buf += piece
            if z < 0:
                return out
            if self._overflow:
                self._drop("oversize")
            elif self._buf:
                try:
                    out.append(cobs_decode(bytes(self._buf)))
                except ValueError:
                    self._drop("cobs")
            self._buf.clear()
            self._overflow = False
            start = z + 1
