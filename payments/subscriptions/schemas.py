"""API shapes for subscriptions (a member's card auto-pay)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StrictInt,
    StringConstraints,
    UrlConstraints,
)

from core.money import MoneyIn, MoneyOut
from core.text import storable


class Consent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text_version: Annotated[
        str,
        StringConstraints(min_length=1, max_length=64),
        AfterValidator(storable),
        Field(
            description="Version of the autopayment terms the member accepted", examples=["2026-11"]
        ),
    ]
    accepted_at: Annotated[AwareDatetime, Field(description="When the member accepted them")]


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Annotated[
        MoneyIn, Field(description='Monthly dues, e.g. {"value": "350.00", "currency": "RUB"}')
    ]
    billing_day: Annotated[
        StrictInt,
        Field(ge=1, le=31, description="Day of month to charge; the month's last day if shorter"),
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


class LastChargeOut(BaseModel):
    period: Annotated[str, Field(examples=["2026-12"])]
    status: str
    amount: MoneyOut
    failure_reason: str | None
    settled_at: datetime | None


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
