"""The gateway port: what the payments domain needs from an acquirer, in its own terms."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class SavedCard:
    token: str
    saved: bool
    card_type: str | None
    first6: str | None
    last4: str | None
    expiry_month: int | None
    expiry_year: int | None


@dataclass(frozen=True)
class GatewayPayment:
    id: str
    status: str  # pending | waiting_for_capture | succeeded | canceled
    amount_kopecks: int
    currency: str
    income_kopecks: int | None
    metadata: dict[str, str]
    confirmation_url: str | None
    payment_method: SavedCard | None
    cancellation_party: str | None
    cancellation_reason: str | None
    shop_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class GatewayRefund:
    id: str
    payment_id: str
    status: str  # pending | succeeded | canceled
    amount_kopecks: int
    currency: str
    metadata: dict[str, str]
    cancellation_party: str | None
    cancellation_reason: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class GatewayPaymentMethod:
    """A card being saved without a payment (`POST /payment_methods`)."""

    id: str
    status: str  # pending | active | inactive
    saved: bool
    confirmation_url: str | None
    card: SavedCard | None  # the masked card once the member entered it
    shop_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)


class GatewayError(Exception):
    """Base of what a gateway call can raise."""


class GatewayUnknownOutcome(GatewayError):
    """Timeout, connection reset, 5xx, 202 or 429: the request may or may not have been applied.
    Resolve by asking the gateway (or replaying the same key), never by charging again."""

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class GatewayRejected(GatewayError):
    """A definite 4xx: nothing was created, and repeating the same request will not help."""

    def __init__(self, message: str, *, status: int, code: str | None, parameter: str | None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.parameter = parameter


class Gateway(Protocol):
    shop_id: str

    def create_payment(self, idempotence_key: str, body: dict[str, Any]) -> GatewayPayment: ...

    def get_payment(self, payment_id: str) -> GatewayPayment: ...

    def create_refund(self, idempotence_key: str, body: dict[str, Any]) -> GatewayRefund: ...

    def get_refund(self, refund_id: str) -> GatewayRefund: ...

    def list_refunds(self, payment_id: str) -> list[GatewayRefund]: ...

    def list_payments(
        self, *, created_from: datetime, created_until: datetime | None = None
    ) -> Iterator[GatewayPayment]:
        """Every payment created in [`created_from`, `created_until`], newest first, page by
        page. YooKassa cannot filter by metadata: callers match it themselves."""
        ...

    def create_payment_method(
        self, idempotence_key: str, body: dict[str, Any]
    ) -> GatewayPaymentMethod: ...

    def get_payment_method(self, method_id: str) -> GatewayPaymentMethod: ...


class GatewayDirectory(Protocol):
    """Which gateway (shop) serves what. A payment, a saved card and a refund belong to the shop
    that made them (`for_shop`); new payments of a member go to the shop of their organisation
    or its nearest ancestor that has one, else the installation's (`shop_for_organization`)."""

    def for_shop(self, shop_id: str) -> Gateway: ...

    def default_shop_id(self) -> str: ...

    def shop_for_organization(self, organization_id: uuid.UUID) -> str: ...
