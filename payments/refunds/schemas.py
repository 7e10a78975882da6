"""API shapes for refunds of card payments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from core.money import MoneyIn, MoneyOut
from core.text import STORABLE


class RefundCreate(BaseModel):
    """A refund of (part of) a succeeded card payment."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "amount": {"value": "350.00", "currency": "RUB"},
                    "reason": "Взнос удержан работодателем / paid by payroll",
                }
            ]
        },
    )

    amount: Annotated[
        MoneyIn | None,
        Field(description="How much to give back; the whole rest of the payment when omitted"),
    ] = None
    reason: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
        STORABLE,
        Field(
            description="Why (kept in Vznos for the books; the gateway gets a neutral text)",
            examples=["Взнос удержан работодателем / paid by payroll"],
        ),
    ]


class RefundOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
                    "payment_id": "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
                    "status": "pending",
                    "amount": {"value": "350.00", "currency": "RUB"},
                    "reason": "Взнос удержан работодателем / paid by payroll",
                    "gateway_refund_id": "2f9a1c3e-0015-5000-a000-1b2c3d4e5f60",
                    "cancellation_reason": None,
                    "created_at": "2026-11-23T07:00:00Z",
                    "settled_at": None,
                }
            ]
        }
    )

    id: uuid.UUID
    payment_id: uuid.UUID
    status: Annotated[
        str, Field(description="created | submitting | pending | succeeded | canceled")
    ]
    amount: MoneyOut
    reason: str
    gateway_refund_id: str | None
    cancellation_reason: str | None
    created_at: datetime
    settled_at: datetime | None


class RefundList(BaseModel):
    data: list[RefundOut]
