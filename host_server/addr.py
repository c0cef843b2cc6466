"""HOST:PORT as the server's options take them: IPv4 addresses and names as they are, IPv6 addresses in
brackets (``[::1]:9100``), and whether an address means every interface."""

from __future__ import annotations

import ipaddress
import logging

from tinysplit.errors import InputError

log = logging.getLogger(__name__)


def split_host_port(text: str, what: str, default_host: str) -> tuple[str, int]:
    """``HOST:PORT`` / ``[IPV6]:PORT`` / ``:PORT`` -> (host without brackets, port); InputError naming
    ``what`` (an option or a URL) otherwise. An empty host is ``default_host``."""
    example = f"{what} takes HOST:PORT, [IPV6]:PORT or :PORT (e.g. 127.0.0.1:9100 or [::1]:9100)"
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(f"{what} '{text}': the port must be a number 0..65535 after the last ':'; {example}")
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1] if host.startswith("[") and host.endswith("]") else None
        try:
            ipaddress.IPv6Address(inner if inner is not None else "?")
        except ValueError:
            raise InputError(f"{what} '{text}': '{host}' is not a bracketed IPv6 address; {example}") from None
        return inner, int(port)
    if ":" in host:
        raise InputError(f"{what} '{text}': an IPv6 address goes in brackets, as in [{host}]:{port}; {example}")
    if any(c.isspace() or c in "/[]@" for c in host):
        raise InputError(f"{what} '{text}': '{host}' is not a host name or address; {example}")
    return host or default_host, int(port)


def host_port_text(host: str, port: int) -> str:
    """The address for people and URLs: IPv6 in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_all_interfaces(host: str) -> bool:
    """True for the wildcard addresses (0.0.0.0, ::, empty) that bind every interface."""
    if host in ("", "*"):
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def warn_if_all_interfaces(host: str, port: int, what: str) -> None:
    """Log a WARNING when ``host`` binds every interface: ``what`` is then open to the network."""
    if is_all_interfaces(host):
        log.warning("%s listens on ALL interfaces (%s): any host that can reach this machine can reach it; "
                    "give 127.0.0.1 (or one interface's address) unless that is what you want",
                    what, host_port_text(host or "0.0.0.0", port))
