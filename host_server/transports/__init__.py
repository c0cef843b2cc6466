"""Transports by URL scheme: a small registry, one module per kind."""

from __future__ import annotations

from typing import Callable

from tinysplit.errors import InputError
from tinysplit.host_server.transports.base import OnFrame, Transport, TransportStats


def _udp(url: str) -> Transport:
    from tinysplit.host_server.transports.udp import UdpTransport

    return UdpTransport(url)


def _serial(url: str) -> Transport:
    from tinysplit.host_server.transports.serial_port import SerialTransport

    return SerialTransport(url)


def _loop(url: str) -> Transport:
    from tinysplit.host_server.transports.loop import LoopTransport

    return LoopTransport(url)


TRANSPORTS: dict[str, Callable[[str], Transport]] = {
    "udp": _udp,
    "serial": _serial,
    "socket": _serial,
    "loop": _loop,
}


def open_transport(url: str) -> Transport:
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in TRANSPORTS:
        raise InputError(f"'{url}': unknown transport; use one of "
                         + ", ".join(f"{s}://" for s in TRANSPORTS) + " (e.g. udp://0.0.0.0:5600, "
                         "serial:///dev/ttyACM0?baud=115200, socket://127.0.0.1:4321)")
    return TRANSPORTS[scheme](url)


__all__ = ["OnFrame", "TRANSPORTS", "Transport", "TransportStats", "open_transport"]
