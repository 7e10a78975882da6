"""Refunds of card payments: one row per refund at the gateway, committed before the call."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, SmallInteger, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class Refund(Base):
    __tablename__ = "refunds"

    # The refund's own id is the Idempotence-Key sent to the gateway on every retry of it.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    charge_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("charges.id"))
    # The attempt whose gateway payment is refunded (the charge's succeeded attempt).
    attempt_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("charge_attempts.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    # A refund goes to the shop that took the payment: the payment exists only there.
    shop_id: Mapped[str] = mapped_column(String(64))
    gateway_payment_id: Mapped[str] = mapped_column(String(64))
    amount_kopecks: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16))
    # The exact body sent, so a replay with the same key is the same request.
    request_body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    gateway_refund_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    cancellation_party: Mapped[str | None] = mapped_column(String(32))
    cancellation_reason: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(String(500))
    requested_by: Mapped[str] = mapped_column(String(200))
    # The caller's own Idempotency-Key (optional) and a hash of what it asked, so a retried
    # request returns the refund it made instead of making a second one.
    client_key: Mapped[str | None] = mapped_column(String(200))
    client_request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]
    settled_at: Mapped[datetime | None]
    # When the sweeper should next look at this refund if nothing else moved it.
    next_check_at: Mapped[datetime]
    checks: Mapped[int] = mapped_column(SmallInteger, default=0)

    __table_args__ = (
        CheckConstraint("amount_kopecks > 0", name="amount_positive"),
        CheckConstraint(
            "status IN ('created', 'submitting', 'pending', 'succeeded', 'canceled')",
            name="status_known",
        ),
        Index("ix_refunds_charge_id", "charge_id", "created_at"),
        Index("uq_refunds_charge_client_key", "charge_id", "client_key", unique=True),
        Index(
            "ix_refunds_open_due",
            "next_check_at",
            postgresql_where=text("status IN ('created', 'submitting', 'pending')"),
        ),
    )
