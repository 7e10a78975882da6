"""Standby auto-pay tables: the card binding, payroll shortfalls and each organisation's rule."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, SmallInteger, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class CardBinding(Base):
    """Saving a card with no payment (`POST /payment_methods`) for a standby subscription.

    Like a charge attempt: its own id is the Idempotence-Key, committed before the call and
    reused on every retry; an unknown outcome is settled by asking the gateway, never by
    creating a second payment method."""

    __tablename__ = "card_bindings"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    subscription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subscriptions.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    shop_id: Mapped[str] = mapped_column(String(64))
    # The exact body sent, so a replay with the same key is the same request.
    request_body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    gateway_method_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    confirmation_url: Mapped[str | None] = mapped_column(String(2048))
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]
    settled_at: Mapped[datetime | None]
    next_check_at: Mapped[datetime]
    checks: Mapped[int] = mapped_column(SmallInteger, default=0)

    __table_args__ = (
        # One binding per subscription: a standby subscription saves exactly one card.
        Index("uq_card_bindings_subscription", "subscription_id", unique=True),
        Index(
            "ix_card_bindings_open_due",
            "next_check_at",
            postgresql_where=text("status IN ('created', 'submitting', 'pending')"),
        ),
    )


class PayrollShortfall(Base):
    """A month in which payroll did not cover a member's dues, by how much (the CRM or a
    treasurer says so). One per member and month: the database refuses a second."""

    __tablename__ = "payroll_shortfalls"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    period_month: Mapped[date]
    amount_kopecks: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    recorded_by: Mapped[str | None] = mapped_column(String(200))
    # The standby subscription that will pay it, and its charge once made.
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("subscriptions.id"))
    charge_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("charges.id"), unique=True)
    # When `charge.upcoming` told the member, and the earliest the card may be charged.
    notified_at: Mapped[datetime | None]
    charge_at: Mapped[datetime | None]
    uncovered_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
    # Payroll money that arrived later for a month the card had paid, and what was done.
    late_payroll_kopecks: Mapped[int | None] = mapped_column(BigInteger)
    late_payroll_rule: Mapped[str | None] = mapped_column(String(16))
    late_payroll_applied: Mapped[str | None] = mapped_column(String(16))
    late_payroll_refund_id: Mapped[str | None] = mapped_column(String(64))
    late_payroll_settled_at: Mapped[datetime | None]

    __table_args__ = (
        Index("uq_payroll_shortfalls_member_period", "member_id", "period_month", unique=True),
        Index(
            "ix_payroll_shortfalls_due",
            "charge_at",
            postgresql_where=text("status = 'scheduled'"),
        ),
        CheckConstraint("amount_kopecks > 0", name="amount_positive"),
        CheckConstraint("extract(day FROM period_month) = 1", name="period_is_month"),
        CheckConstraint("status IN ('scheduled', 'charging', 'uncovered')", name="status_known"),
    )


class StandbyPolicy(Base):
    """An organisation's standby rules; none stored means the defaults."""

    __tablename__ = "standby_policies"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id"), primary_key=True
    )
    late_payroll_rule: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(
            "late_payroll_rule IN ('carry_forward', 'refund')", name="late_payroll_rule_known"
        ),
    )
