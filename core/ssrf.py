"""SSRF guard for URLs that customers give us and that our servers then call.

Checked twice: when the URL is registered, and again right before every connection, because a
name that resolved to a public address yesterday may resolve to 127.0.0.1 today (DNS
rebinding). The caller then connects to the very address vetted here (`Target.address`), so a
second lookup by the HTTP stack cannot be steered elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog

from core.errors import InvalidInput

log = structlog.get_logger("core.ssrf")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# socket.getaddrinfo's shape; tests inject a stub to play DNS games.
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

MAX_URL_LENGTH = 2048
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Always refused, even in development: cloud metadata services live here.
_METADATA = ipaddress.ip_network("169.254.0.0/16")
_ULA = ipaddress.ip_network("fc00::/7")


class UnsafeUrl(InvalidInput):
    type_slug = "unsafe-url"
    title = "URL not allowed"


@dataclass(frozen=True)
class Target:
    """A URL whose host was resolved and vetted; connect to `address`, present `host`."""

    url: str
    scheme: str
    host: str
    port: int
    address: IPAddress


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, for the forms that route to it."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_private(address: IPAddress) -> bool:
    """Loopback and private ranges: what a developer's own machine and LAN use."""
    if address.is_loopback:
        return True
    if isinstance(address, ipaddress.IPv4Address):
        return (
            address in ipaddress.ip_network("10.0.0.0/8")
            or address in ipaddress.ip_network("172.16.0.0/12")
            or address in ipaddress.ip_network("192.168.0.0/16")
        )
    return address in _ULA


def blocked_reason(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why we must not connect to this address, or None when it is a public unicast one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "scoped IPv6 address"
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return blocked_reason(embedded, allow_private=allow_private)
        if address.teredo is not None:
            return "Teredo tunnel address"
    if address.is_unspecified:
        return "unspecified address"
    if address.is_multicast:
        return "multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _METADATA:
        return "link-local or metadata address"
    if address.is_link_local:
        return "link-local address"
    if _is_private(address):
        return None if allow_private else "private or loopback address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "carrier-grade NAT address"
    if address.is_reserved or address.is_private or not address.is_global:
        return "reserved or non-global address"
    return None


def _literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, including the forms C resolvers accept and humans
    do not read as addresses (2130706433, 0x7f000001, 017700000001, 127.1)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host.replace(".", "").replace("x", "").replace("X", "").isalnum() and (
        host[-1:].isdigit() or host.lower().startswith("0x")
    ):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


class UrlGuard:
    def __init__(
        self,
        *,
        allow_private_targets: bool = False,
        resolve: Resolver = socket.getaddrinfo,
    ) -> None:
        self.allow_private_targets = allow_private_targets
        # Public on purpose: tests swap the resolver to stage DNS rebinding.
        self.resolve = resolve
        if allow_private_targets:
            log.warning(
                "ssrf.private_targets_allowed",
                detail="webhook URLs may point at loopback and private networks; "
                "never enable this in production",
            )

    def check_registration(self, url: str) -> Target:
        """Refuse a URL at registration: bad shape, or a host that resolves anywhere unsafe."""
        return self.vet(url)

    def vet(self, url: str) -> Target:
        """Parse, resolve and vet a URL; every address the name resolves to must be safe."""
        scheme, host, port = self._parse(url)
        literal = _literal_address(host)
        if literal is not None:
            self._refuse_if_blocked(literal)
            if isinstance(literal, ipaddress.IPv4Address) and str(literal) != host:
                # Resolvers disagree on these forms; refuse rather than guess which one wins.
                raise UnsafeUrl("the host is a numeric address in a non-standard form", field="url")
            return Target(url=url, scheme=scheme, host=host, port=port, address=literal)
        addresses = self._lookup(host, port)
        for address in addresses:
            self._refuse_if_blocked(address)
        return Target(url=url, scheme=scheme, host=host, port=port, address=addresses[0])

    def _parse(self, url: str) -> tuple[str, str, int]:
        if len(url) > MAX_URL_LENGTH or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
            raise UnsafeUrl("the URL is too long or holds control characters", field="url")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UnsafeUrl("the URL cannot be parsed", field="url") from exc
        scheme = parts.scheme.lower()
        allowed = ("https", "http") if self.allow_private_targets else ("https",)
        if scheme not in allowed:
            raise UnsafeUrl(f"the URL scheme must be one of {', '.join(allowed)}", field="url")
        if "@" in parts.netloc or parts.username is not None or parts.password is not None:
            raise UnsafeUrl("credentials in the URL are not allowed", field="url")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise UnsafeUrl("the URL has no host", field="url")
        is_local_name = host.lower() == "localhost" or host.lower().endswith(".localhost")
        if is_local_name and not self.allow_private_targets:
            raise UnsafeUrl("the URL points at this machine", field="url")
        return scheme, host.lower(), port or (443 if scheme == "https" else 80)

    def _lookup(self, host: str, port: int) -> list[IPAddress]:
        try:
            infos = self.resolve(host, port, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:
            raise UnsafeUrl("the URL's host does not resolve", field="url") from exc
        addresses: list[IPAddress] = []
        for info in infos:
            try:
                address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            except (ValueError, IndexError) as exc:
                raise UnsafeUrl("the URL's host resolves to an odd address", field="url") from exc
            if isinstance(address, ipaddress.IPv6Address) and "%" in str(info[4][0]):
                raise UnsafeUrl("the URL's host resolves to a scoped address", field="url")
            addresses.append(address)
        if not addresses:
            raise UnsafeUrl("the URL's host does not resolve", field="url")
        return addresses

    def _refuse_if_blocked(self, address: IPAddress) -> None:
        reason = blocked_reason(address, allow_private=self.allow_private_targets)
        if reason is not None:
            # The address is ours to log, the URL (possibly with a token in its path) is not.
            log.info("ssrf.blocked", reason=reason)
            raise UnsafeUrl(f"the URL points at a {reason}", field="url")
