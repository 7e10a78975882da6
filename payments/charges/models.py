"""Charges (one per subscription and month) and their attempts at the gateway."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class Charge(Base):
    __tablename__ = "charges"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    subscription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subscriptions.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    period_month: Mapped[date]
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    amount_kopecks: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime]
    settled_at: Mapped[datetime | None]
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    # When `charge.upcoming` told the member about this automatic charge.
    upcoming_notice_at: Mapped[datetime | None]
    # When the next attempt (a new key) is to be made: the first one after the notice period,
    # later ones by the retry policy. NULL: no attempt is scheduled.
    next_attempt_at: Mapped[datetime | None]
    # Past this instant (the end of the month in the organisation's zone) no retry is made.
    retry_until: Mapped[datetime | None]
    # An overdue payment's months, oldest first (the ledger pays the oldest unpaid month first).
    covered_months: Mapped[list[date] | None] = mapped_column(ARRAY(Date))

    __table_args__ = (
        # One charge per subscription and month: a second billing run cannot make another.
        # A member's own card change or overdue payment is not the month's charge.
        Index(
            "uq_charges_subscription_period",
            "subscription_id",
            "period_month",
            unique=True,
            postgresql_where=text("kind IN ('initial', 'recurring')"),
        ),
        Index(
            "ix_charges_attempt_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending' AND next_attempt_at IS NOT NULL"),
        ),
        CheckConstraint("amount_kopecks > 0", name="amount_positive"),
        CheckConstraint("extract(day FROM period_month) = 1", name="period_is_month"),
    )


class ChargeAttempt(Base):
    __tablename__ = "charge_attempts"

    # The attempt's own id is the Idempotence-Key sent to the gateway on every retry of it.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    charge_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("charges.id"))
    attempt_no: Mapped[int] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(16))
    shop_id: Mapped[str] = mapped_column(String(64))
    # The exact body sent, so a replay with the same key is byte-for-byte the same request;
    # except the saved card's token, which stays encrypted on `payment_method_id` and is added
    # just before each send.
    request_body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    payment_method_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment_methods.id"))
    gateway_payment_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    confirmation_url: Mapped[str | None] = mapped_column(String(2048))
    cancellation_party: Mapped[str | None] = mapped_column(String(32))
    cancellation_reason: Mapped[str | None] = mapped_column(String(64))
    # What the retry policy decided after this attempt was declined: retry | stop | new_card.
    decision: Mapped[str | None] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]
    settled_at: Mapped[datetime | None]
    # When the sweeper should next look at this attempt if nothing else moved it.
    next_check_at: Mapped[datetime]
    checks: Mapped[int] = mapped_column(SmallInteger, default=0)

    __table_args__ = (
        Index("uq_charge_attempts_charge_no", "charge_id", "attempt_no", unique=True),
        # At most one attempt per charge that the gateway has not finished.
        Index(
            "uq_charge_attempts_one_open_per_charge",
            "charge_id",
            unique=True,
            postgresql_where=text("status IN ('created', 'submitting', 'pending')"),
        ),
        Index(
            "ix_charge_attempts_open_due",
            "next_check_at",
            postgresql_where=text("status IN ('created', 'submitting', 'pending')"),
        ),
    )
