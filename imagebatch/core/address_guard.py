"""SSRF guard: which addresses an outbound request (a worker's download, the operator's
notification) may connect to, checked where the connection is made.

A URL's host name says little: DNS may answer with a private address, change its answer between a
check and the connection (rebinding), or the host may be spelled as a number (`2130706433`,
`0177.0.0.1`). So the guard judges the *socket address actually connected*: aiohttp resolves
through `GuardedResolver` (which drops refused answers) and opens every socket through
`AddressGuard.socket_factory` (which refuses the rest, IP literals included). Every redirect hop
makes a new connection, so every hop passes through the same two gates.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
NAT64_PREFIXES = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")


class BlockedAddressError(OSError):
    """Raised instead of connecting to a refused address (an OSError, as aiohttp expects)."""

    def __init__(self, address: str, why: str) -> None:
        super().__init__(f"address {address} refused: {why}")
        self.address = address
        self.why = why


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    for prefix in NAT64_PREFIXES:
        if address in prefix:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in IPV4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _classify_v4(address: ipaddress.IPv4Address) -> str | None:
    if address.is_unspecified or address in THIS_NETWORK:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address in CGNAT:
        return "CGNAT (100.64/10)"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "reserved"
    return None


def classify(address: IPAddress | str) -> str | None:
    """Why `address` is refused as a download source, or None when it is a public address."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv4Address):
        return _classify_v4(ip)
    if ip.scope_id:
        return "scoped IPv6"
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        inner = _classify_v4(embedded)
        return f"IPv4-embedded IPv6 ({inner})" if inner else None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local or ip in SITE_LOCAL:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


@dataclass
class BlockLog:
    """Addresses refused while one download ran; tells a refusal apart from a dead server."""

    refused: list[BlockedAddressError] = field(default_factory=list)


_current_log: contextvars.ContextVar[BlockLog | None] = contextvars.ContextVar(
    "imagebatch_block_log", default=None
)


def watch_blocks() -> BlockLog:
    """Start collecting refusals for the current task (and the tasks it starts)."""
    log = BlockLog()
    _current_log.set(log)
    return log


@dataclass(frozen=True)
class AddressGuard:
    """The policy: refuse non-public addresses unless private sources are allowed, or the
    address is inside one of `allowed_networks`."""

    allow_private: bool = False
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_settings(cls, allow_private: bool, networks: Iterable[str]) -> AddressGuard:
        return cls(
            allow_private=allow_private,
            allowed_networks=tuple(ipaddress.ip_network(n, strict=False) for n in networks),
        )

    def refusal(self, host: str) -> str | None:
        """Why connecting to the literal address `host` is refused, or None if allowed."""
        if self.allow_private:
            return None
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0] if "%" in host else host)
        except ValueError:
            return "not an IP address"
        if any(ip.version == net.version and ip in net for net in self.allowed_networks):
            return None
        return classify(ip)

    def check(self, host: str) -> None:
        """Raise `BlockedAddressError` (and note it for the running download) when refused."""
        why = self.refusal(host)
        if why is not None:
            error = BlockedAddressError(host, why)
            log = _current_log.get()
            if log is not None:
                log.refused.append(error)
            raise error

    def socket_factory(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """aiohttp's hook to open each socket: the last gate, on the address about to be
        connected (IP literals never pass through the resolver)."""
        family, type_, proto, _, sockaddr = addr_info
        self.check(str(sockaddr[0]))
        return socket.socket(family=family, type=type_, proto=proto)


class GuardedResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver, then keeps only the answers the guard allows."""

    def __init__(self, guard: AddressGuard, inner: AbstractResolver | None = None) -> None:
        self._guard = guard
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed = [a for a in answers if self._guard.refusal(a["host"]) is None]
        if not allowed and answers:
            self._guard.check(answers[0]["host"])
        return allowed

    async def close(self) -> None:
        await self._inner.close()
