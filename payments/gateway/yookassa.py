"""The YooKassa adapter: our own httpx transport, the official SDK's models for checking.

The SDK's `Configuration` is global class state and its client has no timeouts and invents an
idempotence key when none is passed, so requests go through one `httpx.Client` per shop with the
attempt's key, and the SDK is used only to validate request bodies and parse responses.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import structlog
from yookassa.domain.request.payment_method_request import SavePaymentMethodDataRequest
from yookassa.domain.request.payment_request import PaymentRequest
from yookassa.domain.request.refund_request import RefundRequest
from yookassa.domain.response.payment_method_response import SavePaymentMethodResponse
from yookassa.domain.response.payment_response import PaymentResponse
from yookassa.domain.response.refund_response import RefundResponse

from payments.gateway.port import (
    GatewayPayment,
    GatewayPaymentMethod,
    GatewayRefund,
    GatewayRejected,
    GatewayUnknownOutcome,
    SavedCard,
)

log = structlog.get_logger("payments.gateway")


def _kopecks(amount: dict[str, Any] | None) -> int | None:
    if not amount:
        return None
    value = Decimal(str(amount["value"]))
    kopecks = value * 100
    if kopecks != kopecks.to_integral_value():
        raise ValueError(f"amount with more than two decimals: {amount['value']!r}")
    return int(kopecks)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def parse_payment(raw: dict[str, Any]) -> GatewayPayment:
    PaymentResponse(raw)  # the SDK's own model rejects malformed objects
    amount = raw["amount"]
    method = raw.get("payment_method") or None
    card = (method or {}).get("card") or {}
    cancellation = raw.get("cancellation_details") or {}
    confirmation = raw.get("confirmation") or {}
    recipient = raw.get("recipient") or {}
    amount_kopecks = _kopecks(amount)
    assert amount_kopecks is not None
    return GatewayPayment(
        id=str(raw["id"]),
        status=str(raw["status"]),
        amount_kopecks=amount_kopecks,
        currency=str(amount["currency"]),
        income_kopecks=_kopecks(raw.get("income_amount")),
        metadata={str(k): str(v) for k, v in (raw.get("metadata") or {}).items()},
        confirmation_url=confirmation.get("confirmation_url"),
        payment_method=(
            SavedCard(
                token=str(method["id"]),
                saved=bool(method.get("saved") is True),
                card_type=card.get("card_type"),
                first6=card.get("first6"),
                last4=card.get("last4"),
                expiry_month=_int_or_none(card.get("expiry_month")),
                expiry_year=_int_or_none(card.get("expiry_year")),
            )
            if method and method.get("id")
            else None
        ),
        cancellation_party=cancellation.get("party"),
        cancellation_reason=cancellation.get("reason"),
        shop_id=recipient.get("account_id"),
        raw=raw,
    )


def parse_refund(raw: dict[str, Any]) -> GatewayRefund:
    RefundResponse(raw)  # the SDK's own model rejects malformed objects
    amount = raw["amount"]
    amount_kopecks = _kopecks(amount)
    assert amount_kopecks is not None
    cancellation = raw.get("cancellation_details") or {}
    return GatewayRefund(
        id=str(raw["id"]),
        payment_id=str(raw["payment_id"]),
        status=str(raw["status"]),
        amount_kopecks=amount_kopecks,
        currency=str(amount["currency"]),
        metadata={str(k): str(v) for k, v in (raw.get("metadata") or {}).items()},
        cancellation_party=cancellation.get("party"),
        cancellation_reason=cancellation.get("reason"),
        raw=raw,
    )


def parse_payment_method(raw: dict[str, Any]) -> GatewayPaymentMethod:
    SavePaymentMethodResponse(raw)  # the SDK's own model rejects malformed objects
    card = raw.get("card") or None
    confirmation = raw.get("confirmation") or {}
    holder = raw.get("holder") or {}
    return GatewayPaymentMethod(
        id=str(raw["id"]),
        status=str(raw["status"]),
        saved=raw.get("saved") is True,
        confirmation_url=confirmation.get("confirmation_url"),
        card=(
            SavedCard(
                token=str(raw["id"]),
                saved=raw.get("saved") is True,
                card_type=card.get("card_type"),
                first6=card.get("first6"),
                last4=card.get("last4"),
                expiry_month=_int_or_none(card.get("expiry_month")),
                expiry_year=_int_or_none(card.get("expiry_year")),
            )
            if isinstance(card, dict)
            else None
        ),
        shop_id=holder.get("account_id"),
        raw=raw,
    )


class YooKassaGateway:
    def __init__(
        self,
        *,
        shop_id: str,
        secret_key: str,
        api_url: str,
        connect_timeout_seconds: float = 5.0,
        read_timeout_seconds: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.shop_id = shop_id
        self._client = httpx.Client(
            base_url=api_url.rstrip("/") + "/",
            auth=(shop_id, secret_key),
            timeout=httpx.Timeout(read_timeout_seconds, connect=connect_timeout_seconds),
            headers={"Content-Type": "application/json"},
            follow_redirects=False,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def create_payment(self, idempotence_key: str, body: dict[str, Any]) -> GatewayPayment:
        PaymentRequest(body).validate()
        raw = self._request("POST", "payments", json=body, idempotence_key=idempotence_key)
        return self._parsed(raw)

    def get_payment(self, payment_id: str) -> GatewayPayment:
        return self._parsed(self._request("GET", f"payments/{payment_id}"))

    def create_refund(self, idempotence_key: str, body: dict[str, Any]) -> GatewayRefund:
        RefundRequest(body).validate()
        raw = self._request("POST", "refunds", json=body, idempotence_key=idempotence_key)
        return self._parsed_refund(raw)

    def account_id(self) -> str:
        """The shop these credentials open (GET /me): a cheap check that they work."""
        account = self._request("GET", "me").get("account_id")
        if not isinstance(account, str):
            raise GatewayUnknownOutcome("unreadable account object")
        return account

    def get_refund(self, refund_id: str) -> GatewayRefund:
        return self._parsed_refund(self._request("GET", f"refunds/{refund_id}"))

    def list_refunds(self, payment_id: str) -> list[GatewayRefund]:
        """Every refund of a payment, following the gateway's cursor."""
        found: list[GatewayRefund] = []
        params: dict[str, str] = {"payment_id": payment_id, "limit": "100"}
        for _ in range(100):  # a payment has at most a handful of refunds; never loop forever
            page = self._request("GET", "refunds", params=params)
            items = page.get("items")
            if not isinstance(items, list):
                raise GatewayUnknownOutcome("unreadable refund list")
            found += [self._parsed_refund(item) for item in items if isinstance(item, dict)]
            cursor = page.get("next_cursor")
            if not isinstance(cursor, str) or not cursor:
                break
            params = {**params, "cursor": cursor}
        return found

    def _parsed_refund(self, raw: dict[str, Any]) -> GatewayRefund:
        try:
            return parse_refund(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise GatewayUnknownOutcome(f"unreadable refund object: {exc}") from exc

    def list_payments(
        self, *, created_from: datetime, created_until: datetime | None = None
    ) -> Iterator[GatewayPayment]:
        params: dict[str, str] = {
            "created_at.gte": _wire_time(created_from),
            "limit": str(LIST_PAGE_SIZE),
        }
        if created_until is not None:
            params["created_at.lte"] = _wire_time(created_until)
        while True:
            page = self._request("GET", "payments", params=params)
            items = page.get("items")
            if not isinstance(items, list):
                raise GatewayUnknownOutcome("unreadable payment list")
            for raw in items:
                yield self._parsed(raw)
            cursor = page.get("next_cursor")
            if not cursor:
                return
            # The next page needs the same filters plus the cursor (yookassa-detail.md §11).
            params = {**params, "cursor": str(cursor)}

    def create_payment_method(
        self, idempotence_key: str, body: dict[str, Any]
    ) -> GatewayPaymentMethod:
        """Save a card without charging it; the member confirms it on the acquirer's page."""
        SavePaymentMethodDataRequest(body).validate()
        raw = self._request("POST", "payment_methods", json=body, idempotence_key=idempotence_key)
        return self._parsed_method(raw)

    def get_payment_method(self, method_id: str) -> GatewayPaymentMethod:
        return self._parsed_method(self._request("GET", f"payment_methods/{method_id}"))

    def _parsed_method(self, raw: dict[str, Any]) -> GatewayPaymentMethod:
        try:
            return parse_payment_method(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise GatewayUnknownOutcome(f"unreadable payment method object: {exc}") from exc

    def _parsed(self, raw: dict[str, Any]) -> GatewayPayment:
        try:
            return parse_payment(raw)
        except (KeyError, TypeError, ValueError) as exc:
            # A body we cannot read proves nothing about what happened: treat it as unknown.
            raise GatewayUnknownOutcome(f"unreadable payment object: {exc}") from exc

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        idempotence_key: str | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Idempotence-Key": idempotence_key} if idempotence_key else {}
        try:
            response = self._client.request(method, path, json=json, headers=headers, params=params)
        except httpx.TransportError as exc:
            log.warning("gateway.transport_error", path=path, error=type(exc).__name__)
            raise GatewayUnknownOutcome(f"{type(exc).__name__} talking to the gateway") from exc
        body = self._json(response)
        if response.status_code == 200:
            return body
        retry_after = _retry_after_seconds(response, body)
        if response.status_code in (202, 429) or response.status_code >= 500:
            log.warning("gateway.unknown_outcome", path=path, status=response.status_code)
            raise GatewayUnknownOutcome(
                f"gateway answered {response.status_code}", retry_after_seconds=retry_after
            )
        code = body.get("code") if isinstance(body, dict) else None
        parameter = body.get("parameter") if isinstance(body, dict) else None
        description = body.get("description") if isinstance(body, dict) else None
        log.warning("gateway.rejected", path=path, status=response.status_code, code=code)
        raise GatewayRejected(
            f"gateway rejected the request: {response.status_code} {code}: {description}",
            status=response.status_code,
            code=code,
            parameter=parameter,
        )

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = {}
        return body if isinstance(body, dict) else {}


LIST_PAGE_SIZE = 100  # YooKassa's maximum


def _wire_time(instant: datetime) -> str:
    utc = instant.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _retry_after_seconds(response: httpx.Response, body: dict[str, Any]) -> float | None:
    if isinstance(body.get("retry_after"), int | float):
        return float(body["retry_after"]) / 1000.0  # YooKassa gives milliseconds in the body
    header = response.headers.get("Retry-After")
    if header and header.isdigit():
        return float(header)
    return None


class SingleShopDirectory:
    """Every organisation is served by one shop: for tools and tests that need no database
    (the application uses `payments.shops.directory.ShopDirectory`)."""

    def __init__(self, gateway: YooKassaGateway) -> None:
        self._gateway = gateway

    def for_shop(self, shop_id: str) -> YooKassaGateway:
        if shop_id != self._gateway.shop_id:
            raise LookupError(f"no gateway configured for shop {shop_id!r}")
        return self._gateway

    def default_shop_id(self) -> str:
        return self._gateway.shop_id

    def shop_for_organization(self, organization_id: uuid.UUID) -> str:
        return self._gateway.shop_id

    def close(self) -> None:
        self._gateway.close()
