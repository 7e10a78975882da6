"""Events are written in the same transaction as the change, with thin payloads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from core.db import transaction
from core.outbox import Event, EventType, emit
from members.service import Principal
from tests.conftest import Subscribe
from tests.webhooks.outbound.conftest import decline_a_later_month
from vznos.container import Container
from webhooks.outbound.catalog import EMITTED, PAYLOADS


def _events(container: Container) -> list[Event]:
    with container.sessions() as session:
        return list(session.scalars(select(Event).order_by(Event.sequence)))


def test_a_rolled_back_transaction_leaves_no_event(container: Container, org_id: Any) -> None:
    with pytest.raises(RuntimeError), transaction(container.sessions) as session:
        emit(
            session,
            type=EventType.PAYMENT_SUCCEEDED,
            organization_id=org_id,
            occurred_at=container.clock.now(),
            payload={},
        )
        session.flush()
        raise RuntimeError("the change failed")
    assert _events(container) == []


def test_subscribing_paying_declining_and_canceling_emit_thin_events(
    container: Container, subscribe: Subscribe, principal: Principal
) -> None:
    subscription_id = subscribe("m-7")
    now = container.clock.now()
    # A later month's charge is declined: the same transaction fails it and records events.
    decline_a_later_month(container, subscription_id, now)
    container.subscriptions.cancel(principal, subscription_id)

    everything = _events(container)
    # The member owed the first month from the start until the checkout paid it.
    arrears = [e.payload for e in everything if e.type == "member.arrears_changed"]
    assert [(a["previous_months_owed"], a["months_owed"]) for a in arrears] == [(0, 1), (1, 0)]
    events = [e for e in everything if e.type != "member.arrears_changed"]
    assert [e.type for e in events] == [
        "subscription.activated",
        "payment.succeeded",
        "payment.failed",
        "subscription.past_due",
        "subscription.canceled",
    ]
    activated, paid, failed, past_due, canceled = events
    assert activated.payload["previous_status"] == "pending_confirmation"
    assert paid.payload["amount"] == {"value": "350.00", "currency": "RUB"}
    assert paid.payload["member_external_id"] == "m-7"
    assert paid.payload["gateway_payment_id"]
    assert failed.payload["reason"] == "insufficient_funds"
    assert failed.payload["period"] == "2027-01"
    assert past_due.payload["status"] == "past_due"
    assert canceled.payload["cause"] == "by_crm"
    for event in events:
        assert event.organization_id == principal.organization_id
        text = json.dumps(event.payload, ensure_ascii=False)
        assert "Анна" not in text and "Смирнова" not in text and "@" not in text


def test_every_catalogued_type_documents_its_payload() -> None:
    assert set(PAYLOADS) == set(EventType)
    assert set(EventType) >= EMITTED
