"""API shapes for the payments a member made (card charges, with their attempts and refunds)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from core.money import MoneyOut


class PaymentCardOut(BaseModel):
    """The card as the acquirer masks it: never more than the first six and last four digits."""

    card_type: str | None
    first6: str | None
    last4: str | None


class PaymentAttemptOut(BaseModel):
    number: int
    status: Annotated[
        str, Field(description="created | submitting | pending | succeeded | canceled")
    ]
    reason: Annotated[str | None, Field(description="The gateway's decline reason, if declined")]
    created_at: datetime
    submitted_at: datetime | None
    settled_at: datetime | None


class PaymentOut(BaseModel):
    id: uuid.UUID
    member_external_id: str
    organization_code: str
    subscription_id: uuid.UUID
    status: Annotated[str, Field(description="pending | succeeded | failed")]
    channel: Annotated[str, Field(description="How the money came: card")]
    kind: Annotated[
        str,
        Field(
            description="initial (paid on the acquirer's page) | recurring | card_change (the "
            "member saved a new card) | arrears (the member paid overdue months at once)"
        ),
    ]
    amount: MoneyOut
    months: Annotated[
        list[str], Field(description="Dues months the payment covers", examples=[["2026-11"]])
    ]
    card: PaymentCardOut | None
    decline_reason: str | None
    gateway_payment_id: str | None
    attempts: list[PaymentAttemptOut]
    refunded: Annotated[MoneyOut, Field(description="What the gateway has given back")]
    refundable: Annotated[
        MoneyOut, Field(description="What can still be refunded (refunds under way count)")
    ]
    created_at: datetime
    settled_at: datetime | None


class PaymentPage(BaseModel):
    data: list[PaymentOut]
    has_more: bool
