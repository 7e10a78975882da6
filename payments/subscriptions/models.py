"""Subscriptions (a member's auto-pay) and the saved cards they charge."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base
from members.pii import KeyedColumn

TOKEN_INDEX = "payment_method.gateway_token"  # noqa: S105 - a hash purpose, not a secret

# The lifecycle's statuses as the database knows them; `states.SubscriptionStatus` is the enum.
STATUSES = (
    "pending_confirmation",
    "active",
    "past_due",
    "needs_payment_method",
    "standby",
    "paused",
    "canceled",
)


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


class PaymentMethod(Base):
    """A card saved at the acquirer. We keep the token (encrypted under the member's data key,
    found by blind index) and the masked card, never the number."""

    __tablename__ = "payment_methods"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    shop_id: Mapped[str] = mapped_column(String(64))
    # NULL once the member is erased.
    gateway_token_ciphertext: Mapped[str | None] = mapped_column(Text)
    gateway_token_index: Mapped[str | None] = mapped_column(String(64))
    card_type: Mapped[str | None] = mapped_column(String(32))
    card_first6: Mapped[str | None] = mapped_column(String(6))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    expiry_month: Mapped[int | None] = mapped_column(SmallInteger)
    expiry_year: Mapped[int | None] = mapped_column(SmallInteger)
    created_at: Mapped[datetime]
    # When `card.expiring` was raised for this card: once per card, never again.
    expiring_notice_at: Mapped[datetime | None]

    __table_args__ = (
        Index("uq_payment_methods_shop_token", "shop_id", "gateway_token_index", unique=True),
    )


PAYMENT_METHOD_COLUMNS = (
    KeyedColumn(
        PaymentMethod.__tablename__,
        "gateway_token_ciphertext",
        index_column="gateway_token_index",
    ),
)


class Subscription(Base):
    __tablename__ = "subscriptions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    amount_kopecks: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # card: charged every month; standby: charged only for payroll shortfalls.
    mode: Mapped[str] = mapped_column(String(16), server_default="card")
    # The day of month a card subscription is charged; a standby one has none.
    billing_day: Mapped[int | None] = mapped_column(SmallInteger)
    # The first month the subscription pays for; billing never reaches back before it.
    start_period: Mapped[date]
    consent_version: Mapped[str] = mapped_column(String(64))
    consent_accepted_at: Mapped[datetime]
    return_url: Mapped[str] = mapped_column(String(2048))
    payment_method_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment_methods.id"))
    created_at: Mapped[datetime]
    status_changed_at: Mapped[datetime]
    activated_at: Mapped[datetime | None]
    canceled_at: Mapped[datetime | None]
    cancel_cause: Mapped[str | None] = mapped_column(String(40))
    # While paused: the status to resume to, and the local date to resume on (NULL: until the
    # CRM resumes it).
    paused_from_status: Mapped[str | None] = mapped_column(String(32))
    paused_until: Mapped[date | None]

    __table_args__ = (
        CheckConstraint("amount_kopecks > 0", name="amount_positive"),
        CheckConstraint("billing_day BETWEEN 1 AND 31", name="billing_day_range"),
        CheckConstraint(
            "mode = 'standby' OR billing_day IS NOT NULL", name="card_mode_has_billing_day"
        ),
        CheckConstraint("mode IN ('card', 'standby')", name="mode_known"),
        CheckConstraint("extract(day FROM start_period) = 1", name="start_period_is_month"),
        CheckConstraint(f"status IN ({_quoted(STATUSES)})", name="status_known"),
        # At most one live subscription per member: the database says no to a second one.
        Index(
            "uq_subscriptions_one_live_per_member",
            "member_id",
            unique=True,
            postgresql_where=text("status <> 'canceled'"),
        ),
        Index("ix_subscriptions_chargeable", "status", "billing_day"),
        Index(
            "ix_subscriptions_paused_until",
            "paused_until",
            postgresql_where=text("status = 'paused'"),
        ),
    )


class SubscriptionStatusChange(Base):
    """Append-only history: every status a subscription took, when, and why."""

    __tablename__ = "subscription_status_changes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # Insertion order: several changes may share a timestamp (one transaction, one clock).
    sequence: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    subscription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subscriptions.id"))
    previous_status: Mapped[str | None] = mapped_column(String(32))  # NULL: the creation
    status: Mapped[str] = mapped_column(String(32))
    cause: Mapped[str] = mapped_column(String(40))
    # The gateway's decline reason, when a decline caused the change.
    reason: Mapped[str | None] = mapped_column(String(64))
    changed_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_subscription_status_changes_subscription", "subscription_id", "sequence"),
    )


class SubscriptionAmountChange(Base):
    """From a month on, the subscription charges another amount (a change from the CRM)."""

    __tablename__ = "subscription_amount_changes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    subscription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subscriptions.id"))
    effective_from: Mapped[date]
    amount_kopecks: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]

    __table_args__ = (
        Index(
            "uq_subscription_amount_changes_month",
            "subscription_id",
            "effective_from",
            unique=True,
        ),
        CheckConstraint("amount_kopecks > 0", name="amount_positive"),
        CheckConstraint("extract(day FROM effective_from) = 1", name="effective_from_is_month"),
    )
