"""Who may send us gateway notifications, and how big they may be.

YooKassa does not sign notifications, so the sender's address is the only authentication there
is (the body is then only a hint: the object is re-read from the gateway before anything
changes). The decision is a pure function of the socket's peer, the `X-Forwarded-For` header
and configuration, so it can be tested exhaustively without a server.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from core.networks import (
    YOOKASSA_NOTIFICATION_NETWORKS,
    Address,
    Network,
    address_in,
    client_address,
    parse_networks,
)
from core.settings import Settings

DEFAULT_MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class SenderVerdict:
    allowed: bool
    address: Address | None  # the resolved client; None when it could not be determined


@dataclass(frozen=True)
class InboundPolicy:
    allowed_networks: tuple[Network, ...] = parse_networks(YOOKASSA_NOTIFICATION_NETWORKS)
    trusted_proxies: tuple[Network, ...] = ()
    from_anywhere: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> InboundPolicy:
        return cls(
            allowed_networks=settings.yookassa_notification_networks,
            trusted_proxies=settings.trusted_proxies,
            from_anywhere=settings.yookassa_notifications_from_anywhere,
            max_body_bytes=settings.webhook_max_body_bytes,
        )

    def judge_sender(self, peer: str | None, forwarded_for: Sequence[str]) -> SenderVerdict:
        address = client_address(peer, forwarded_for, self.trusted_proxies)
        if self.from_anywhere:
            return SenderVerdict(True, address)
        return SenderVerdict(address_in(address, self.allowed_networks), address)


class Counter:
    """A number that only goes up, safe to bump from the server's threads. Metrics export
    comes later; until then tests and operators read `value`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def increment(self) -> None:
        with self._lock:
            self._value += 1

    @property
    def value(self) -> int:
        with self._lock:
            return self._value
