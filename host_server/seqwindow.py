"""A sliding window over one device's sequence numbers (as IPsec's and DTLS's anti-replay windows):
the newest seq used and a bitmap of which of the ``size`` seqs behind it were used. Memory is
``size`` bits whatever the traffic (128 bytes for 1024 seqs), where a set of recent seqs costs
about 100 bytes per entry.

A seq ahead of the newest is new; one within the window is new or already used; one ``size`` or
more behind the newest is stale: too old to tell, so the caller drops it (reason ``stale``). Seqs
are u32 and compared with serial-number arithmetic (RFC 1982), so the window works across the
wrap from 0xFFFFFFFF to 0.
"""

from __future__ import annotations

from enum import Enum

SEQ_WINDOW = 1024  # seqs remembered behind the newest one, per device (per bundle for RoCoIn)
_MOD = 1 << 32


class Seen(Enum):
    NEW = "new"
    USED = "used"
    STALE = "stale"


class SeqWindow:
    __slots__ = ("size", "top", "bits")

    def __init__(self, size: int = SEQ_WINDOW) -> None:
        if size < 1:
            raise ValueError("a sequence window holds at least one seq")
        self.size = size
        self.top: int | None = None  # newest seq used
        self.bits = 0  # bit i: seq (top - i) was used

    def _behind(self, seq: int) -> int:
        """How far ``seq`` is behind the newest (negative: ahead of it)."""
        d = (self.top - seq) % _MOD
        return d if d < _MOD // 2 else d - _MOD

    def check(self, seq: int) -> Seen:
        if self.top is None:
            return Seen.NEW
        b = self._behind(seq)
        if b < 0:
            return Seen.NEW
        if b >= self.size:
            return Seen.STALE
        return Seen.USED if (self.bits >> b) & 1 else Seen.NEW

    def mark(self, seq: int) -> None:
        """Record ``seq`` as used (a seq already stale is ignored: it cannot be used again anyway)."""
        if self.top is None:
            self.top, self.bits = seq % _MOD, 1
            return
        b = self._behind(seq)
        if b < 0:
            self.bits = ((self.bits << -b) | 1) & ((1 << self.size) - 1)
            self.top = seq % _MOD
        elif b < self.size:
            self.bits |= 1 << b
