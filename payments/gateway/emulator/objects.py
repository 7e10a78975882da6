"""Building and moving YooKassa objects (payment, refund, payment method) between statuses.

Pure functions over the public JSON dicts, so the engine keeps one representation that is at once
what the API answers, what notifications carry and what the state file stores.
"""

from __future__ import annotations

import secrets
import uuid
import zlib
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from payments.gateway.emulator.listing import format_time, parse_time
from payments.gateway.emulator.validation import Money

FEE_RATE = Decimal("0.035")
KOPECK = Decimal("0.01")
CAPTURE_HOLD = timedelta(days=7)
CONFIRMATION_WINDOW = timedelta(hours=1)


def new_id() -> str:
    return str(uuid.uuid4())


def gateway_id(shop_id: str) -> str:
    # Stable per shop, shaped like YooKassa's numeric gateway ids.
    return str(100000 + zlib.crc32(shop_id.encode()) % 900000)


def income(amount: Money) -> Money:
    fee = (amount.value * FEE_RATE).quantize(KOPECK, rounding=ROUND_HALF_UP)
    return Money(amount.value - fee, amount.currency)


def _digits(n: int) -> str:
    return "".join(str(secrets.randbelow(10)) for _ in range(n))


def new_payment(
    payment_id: str,
    shop_id: str,
    amount: Money,
    now: datetime,
    description: str | None,
    metadata: dict[str, Any] | None,
    merchant_customer_id: str | None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": payment_id,
        "status": "pending",
        "paid": False,
        "amount": amount.as_json(),
    }
    if description is not None:
        obj["description"] = description
    obj["recipient"] = {"account_id": shop_id, "gateway_id": gateway_id(shop_id)}
    obj["created_at"] = format_time(now)
    obj["test"] = True
    obj["refundable"] = False
    obj["metadata"] = dict(metadata or {})
    if merchant_customer_id is not None:
        obj["merchant_customer_id"] = merchant_customer_id
    return obj


def confirmation_for(confirmation: dict[str, Any], object_id: str, url: str) -> dict[str, Any]:
    if confirmation["type"] == "embedded":
        return {"type": "embedded", "confirmation_token": f"ct-{object_id}"}
    result = dict(confirmation)
    result["confirmation_url"] = url
    return result


def card_title(card: dict[str, str]) -> str:
    return f"Bank card *{card['last4']}"


def bank_card_method(
    method_id: str, card: dict[str, str] | None, saved: bool, status: str
) -> dict[str, Any]:
    method: dict[str, Any] = {
        "type": "bank_card",
        "id": method_id,
        "saved": saved,
        "status": status,
    }
    if card is not None:
        method["title"] = card_title(card)
        method["card"] = dict(card)
    return method


def mark_paid(obj: dict[str, Any], capture: bool, three_ds: bool, now: datetime) -> None:
    obj.pop("confirmation", None)
    obj["paid"] = True
    obj["income_amount"] = income(Money.from_json(obj["amount"])).as_json()
    obj["authorization_details"] = {
        "rrn": _digits(12),
        "auth_code": _digits(6),
        "three_d_secure": {"applied": three_ds},
    }
    if capture:
        capture_payment(obj, None, now)
    else:
        obj["status"] = "waiting_for_capture"
        obj["expires_at"] = format_time(now + CAPTURE_HOLD)


def capture_payment(obj: dict[str, Any], amount: Money | None, now: datetime) -> None:
    if amount is not None:
        obj["amount"] = amount.as_json()
        obj["income_amount"] = income(amount).as_json()
    obj.pop("expires_at", None)
    obj["status"] = "succeeded"
    obj["captured_at"] = format_time(now)
    obj["refundable"] = True


def mark_canceled(obj: dict[str, Any], party: str, reason: str) -> None:
    obj.pop("confirmation", None)
    obj.pop("expires_at", None)
    obj.pop("income_amount", None)
    obj["status"] = "canceled"
    obj["paid"] = False
    obj["refundable"] = False
    obj["cancellation_details"] = {"party": party, "reason": reason}


def apply_refund(payment: dict[str, Any], amount: Money) -> Money:
    """Adds `amount` to the payment's refunded total; returns what is left to refund."""
    paid = Money.from_json(payment["amount"])
    already = Money.from_json(payment.get("refunded_amount") or {"value": "0", "currency": "RUB"})
    total = Money(already.value + amount.value, paid.currency)
    payment["refunded_amount"] = total.as_json()
    left = Money(paid.value - total.value, paid.currency)
    payment["refundable"] = left.value > 0
    return left


def refundable_left(payment: dict[str, Any]) -> Money:
    paid = Money.from_json(payment["amount"])
    refunded = payment.get("refunded_amount")
    done = Decimal(refunded["value"]) if refunded else Decimal(0)
    return Money(paid.value - done, paid.currency)


def new_refund(
    refund_id: str,
    payment_id: str,
    amount: Money,
    now: datetime,
    description: str | None,
    metadata: dict[str, Any] | None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": refund_id,
        "payment_id": payment_id,
        "status": "succeeded",
        "amount": amount.as_json(),
        "created_at": format_time(now),
    }
    if description is not None:
        obj["description"] = description
    if metadata:
        obj["metadata"] = dict(metadata)
    return obj


def expire_if_due(obj: dict[str, Any], now: datetime) -> bool:
    """YooKassa's own timers: 1 hour to confirm a payment, 7 days to capture a held one."""
    status = obj["status"]
    reason: str | None = None
    if (
        status == "pending"
        and "confirmation" in obj
        and parse_time(obj["created_at"], "created_at") + CONFIRMATION_WINDOW <= now
    ):
        reason = "expired_on_confirmation"
    elif (
        status == "waiting_for_capture"
        and "expires_at" in obj
        and parse_time(obj["expires_at"], "expires_at") <= now
    ):
        reason = "expired_on_capture"
    if reason is None:
        return False
    mark_canceled(obj, "yoo_money", reason)
    return True


def bind_card(method: dict[str, Any], card: dict[str, str], declined: bool) -> None:
    """Finishes a zero-amount binding with the card the member entered."""
    method.pop("confirmation", None)
    method["title"] = card_title(card)
    method["card"] = dict(card)
    if not declined:
        method["saved"] = True
        method["status"] = "active"
    else:
        method["status"] = "inactive"
