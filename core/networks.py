"""IP networks: parsing with the stdlib `ipaddress` module, membership, and finding the real
client behind reverse proxies.

Everything here fails closed: an address that does not parse belongs to no network, so a
caller judging a sender refuses it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The networks YooKassa sends HTTP notifications from, copied from the official SDK
# (PyPI `yookassa` 3.13.0, `yookassa/domain/common/security_helper.py`,
# `SecurityHelper.YOOKASSA_NETWORKS`). Only `payments/gateway/` may import the SDK, so the list
# lives here; `tests/webhooks/test_networks.py` fails when the SDK's list changes. Older sources
# give `2a02:5180::/32` instead of the four /64s, which is why settings can replace the list
# (VZNOS_YOOKASSA_NOTIFICATION_NETWORKS).
YOOKASSA_NOTIFICATION_NETWORKS: tuple[str, ...] = (
    "77.75.153.0/25",
    "77.75.156.11",
    "77.75.156.35",
    "77.75.154.128/25",
    "185.71.76.0/27",
    "185.71.77.0/27",
    "2a02:5180:0:1509::/64",
    "2a02:5180:0:2655::/64",
    "2a02:5180:0:1533::/64",
    "2a02:5180:0:2669::/64",
)

LOOPBACK_NETWORKS: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


def parse_networks(value: str | Iterable[str | Network]) -> tuple[Network, ...]:
    """Comma-separated CIDRs (or an iterable of them) as networks. Host bits set in a CIDR
    (`185.71.76.5/27`) are a configuration mistake and raise ValueError rather than silently
    widening or narrowing the range."""
    items = value.split(",") if isinstance(value, str) else value
    networks: list[Network] = []
    for item in items:
        if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(item)
            continue
        text = item.strip()
        if text:
            networks.append(ipaddress.ip_network(text, strict=True))
    return tuple(networks)


def parse_address(value: str | None) -> Address | None:
    """An IP address, or None for anything else. An IPv4-mapped IPv6 address
    (`::ffff:185.71.76.5`, as a dual-stack socket reports IPv4 peers) is its IPv4 address, so
    IPv4 allow-lists judge it."""
    if value is None:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_in(address: Address | None, networks: Iterable[Network]) -> bool:
    if address is None:
        return False
    # `in` is False across IP versions, so an IPv6 address never matches an IPv4 network.
    return any(address in network for network in networks)


def client_address(
    peer: str | None,
    forwarded_for: Sequence[str],
    trusted_proxies: Sequence[Network],
) -> Address | None:
    """The address of the client that sent a request through zero or more reverse proxies.

    `peer` is the socket's remote address; `forwarded_for` the `X-Forwarded-For` header values in
    the order received. Only a trusted proxy may speak for someone else, so the walk starts at the
    peer and goes right to left through the header while the current hop is a trusted proxy; the
    first hop that is not one is the client. Entries left of it were written by whoever that
    client is and prove nothing. A hop that does not parse ends the walk with None (refuse).
    """
    current = parse_address(peer)
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    while current is not None and hops and address_in(current, trusted_proxies):
        current = parse_address(hops.pop())
    return current
