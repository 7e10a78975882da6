"""SQL for outbound webhooks. Never commits: the services own the transactions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core.outbox import Event
from members.models import Organization
from webhooks.outbound.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from webhooks.outbound.states import DeliveryStatus, EndpointStatus


def lineage_ids(session: Session, organization_id: uuid.UUID) -> list[uuid.UUID]:
    """The organisation and every organisation above it: whose endpoints hear its events."""
    chain = (
        select(Organization.id.label("id"), Organization.parent_id.label("parent_id"))
        .where(Organization.id == organization_id)
        .cte("chain", recursive=True)
    )
    chain = chain.union_all(
        select(Organization.id, Organization.parent_id).join(
            chain, Organization.id == chain.c.parent_id
        )
    )
    return list(session.scalars(select(chain.c.id)))


def endpoints_hearing(session: Session, organization_id: uuid.UUID) -> list[WebhookEndpoint]:
    """Active endpoints whose subtree holds this organisation."""
    return list(
        session.scalars(
            select(WebhookEndpoint).where(
                WebhookEndpoint.organization_id.in_(lineage_ids(session, organization_id)),
                WebhookEndpoint.status == EndpointStatus.ACTIVE,
            )
        )
    )


def wants(endpoint: WebhookEndpoint, event_type: str) -> bool:
    return not endpoint.event_types or event_type in endpoint.event_types


def unrelayed_events(session: Session, limit: int) -> Sequence[Event]:
    return session.scalars(
        select(Event)
        .where(Event.relayed_at.is_(None))
        .order_by(Event.sequence)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def add_delivery(
    session: Session, event_id: uuid.UUID, endpoint_id: uuid.UUID, now: datetime
) -> uuid.UUID | None:
    """A pending delivery, unless this event already has one for this endpoint."""
    return session.scalar(
        insert(WebhookDelivery)
        .values(
            id=uuid.uuid4(),
            event_id=event_id,
            endpoint_id=endpoint_id,
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            enqueued_at=now,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["event_id", "endpoint_id"])
        .returning(WebhookDelivery.id)
    )


def restart_delivery(
    session: Session, event_id: uuid.UUID, endpoint_id: uuid.UUID, now: datetime
) -> uuid.UUID:
    """Send this event to this endpoint again from the top of the schedule, with the same
    event id (so the CRM can drop it if it already has it)."""
    statement = insert(WebhookDelivery).values(
        id=uuid.uuid4(),
        event_id=event_id,
        endpoint_id=endpoint_id,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        enqueued_at=now,
        created_at=now,
        updated_at=now,
    )
    delivery_id: uuid.UUID | None = session.scalar(
        statement.on_conflict_do_update(
            index_elements=["event_id", "endpoint_id"],
            set_={
                "status": DeliveryStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "enqueued_at": now,
                "updated_at": now,
                "finished_at": None,
            },
        ).returning(WebhookDelivery.id)
    )
    assert delivery_id is not None
    return delivery_id


def clear_failing(session: Session, endpoint_id: uuid.UUID) -> None:
    """A success ends the endpoint's failing streak; an endpoint that was not failing is not
    written (or locked) at all."""
    session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failing_since.is_not(None))
        .values(failing_since=None)
    )


def cancel_pending(session: Session, endpoint_id: uuid.UUID, now: datetime) -> None:
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(
            status=DeliveryStatus.CANCELED, next_attempt_at=None, finished_at=now, updated_at=now
        )
    )


def claim_due(
    session: Session, now: datetime, stale_before: datetime, limit: int
) -> list[uuid.UUID]:
    """Pending deliveries that are due and not queued recently; marks them queued."""
    rows = session.scalars(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
            (WebhookDelivery.enqueued_at.is_(None)) | (WebhookDelivery.enqueued_at <= stale_before),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.enqueued_at = now
    return [row.id for row in rows]


def attempts_of(
    session: Session, delivery_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[WebhookDeliveryAttempt]]:
    found: dict[uuid.UUID, list[WebhookDeliveryAttempt]] = {i: [] for i in delivery_ids}
    if not delivery_ids:
        return found
    for attempt in session.scalars(
        select(WebhookDeliveryAttempt)
        .where(WebhookDeliveryAttempt.delivery_id.in_(delivery_ids))
        .order_by(WebhookDeliveryAttempt.attempted_at, WebhookDeliveryAttempt.attempt_no)
    ):
        found[attempt.delivery_id].append(attempt)
    return found
