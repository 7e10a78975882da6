"""API shapes for subscriptions (a member's card auto-pay)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    UrlConstraints,
)

from core.http import INTEGRAL
from core.instants import Day, Instant
from core.money import MoneyIn, MoneyOut
from core.text import STORABLE


class Consent(BaseModel):
    """The member's consent to automatic charges (the terms' version and when it was given)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"text_version": "2026-11", "accepted_at": "2026-11-23T10:00:00Z"}]
        },
    )

    text_version: Annotated[
        str,
        StringConstraints(min_length=1, max_length=64),
        STORABLE,
        Field(
            description="Version of the autopayment terms the member accepted", examples=["2026-11"]
        ),
    ]
    accepted_at: Annotated[Instant, Field(description="When the member accepted them")]


class SubscriptionCreate(BaseModel):
    """Card auto-pay for a member: the monthly amount, the day, the consent and where
    checkout returns."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "amount": {"value": "350.00", "currency": "RUB"},
                    "billing_day": 5,
                    "consent": {"text_version": "2026-11", "accepted_at": "2026-11-23T10:00:00Z"},
                    "return_url": "https://crm.example.org/dues/thanks",
                }
            ]
        },
    )

    amount: Annotated[
        MoneyIn, Field(description='Monthly dues, e.g. {"value": "350.00", "currency": "RUB"}')
    ]
    billing_day: Annotated[
        int,
        Field(ge=1, le=31, description="Day of month to charge; the month's last day if shorter"),
        INTEGRAL,
    ]
    consent: Consent
    return_url: Annotated[
        HttpUrl,
        UrlConstraints(max_length=2048),  # YooKassa's limit for return_url
        Field(description="Where the acquirer sends the member back"),
    ]


class CardOut(BaseModel):
    card_type: str | None
    first6: str | None
    last4: str | None
    expiry_month: int | None
    expiry_year: int | None


class AttemptOut(BaseModel):
    attempt_no: int
    status: Annotated[str, Field(description="created, submitting, pending, succeeded, canceled")]
    reason: Annotated[str | None, Field(description="The gateway's decline reason")]
    decision: Annotated[
        str | None,
        Field(description="What the retry policy decided after a decline: retry, new_card, stop"),
    ]
    created_at: datetime
    settled_at: datetime | None


class LastChargeOut(BaseModel):
    period: Annotated[str, Field(examples=["2026-12"])]
    status: Annotated[str, Field(description="pending, succeeded, failed, canceled (withdrawn)")]
    amount: MoneyOut
    failure_reason: str | None
    settled_at: datetime | None
    upcoming_notice_at: Annotated[
        datetime | None, Field(description="When charge.upcoming told the member")
    ] = None
    next_attempt_at: Annotated[
        datetime | None, Field(description="When the next attempt (first or retry) is due")
    ] = None
    retry_until: Annotated[
        datetime | None, Field(description="No retry after this (the month's end)")
    ] = None
    attempts: Annotated[
        list[AttemptOut], Field(description="Every attempt at the gateway, with its reason")
    ] = []


class AmountChangeOut(BaseModel):
    effective_from: Annotated[str, Field(examples=["2027-01"])]
    amount: MoneyOut


class SubscriptionChange(BaseModel):
    """A new monthly amount from a month on."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"amount": {"value": "400.00", "currency": "RUB"}, "effective_from": "2027-01"}
            ]
        },
    )

    amount: MoneyIn
    effective_from: Annotated[
        str,
        StringConstraints(pattern=r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])$"),
        Field(description="First month charged the new amount", examples=["2027-01"]),
    ]


class PauseIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"resume_on": "2027-03-01"}]}
    )

    resume_on: Annotated[
        Day | None,
        Field(description="The day it resumes by itself; null: until resumed through the API"),
    ] = None


class CancelIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"cause": "by_member"}]}
    )

    cause: Annotated[
        Literal["by_crm", "by_member", "membership_ended"],
        Field(
            description="Why: the CRM's decision, the member's request, or the end of membership"
        ),
    ] = "by_crm"


class StatusChangeOut(BaseModel):
    previous_status: Annotated[str | None, Field(description="null for the creation")]
    status: str
    cause: Annotated[
        str,
        Field(
            description="Why: created, first_payment_succeeded, card_saved, charge_succeeded, "
            "charge_declined, card_declined, card_expired, retries_exhausted, paused_by_crm, "
            "resumed_by_crm, resume_date_reached, by_member, by_crm, membership_ended, "
            "first_payment_failed"
        ),
    ]
    reason: Annotated[str | None, Field(description="The gateway's decline reason, if any")]
    changed_at: datetime


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    member_external_id: str
    organization_code: str
    status: str
    mode: Annotated[
        str, Field(description="card: charged monthly; standby: charged only for shortfalls")
    ]
    amount: MoneyOut
    billing_day: int | None
    start_period: Annotated[str, Field(examples=["2026-11"])]
    consent_version: str
    consent_accepted_at: datetime
    card: CardOut | None
    confirmation_url: Annotated[
        str | None,
        Field(
            description="The acquirer's page for the first payment, while it waits for the member"
        ),
    ]
    next_charge_date: date | None
    last_charge: LastChargeOut | None
    created_at: datetime
    activated_at: datetime | None
    canceled_at: datetime | None
    cancel_cause: str | None
    next_attempt_at: Annotated[
        datetime | None,
        Field(description="When the next attempt at the gateway is due (first one or a retry)"),
    ] = None
    next_charge_amount: Annotated[
        MoneyOut | None, Field(description="The amount of the next charge")
    ] = None
    amount_changes: Annotated[
        list[AmountChangeOut], Field(description="Amount changes from the CRM, by month")
    ] = []
    paused_until: Annotated[
        date | None, Field(description="While paused: the day it resumes (null: until resumed)")
    ] = None
    status_history: Annotated[
        list[StatusChangeOut], Field(description="Every status it took, oldest first")
    ] = []


class MemberErasureOut(BaseModel):
    """The record that a member's personal data was destroyed."""

    member_id: uuid.UUID
    pseudonym: Annotated[str, Field(description="What the books call the member from now on")]
    erased_at: datetime
    subscriptions_canceled: int
