"""The outbox: a lower layer records that something happened, in the same transaction as the
change, and higher layers (the CRM webhooks today) consume the rows later.

Because the event row commits or rolls back with the change itself, an event is never lost
after a commit and never sent for a change that did not happen.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base
from core.ids import new_id


class EventType(StrEnum):
    """The published catalogue of event types. The names are a contract with the CRM: add new
    ones freely, never rename one. Payloads are described in `webhooks/outbound/catalog.py`
    and published as schemas (`webhooks/outbound/events.py`, openapi.yaml `webhooks`)."""

    SUBSCRIPTION_ACTIVATED = "subscription.activated"
    SUBSCRIPTION_PAST_DUE = "subscription.past_due"
    SUBSCRIPTION_CANCELED = "subscription.canceled"
    SUBSCRIPTION_NEEDS_PAYMENT_METHOD = "subscription.needs_payment_method"
    SUBSCRIPTION_PAUSED = "subscription.paused"
    SUBSCRIPTION_RESUMED = "subscription.resumed"
    SUBSCRIPTION_STANDBY = "subscription.standby"
    SUBSCRIPTION_CHANGED = "subscription.changed"
    CHARGE_UPCOMING = "charge.upcoming"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_REFUNDED = "payment.refunded"
    CARD_EXPIRING = "card.expiring"
    MEMBER_ARREARS_CHANGED = "member.arrears_changed"
    MEMBER_SHORTFALL_UNCOVERED = "member.shortfall_uncovered"
    SHORTFALL_LATE_PAYROLL = "payroll_shortfall.late_payroll"
    WEBHOOK_ENDPOINT_DISABLED = "webhook_endpoint.disabled"


class Event(Base):
    __tablename__ = "events"

    # The stable event id: the CRM sees it as `webhook-id` on every delivery and retry.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # Commit order is not id order; replay walks this instead (ties are impossible).
    sequence: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # When a consumer fanned the event out; NULL rows are the consumer's work queue.
    relayed_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_events_organization_sequence", "organization_id", "sequence"),
        Index("ix_events_unrelayed", "sequence", postgresql_where=text("relayed_at IS NULL")),
    )


def emit(
    session: Session,
    *,
    type: EventType,
    organization_id: uuid.UUID,
    occurred_at: datetime,
    recorded_at: datetime | None = None,
    payload: dict[str, Any],
) -> uuid.UUID:
    """Record an event inside the caller's transaction; it commits or rolls back with it.
    Payloads are thin (ids, amounts, statuses, reasons): never names, emails or phones."""
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be an aware datetime")
    event = Event(
        id=new_id(),
        type=str(type),
        organization_id=organization_id,
        occurred_at=occurred_at,
        recorded_at=recorded_at or occurred_at,
        payload=payload,
        relayed_at=None,
    )
    session.add(event)
    return event.id


def emit_many(
    session: Session,
    *,
    type: EventType,
    occurred_at: datetime,
    recorded_at: datetime | None = None,
    events: Sequence[tuple[uuid.UUID, dict[str, Any]]],
) -> list[uuid.UUID]:
    """Record many events of one type, `(organization_id, payload)` each, in one statement
    inside the caller's transaction: what a batch raises costs one round trip, not one each."""
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be an aware datetime")
    if not events:
        return []
    ids = [new_id() for _ in events]
    # One INSERT: a batch of thousands of events is one statement on the server, not one
    # execution per row (executemany). The payloads travel as one JSON array: a text[] of JSON
    # would be quoted element by element on the client, which costs more than the insert.
    session.execute(
        text(
            "INSERT INTO events (id, type, organization_id, occurred_at, recorded_at, payload)"
            " SELECT e.id, :type, e.org, :occurred, :recorded, p.payload"
            " FROM unnest(CAST(:ids AS uuid[]), CAST(:orgs AS uuid[])) WITH ORDINALITY"
            " AS e(id, org, n)"
            " JOIN jsonb_array_elements(CAST(:payloads AS jsonb)) WITH ORDINALITY AS p(payload, n)"
            " ON p.n = e.n ORDER BY e.n"
        ),
        {
            "type": str(type),
            "occurred": occurred_at,
            "recorded": recorded_at or occurred_at,
            "ids": ids,
            "orgs": [organization_id for organization_id, _ in events],
            "payloads": json.dumps([payload for _, payload in events]),
        },
    )
    return ids
