"""API shapes for dues plans and a member's plan."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from core.instants import Day
from core.money import MoneyIn, MoneyOut
from core.periods import PERIOD_PATTERN
from core.text import STORABLE
from members.schemas import Code

Percent = Annotated[
    str,
    StringConstraints(pattern=r"^(100(\.0{1,2})?|[0-9]{1,2}(\.[0-9]{1,2})?)$"),
    Field(description='A percentage with at most two decimals, e.g. "1.00"', examples=["1.00"]),
]
PeriodText = Annotated[str, StringConstraints(pattern=PERIOD_PATTERN), Field(examples=["2027-01"])]


def percent_to_bp(value: str) -> int:
    whole, _, fraction = value.partition(".")
    return int(whole) * 100 + int(fraction.ljust(2, "0") or "0")


def bp_to_percent(bp: int) -> str:
    return f"{bp // 100}.{bp % 100:02d}"


class DuesPlanIn(BaseModel):
    """A dues plan: `fixed` needs `amount`; `percent_of_wage` needs `percent` and may have
    `minimum` and `maximum`; `exempt` has none."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "organization_code": "ppo-1",
                    "name": "1 % of wage",
                    "kind": "percent_of_wage",
                    "percent": "1.00",
                    "minimum": {"value": "100.00", "currency": "RUB"},
                }
            ]
        },
    )

    organization_code: Annotated[Code, Field(description="The organisation defining the plan")]
    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=300),
        STORABLE,
    ]
    kind: Literal["fixed", "percent_of_wage", "exempt"]
    amount: Annotated[MoneyIn | None, Field(description="For fixed plans")] = None
    percent: Annotated[Percent | None, Field(description="For percent_of_wage plans")] = None
    minimum: MoneyIn | None = None
    maximum: MoneyIn | None = None
    category: Annotated[
        str | None,
        StringConstraints(max_length=64),
        STORABLE,
        Field(description="e.g. pensioner, student, parental_leave, unemployed"),
    ] = None

    @model_validator(mode="after")
    def _fields_fit_the_kind(self) -> DuesPlanIn:
        if self.kind == "fixed" and (self.amount is None or self.percent is not None):
            raise ValueError("a fixed plan needs amount and no percent")
        if self.kind == "percent_of_wage" and (self.percent is None or self.amount is not None):
            raise ValueError("a percent_of_wage plan needs percent and no amount")
        if (
            self.kind == "percent_of_wage"
            and self.percent is not None
            and percent_to_bp(self.percent) == 0
        ):
            raise ValueError("percent must be above 0")
        if self.kind == "exempt" and (self.amount or self.percent or self.minimum or self.maximum):
            raise ValueError("an exempt plan takes no amounts")
        if self.kind != "percent_of_wage" and (self.minimum or self.maximum):
            raise ValueError("minimum and maximum apply to percent_of_wage plans only")
        if self.minimum and self.maximum and self.minimum.kopecks > self.maximum.kopecks:
            raise ValueError("minimum is above maximum")
        return self


class DuesPlanOut(BaseModel):
    code: str
    organization_code: str
    name: str
    kind: str
    amount: MoneyOut | None
    percent: str | None
    minimum: MoneyOut | None
    maximum: MoneyOut | None
    category: str | None


class MemberPlanIn(BaseModel):
    """The plan a member pays by from a month on."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "plan_code": "standard",
                    "effective_from": "2027-01",
                    "declared_wage": {"value": "60000.00", "currency": "RUB"},
                }
            ]
        },
    )

    plan_code: Code
    effective_from: Annotated[PeriodText, Field(description="The first month it applies to")]
    declared_wage: Annotated[
        MoneyIn | None, Field(description="Monthly wage, for percent_of_wage plans")
    ] = None


class MemberPlanOut(BaseModel):
    plan_code: Code
    effective_from: str
    declared_wage: MoneyOut | None


RecordedBy = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    STORABLE,
    Field(description="The treasurer (a person's name) recording it"),
]
Reference = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_.:/#-]{1,100}$"),
    Field(
        description="Your unique reference (e.g. the bank document number); a retry with the "
        "same reference records nothing twice"
    ),
]


class ManualPaymentIn(BaseModel):
    """Money a treasurer saw arrive outside the card channel."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "channel": "bank_transfer",
                    "amount": {"value": "350.00", "currency": "RUB"},
                    "occurred_on": "2026-11-20",
                    "reference": "PP-1234-20261120",
                    "recorded_by": "Ольга Казначеева",
                }
            ]
        },
    )

    channel: Literal["payroll", "bank_transfer", "cash"]
    amount: MoneyIn
    occurred_on: Annotated[Day, Field(description="Value date: when the money arrived")]
    period: Annotated[
        PeriodText | None,
        Field(
            description="The dues month the money was meant for (YYYY-MM), e.g. the payroll "
            "month. It still pays the oldest unpaid month first; a payroll payment for a month "
            "a standby card already paid becomes that member's credit.",
            examples=["2026-11"],
        ),
    ] = None
    reference: Reference
    recorded_by: RecordedBy
    description: Annotated[str | None, StringConstraints(max_length=300), STORABLE] = None


class ReversalIn(BaseModel):
    """Why an entry is reversed, and who does it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"reason": "Ошибочная сумма / wrong amount", "recorded_by": "Ольга Казначеева"}
            ]
        },
    )

    reason: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=300),
        STORABLE,
    ]
    recorded_by: RecordedBy


class PeriodCloseIn(BaseModel):
    """Who closes the month."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"closed_by": "Ольга Казначеева"}]}
    )

    closed_by: RecordedBy


class ShareIn(BaseModel):
    """One higher level's share of received dues."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"organization_code": "terkom-1", "percent": "25.00"}]},
    )

    organization_code: Code
    percent: Percent


class SharesIn(BaseModel):
    """The shares of received dues sent upward, from a month on; they sum to 100 with the
    part kept."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "effective_from": "2027-01",
                    "shares": [
                        {"organization_code": "ppo-1", "percent": "75.00"},
                        {"organization_code": "terkom-1", "percent": "25.00"},
                    ],
                }
            ]
        },
    )

    effective_from: PeriodText
    shares: Annotated[list[ShareIn], Field(min_length=1, max_length=20)]


class TransferIn(BaseModel):
    """Money an organisation sent up to a higher level."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "to_organization_code": "terkom-1",
                    "amount": {"value": "12500.00", "currency": "RUB"},
                    "occurred_on": "2026-11-25",
                    "reference": "PP-77-20261125",
                    "recorded_by": "Ольга Казначеева",
                }
            ]
        },
    )

    to_organization_code: Code
    amount: MoneyIn
    occurred_on: Day
    reference: Reference
    recorded_by: RecordedBy


class EntryOut(BaseModel):
    id: uuid.UUID
    kind: str
    occurred_at: datetime
    booked_period: str
    description: str
    reverses_entry_id: uuid.UUID | None
    replayed: Annotated[bool, Field(description="True when this reference was recorded before")]


class AccrualOut(BaseModel):
    period: str
    accrued: int
