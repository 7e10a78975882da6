"""API shapes for standby auto-pay."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    UrlConstraints,
)

from core.money import MoneyIn, MoneyOut
from core.periods import PERIOD_PATTERN
from core.text import storable_optional
from payments.subscriptions.schemas import Consent

PeriodText = Annotated[
    str,
    # The one period rule (ASCII digits, no year before 1000): `\d{4}` let "0820-12" through
    # to a 500 further in.
    StringConstraints(pattern=PERIOD_PATTERN),
    Field(description="The dues month, YYYY-MM", examples=["2026-11"]),
]


class StandbyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "amount": {"value": "350.00", "currency": "RUB"},
                    "consent": {"text_version": "2026-11", "accepted_at": "2026-11-23T10:00:00Z"},
                    "return_url": "https://crm.example.org/dues/thanks",
                }
            ]
        },
    )

    amount: Annotated[
        MoneyIn,
        Field(
            description="The member's monthly dues: the most a shortfall charge may take in a "
            "month, as stated in the standby terms the member accepted"
        ),
    ]
    consent: Annotated[
        Consent, Field(description="The member's explicit consent to the standby terms")
    ]
    return_url: Annotated[
        HttpUrl,
        UrlConstraints(max_length=2048),
        Field(description="Where the acquirer sends the member back after saving the card"),
    ]


class ShortfallIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "period": "2026-11",
                    "amount": {"value": "350.00", "currency": "RUB"},
                    "recorded_by": "CRM",
                }
            ]
        },
    )

    period: PeriodText
    amount: Annotated[MoneyIn, Field(description="What payroll did not cover in that month (> 0)")]
    recorded_by: Annotated[
        str | None,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
        AfterValidator(storable_optional),
        Field(description="Who says so: the CRM or a treasurer"),
    ] = None


class ShortfallChargeOut(BaseModel):
    id: uuid.UUID
    status: Annotated[str, Field(description="pending | succeeded | failed")]
    failure_reason: str | None


class LatePayrollOut(BaseModel):
    credit: MoneyOut
    rule: Annotated[str, Field(description="The organisation's rule: carry_forward | refund")]
    applied: Annotated[str, Field(description="What was done: carry_forward | refund")]
    refund_id: str | None
    settled_at: datetime


class ShortfallOut(BaseModel):
    id: uuid.UUID
    member_external_id: str
    period: Annotated[str, Field(examples=["2026-11"])]
    amount: MoneyOut
    status: Annotated[
        str,
        Field(
            description="scheduled (the member was told; the card waits) | charging (see "
            "`charge`) | uncovered (no standby card: the CRM was told to invite the member)"
        ),
    ]
    uncovered_reason: str | None
    subscription_id: uuid.UUID | None
    charge_on: Annotated[
        date | None, Field(description="The earliest day the saved card is charged")
    ]
    charge: ShortfallChargeOut | None
    late_payroll: LatePayrollOut | None
    recorded_by: str | None
    created_at: datetime


class StandbyPolicyIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"late_payroll_rule": "carry_forward"}]}
    )

    late_payroll_rule: Annotated[
        Literal["carry_forward", "refund"],
        Field(
            description="When payroll money arrives for a month the card already paid: "
            "carry_forward (the credit pays the next months) or refund (the card payment is "
            "refunded)"
        ),
    ]


class StandbyPolicyOut(BaseModel):
    organization_code: str
    late_payroll_rule: str
    inherited: Annotated[
        bool, Field(description="True when the rule comes from a higher level or the default")
    ]
