"""Request validation with YooKassa's limits (yookassa-detail.md §4, §5, §10, §12).

Every failure is a 400 `invalid_request` whose `parameter` names the offending field, so a client
bug shows up in the emulator the way it would in production.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from payments.gateway.emulator.errors import EmulatorError, invalid

CURRENCIES = frozenset(
    {"RUB", "EUR", "USD", "KZT", "BYN", "UAH", "UZS", "TRY", "INR", "MDL", "AZN", "AMD", "CNY"}
)
CARD_MIN = Decimal("1.00")
CARD_MAX = Decimal("350000.00")
_VALUE_RE = re.compile(r"^\d{1,12}(\.\d{1,2})?$")

DESCRIPTION_MAX = 128
REFUND_DESCRIPTION_MAX = 250
RETURN_URL_MAX = 2048
MERCHANT_CUSTOMER_ID_MAX = 200
METADATA_KEYS_MAX = 16
METADATA_KEY_MAX = 32
METADATA_VALUE_MAX = 512
IDEMPOTENCE_KEY_MAX = 64


@dataclass(frozen=True)
class Money:
    value: Decimal
    currency: str

    def as_json(self) -> dict[str, str]:
        return {"value": f"{self.value:.2f}", "currency": self.currency}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Money:
        return cls(Decimal(str(raw["value"])), str(raw["currency"]))


@dataclass(frozen=True)
class PaymentRequest:
    amount: Money
    capture: bool
    save_payment_method: bool
    description: str | None
    metadata: dict[str, Any] | None
    merchant_customer_id: str | None
    payment_method_type: str | None
    payment_method_id: str | None
    confirmation: dict[str, Any] | None


@dataclass(frozen=True)
class RefundRequest:
    payment_id: str
    amount: Money
    description: str | None
    metadata: dict[str, Any] | None


def require_object(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    return body


def check_idempotence_key(key: str | None) -> str:
    if key is None or key == "":
        raise invalid("Idempotence key is empty", "Idempotence-Key")
    if len(key) > IDEMPOTENCE_KEY_MAX:
        raise invalid(
            "Idempotence key is too long. Send the value in accordance with the documentation",
            "Idempotence-Key",
        )
    return key


def parse_amount(raw: Any, parameter: str = "amount", card_limits: bool = True) -> Money:
    if not isinstance(raw, dict):
        raise invalid("Amount must be an object with value and currency", parameter)
    value = raw.get("value")
    if not isinstance(value, str):
        raise invalid('Amount value must be a string like "100.00"', f"{parameter}.value")
    if not _VALUE_RE.match(value):
        raise invalid(
            "Invalid amount value: use a dot and at most 2 decimal places", f"{parameter}.value"
        )
    amount = Decimal(value)
    if amount <= 0:
        raise invalid("Amount value must be greater than 0", f"{parameter}.value")
    currency = raw.get("currency")
    if not isinstance(currency, str) or currency not in CURRENCIES:
        raise invalid("Invalid currency", f"{parameter}.currency")
    if currency != "RUB":
        raise invalid("The test shop accepts RUB only", f"{parameter}.currency")
    if card_limits and not CARD_MIN <= amount <= CARD_MAX:
        raise invalid("Bank card payments must be from 1.00 to 350000.00 RUB", f"{parameter}.value")
    return Money(amount, currency)


def _optional_str(body: dict[str, Any], name: str, limit: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string", name)
    if len(value) > limit:
        raise invalid(f"{name} is too long: at most {limit} characters", name)
    return value


def _optional_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"{name} must be a boolean", name)
    return value


def parse_metadata(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise invalid("metadata must be an object", "metadata")
    if len(raw) > METADATA_KEYS_MAX:
        raise invalid(f"metadata has more than {METADATA_KEYS_MAX} keys", "metadata")
    for key, value in raw.items():
        if len(key) > METADATA_KEY_MAX:
            raise invalid(f"metadata key longer than {METADATA_KEY_MAX} characters", "metadata")
        if value is not None and not isinstance(value, str):
            raise invalid("metadata values must be strings", "metadata")
        if value is not None and len(value) > METADATA_VALUE_MAX:
            raise invalid(f"metadata value longer than {METADATA_VALUE_MAX} characters", "metadata")
    return dict(raw)


def parse_confirmation(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise invalid("confirmation must be an object", "confirmation")
    kind = raw.get("type")
    if kind == "embedded":
        return {"type": "embedded"}
    if kind != "redirect":
        raise invalid(
            "The emulator supports redirect and embedded confirmation", "confirmation.type"
        )
    return_url = raw.get("return_url")
    if not isinstance(return_url, str) or not return_url:
        raise invalid("return_url is required for redirect confirmation", "confirmation.return_url")
    if len(return_url) > RETURN_URL_MAX:
        raise invalid("return_url is too long", "confirmation.return_url")
    confirmation: dict[str, Any] = {"type": "redirect", "return_url": return_url}
    if "enforce" in raw:
        confirmation["enforce"] = bool(raw["enforce"])
    return confirmation


def parse_payment_request(body: dict[str, Any]) -> PaymentRequest:
    amount = parse_amount(body.get("amount"))
    names = ("payment_method_data", "payment_method_id", "payment_token")
    sources = [k for k in names if body.get(k)]
    if len(sources) > 1:
        raise invalid(
            "Request should contain only one of: payment_method_data, payment_method_id, "
            "payment_token",
            sources[1],
        )
    if body.get("payment_token"):
        raise invalid("payment_token is not supported by the emulator", "payment_token")
    method_type: str | None = None
    data = body.get("payment_method_data")
    if data is not None:
        if not isinstance(data, dict) or data.get("type") != "bank_card":
            raise invalid("Only bank_card is supported", "payment_method_data.type")
        if data.get("card"):
            raise EmulatorError(
                403, "forbidden", "Forbidden to send raw bank card data", "payment_method_data.card"
            )
        method_type = "bank_card"
    method_id = body.get("payment_method_id")
    if method_id is not None and not isinstance(method_id, str):
        raise invalid("payment_method_id must be a string", "payment_method_id")
    confirmation = parse_confirmation(body.get("confirmation"))
    if confirmation is None and not method_id:
        raise invalid(
            "confirmation is required for a payment without payment_method_id", "confirmation"
        )
    return PaymentRequest(
        amount=amount,
        capture=_optional_bool(body, "capture"),
        save_payment_method=_optional_bool(body, "save_payment_method"),
        description=_optional_str(body, "description", DESCRIPTION_MAX),
        metadata=parse_metadata(body.get("metadata")),
        merchant_customer_id=_optional_str(body, "merchant_customer_id", MERCHANT_CUSTOMER_ID_MAX),
        payment_method_type=method_type,
        payment_method_id=method_id or None,
        confirmation=confirmation,
    )


def parse_refund_request(body: dict[str, Any]) -> RefundRequest:
    payment_id = body.get("payment_id")
    if not isinstance(payment_id, str) or len(payment_id) != 36:
        raise invalid("payment_id must be a 36-character string", "payment_id")
    return RefundRequest(
        payment_id=payment_id,
        amount=parse_amount(body.get("amount"), card_limits=False),
        description=_optional_str(body, "description", REFUND_DESCRIPTION_MAX),
        metadata=parse_metadata(body.get("metadata")),
    )


def parse_payment_method_request(body: dict[str, Any]) -> dict[str, Any]:
    """Returns the confirmation; a zero-amount binding always needs the member's redirect."""
    if body.get("type") != "bank_card":
        raise invalid("Only bank_card can be saved", "type")
    if body.get("card"):
        raise EmulatorError(403, "forbidden", "Forbidden to send raw bank card data", "card")
    confirmation = parse_confirmation(body.get("confirmation"))
    if confirmation is None or confirmation["type"] != "redirect":
        raise invalid("redirect confirmation is required", "confirmation")
    return confirmation


def parse_capture_amount(body: dict[str, Any], original: Money) -> Money:
    if body.get("amount") is None:
        return original
    amount = parse_amount(body["amount"], card_limits=False)
    if amount.currency != original.currency or amount.value > original.value:
        raise invalid("Illegal amount for capture", "amount")
    return amount
