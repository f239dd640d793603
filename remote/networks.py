"""Management networks: the only addresses the worker opens a connection to for a customer.

Audit finding (security-audit-2026-12, "port scanner"): "Test connection" and the mail-port check
answered differently for closed and open ports on any address a customer's operator typed. With a
customer's management networks set (or the installation's `FLEET_MANAGEMENT_NETWORKS`), every
address the server's name resolves to must lie inside one of them, checked here — in the transport,
before a socket is opened — whatever page or path started the run.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from remote.errors import OutsideManagementNetworks

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """CIDR entries (a bare address is a /32 or /128); ValueError names the first bad one."""
    out: list[Network] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry[:60]!r} is not an IP network (e.g. 10.20.0.0/16)") from None
    return tuple(out)


def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address `host` resolves to (an IP literal is itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos}, key=str)


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def require_inside(host: str, port: int, networks: tuple[str, ...]) -> Address | None:
    """Raise OutsideManagementNetworks unless every address of `host` is inside `networks` (empty: any).

    Returns the vetted address the caller must connect to (the first, in sorted order), so that the
    name is not resolved a second time between the check and the connection (DNS rebinding: a name
    answering an inside address for the check, then another for the socket); None when `networks`
    is empty (no restriction, nothing to pin).
    """
    if not networks:
        return None
    allowed = parse_networks(networks)
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        raise OutsideManagementNetworks("the host name does not resolve", host=host) from None
    for address in addresses:
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        if not any((mapped or address) in network for network in allowed):
            raise OutsideManagementNetworks(
                "the host's address is outside the customer's management networks", host=host
            )
    return addresses[0]
