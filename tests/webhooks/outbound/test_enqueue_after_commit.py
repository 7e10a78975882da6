"""Queue messages are pointers to committed rows (G6): a worker that picks a message up at once
must find its delivery, and a delivery whose transaction rolled back is never queued.

The queue here looks the delivery up on its own connection at the moment of `enqueue`, which
is what a fast worker on another process would see."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.clock import ManualClock
from core.db import transaction
from core.outbox import Event, EventType, emit
from members.service import Principal
from vznos.container import Container
from webhooks.outbound import repository
from webhooks.outbound.delivery import TASK_DELIVER
from webhooks.outbound.models import WebhookDelivery
from webhooks.outbound.schemas import WebhookEndpointCreated
from webhooks.outbound.states import DeliveryStatus

from .conftest import CRM_IP, Outbound


@dataclass
class PeekingQueue:
    """Records, for every message, what another connection sees of its delivery right then."""

    sessions: sessionmaker[Session]
    seen: list[tuple[uuid.UUID, str | None]] = field(default_factory=list)

    def enqueue(self, task: str, *, delay_seconds: float | None = None, **ids: str) -> None:
        assert task == TASK_DELIVER
        delivery_id = uuid.UUID(ids["delivery_id"])
        with self.sessions() as session:
            row = session.get(WebhookDelivery, delivery_id)
            self.seen.append((delivery_id, row.status if row is not None else None))


def _emit(container: Container, org_id: Any, count: int, clock: ManualClock) -> None:
    with transaction(container.sessions) as session:
        for n in range(count):
            emit(
                session,
                type=EventType.PAYMENT_SUCCEEDED,
                organization_id=org_id,
                occurred_at=clock.now(),
                payload={"n": n},
            )


def _peek(
    container: Container, outbound: Outbound, monkeypatch: pytest.MonkeyPatch
) -> PeekingQueue:
    queue = PeekingQueue(container.sessions)
    monkeypatch.setattr(outbound.deliveries, "_queue", queue)
    return queue


def test_every_message_points_at_a_committed_delivery(
    container: Container,
    outbound: Outbound,
    register: Callable[..., WebhookEndpointCreated],
    principal: Principal,
    org_id: Any,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = register()
    queue = _peek(container, outbound, monkeypatch)
    _emit(container, org_id, 5, clock)

    assert outbound.deliveries.relay() == 5
    assert len(queue.seen) == 5
    assert all(status == DeliveryStatus.PENDING for _, status in queue.seen)

    # A failed attempt schedules its retry only once the failure is recorded.
    with respx.mock(assert_all_mocked=True) as mock:
        mock.post(f"https://{CRM_IP}/hooks/vznos").mock(return_value=httpx.Response(500))
        outbound.deliveries.deliver(queue.seen[0][0])
    retry_id, retry_status = queue.seen[5]
    assert retry_id == queue.seen[0][0] and retry_status == DeliveryStatus.PENDING
    with container.sessions() as session:
        delivery = session.get(WebhookDelivery, retry_id)
        assert delivery is not None and delivery.attempts == 1

    # Redelivery and replay restart rows and queue them after their own commit.
    first_event = _event_ids(container)[0]
    outbound.endpoints.redeliver(principal, first_event)
    outbound.endpoints.replay(principal, endpoint.id, clock.now())
    assert len(queue.seen) == 5 + 1 + 1 + 5
    assert all(status == DeliveryStatus.PENDING for _, status in queue.seen)


def test_a_relay_that_rolls_back_queues_nothing_and_the_next_one_sends_once(
    container: Container,
    outbound: Outbound,
    register: Callable[..., WebhookEndpointCreated],
    org_id: Any,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register()
    queue = _peek(container, outbound, monkeypatch)
    _emit(container, org_id, 3, clock)
    add_delivery = repository.add_delivery
    calls = 0

    def add_then_fail(*args: Any, **kwargs: Any) -> uuid.UUID | None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("the database went away mid-relay")
        added: uuid.UUID | None = add_delivery(*args, **kwargs)
        return added

    monkeypatch.setattr(repository, "add_delivery", add_then_fail)
    with pytest.raises(RuntimeError):
        outbound.deliveries.relay()
    assert queue.seen == []
    with container.sessions() as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
        assert session.scalar(select(func.count()).where(Event.relayed_at.is_(None))) == 3

    monkeypatch.setattr(repository, "add_delivery", add_delivery)
    assert outbound.deliveries.relay() == 3
    assert outbound.deliveries.relay() == 0
    assert len(queue.seen) == 3 and len({d for d, _ in queue.seen}) == 3
    assert all(status == DeliveryStatus.PENDING for _, status in queue.seen)


def _event_ids(container: Container) -> list[uuid.UUID]:
    with container.sessions() as session:
        return list(session.scalars(select(Event.id).order_by(Event.sequence)))
