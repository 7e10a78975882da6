"""Money: integer kopecks inside, decimal strings only at the edges.

Every conversion between the two goes through this module, and every split goes through
`allocate()`, whose parts always sum to the whole.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

CURRENCY = "RUB"
SUPPORTED_CURRENCIES = frozenset({CURRENCY})
# A decimal string with at most two decimals: "350", "350.5", "350.50". No sign, no exponent,
# ASCII digits only, and the whole string (a trailing newline is not allowed either).
# What parse_kopecks accepts, as one regular expression for the API contract.
AMOUNT_PATTERN = r"^([1-9][0-9]{0,14}(\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9]))$"
_AMOUNT_RE = re.compile(r"(0|[1-9][0-9]{0,14})(\.[0-9]{1,2})?", re.ASCII)


class InvalidAmount(ValueError):
    """An amount string that is not a positive decimal with at most two decimals."""


def parse_kopecks(value: str) -> int:
    """Parse "350.00" into 35000. Refuses signs, exponents, more than two decimals, zero."""
    if not isinstance(value, str):
        raise InvalidAmount('amount value must be a decimal string such as "350.00"')
    if not _AMOUNT_RE.fullmatch(value):
        raise InvalidAmount(
            "amount value must be a positive decimal string with at most two decimals, "
            'such as "350.00"'
        )
    whole, _, fraction = value.partition(".")
    kopecks = int(whole) * 100 + int(fraction.ljust(2, "0") or "0")
    if kopecks <= 0:
        raise InvalidAmount("amount value must be greater than zero")
    return kopecks


def format_kopecks(kopecks: int) -> str:
    """Format 35000 as "350.00" (and -35000 as "-350.00")."""
    sign = "-" if kopecks < 0 else ""
    whole, fraction = divmod(abs(kopecks), 100)
    return f"{sign}{whole}.{fraction:02d}"


def allocate(total_kopecks: int, weights: Sequence[int]) -> list[int]:
    """Split a total in proportion to integer weights; the parts always sum to the total.

    Each part gets the floor of its exact share; the remaining kopecks go one by one to the
    parts with the largest fractional remainders, ties broken by position (earlier first),
    so the result is deterministic.
    """
    if not weights:
        raise ValueError("allocate needs at least one weight")
    if any(w < 0 for w in weights):
        raise ValueError("weights must not be negative")
    weight_sum = sum(weights)
    if weight_sum == 0:
        raise ValueError("weights must not all be zero")
    sign = -1 if total_kopecks < 0 else 1
    total = abs(total_kopecks)
    parts = [total * w // weight_sum for w in weights]
    remainders = [total * w % weight_sum for w in weights]
    leftover = total - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:leftover]:
        parts[i] += 1
    return [sign * p for p in parts]


class MoneyIn(BaseModel):
    """An amount as it arrives at the API edge: `{"value": "350.00", "currency": "RUB"}`."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"value": "350.00", "currency": "RUB"}]}
    )

    value: Annotated[
        StrictStr,
        Field(
            examples=["350.00"],
            description="Decimal string greater than zero, ≤ 2 decimals",
            # For the contract only: the validator below checks it with clearer messages.
            json_schema_extra={"pattern": AMOUNT_PATTERN},
        ),
    ]
    currency: Annotated[
        StrictStr, Field(examples=["RUB"], json_schema_extra={"enum": sorted(SUPPORTED_CURRENCIES)})
    ]

    @field_validator("value")
    @classmethod
    def _value_is_decimal_string(cls, value: str) -> str:
        parse_kopecks(value)
        return value

    @field_validator("currency")
    @classmethod
    def _currency_supported(cls, currency: str) -> str:
        if currency not in SUPPORTED_CURRENCIES:
            raise ValueError(f"currency must be one of {sorted(SUPPORTED_CURRENCIES)}")
        return currency

    @property
    def kopecks(self) -> int:
        return parse_kopecks(self.value)


class MoneyOut(BaseModel):
    value: Annotated[str, Field(examples=["350.00"])]
    currency: Annotated[str, Field(examples=["RUB"])]

    @classmethod
    def of(cls, kopecks: int, currency: str = CURRENCY) -> MoneyOut:
        return cls(value=format_kopecks(kopecks), currency=currency)
