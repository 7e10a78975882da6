"""The subscription lifecycle is an explicit state machine: every row of the transition table is
allowed (timestamped, with a cause, appended to the history, announced to the CRM) and every
other move is refused. One live subscription per member holds for every live status."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from core.outbox import Event, EventType
from core.states import IllegalTransition
from members.models import Member
from payments.subscriptions.models import STATUSES, Subscription, SubscriptionStatusChange
from payments.subscriptions.states import (
    LIVE_STATUSES,
    TRANSITIONS,
    Cause,
    SubscriptionStatus,
    move,
    record_created,
    resume_target,
)
from vznos.container import Container

S = SubscriptionStatus
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ALLOWED = [(current, target) for current, targets in TRANSITIONS.items() for target in targets]
REFUSED = [
    (current, target)
    for current in SubscriptionStatus
    for target in SubscriptionStatus
    if target != current and target not in TRANSITIONS[current]
]
EXPECTED_EVENT = {
    S.ACTIVE: EventType.SUBSCRIPTION_ACTIVATED,
    S.PAST_DUE: EventType.SUBSCRIPTION_PAST_DUE,
    S.NEEDS_PAYMENT_METHOD: EventType.SUBSCRIPTION_NEEDS_PAYMENT_METHOD,
    S.STANDBY: EventType.SUBSCRIPTION_STANDBY,
    S.PAUSED: EventType.SUBSCRIPTION_PAUSED,
    S.CANCELED: EventType.SUBSCRIPTION_CANCELED,
}


def new_subscription(
    session: Session, organization_id: uuid.UUID, status: SubscriptionStatus, member: str = "m-1"
) -> Subscription:
    person = session.scalar(select(Member).where(Member.external_id == member))
    if person is None:
        person = Member(
            id=uuid.uuid4(),
            external_id=member,
            organization_id=organization_id,
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(person)
    subscription = Subscription(
        id=uuid.uuid4(),
        member_id=person.id,
        organization_id=organization_id,
        status=status,
        amount_kopecks=350_00,
        currency="RUB",
        billing_day=5,
        start_period=date(2026, 11, 1),
        consent_version="2026-11",
        consent_accepted_at=NOW,
        return_url="https://crm.example.org/thanks",
        created_at=NOW,
        status_changed_at=NOW,
    )
    session.add(subscription)
    session.flush()
    record_created(subscription, NOW)
    return subscription


@pytest.fixture
def org_id(container: Container, org_code: str) -> uuid.UUID:
    with container.sessions() as session:
        found = session.scalar(
            text("SELECT id FROM organizations WHERE code = :c"), {"c": org_code}
        )
    assert isinstance(found, uuid.UUID)
    return found


def test_the_database_knows_every_status() -> None:
    assert tuple(SubscriptionStatus) == STATUSES
    assert set(TRANSITIONS) == set(SubscriptionStatus)
    assert set(LIVE_STATUSES) == set(SubscriptionStatus) - {S.CANCELED}


@pytest.mark.parametrize(("current", "target"), ALLOWED, ids=lambda s: str(s))
def test_every_row_of_the_table_is_a_recorded_announced_change(
    container: Container, org_id: uuid.UUID, current: S, target: S
) -> None:
    later = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    with container.sessions() as session, session.begin():
        subscription = new_subscription(session, org_id, current)
        cause = Cause.BY_CRM if target == S.CANCELED else Cause.CHARGE_DECLINED
        assert move(subscription, target, later, cause, reason="insufficient_funds")
        assert subscription.status == target
        assert subscription.status_changed_at == later
        assert not move(subscription, target, later, cause)  # already there: nothing recorded
        subscription_id = subscription.id

    with container.sessions() as session:
        history = session.scalars(
            select(SubscriptionStatusChange)
            .where(SubscriptionStatusChange.subscription_id == subscription_id)
            .order_by(SubscriptionStatusChange.sequence)
        ).all()
        assert [(h.previous_status, h.status, h.cause) for h in history] == [
            (None, current, Cause.CREATED),
            (current, target, cause),
        ]
        assert history[1].changed_at == later
        assert history[1].reason == "insufficient_funds"
        [event] = session.scalars(select(Event)).all()
    expected = (
        EventType.SUBSCRIPTION_RESUMED
        if current == S.PAUSED and target != S.CANCELED
        else EXPECTED_EVENT[target]
    )
    assert event.type == expected
    assert event.payload["subscription_id"] == str(subscription_id)
    assert event.payload["previous_status"] == current
    assert event.payload["status"] == target
    assert event.payload["cause"] == cause
    assert event.payload["reason"] == "insufficient_funds"
    assert event.payload["member_external_id"] == "m-1"
    assert "full_name" not in event.payload


@pytest.mark.parametrize(("current", "target"), REFUSED, ids=lambda s: str(s))
def test_every_other_move_is_refused(
    container: Container, org_id: uuid.UUID, current: S, target: S
) -> None:
    with container.sessions() as session, session.begin():
        subscription = new_subscription(session, org_id, current)
        with pytest.raises(IllegalTransition):
            move(subscription, target, NOW, Cause.BY_CRM)
        assert subscription.status == current


@pytest.mark.parametrize("paused_from", [S.ACTIVE, S.PAST_DUE, S.STANDBY, S.NEEDS_PAYMENT_METHOD])
def test_a_pause_resumes_to_where_it_came_from(
    container: Container, org_id: uuid.UUID, paused_from: S
) -> None:
    with container.sessions() as session, session.begin():
        subscription = new_subscription(session, org_id, paused_from)
        move(subscription, S.PAUSED, NOW, Cause.PAUSED_BY_CRM, resume_on=date(2027, 3, 1))
        assert subscription.paused_until == date(2027, 3, 1)
        assert resume_target(subscription) == paused_from
        move(subscription, resume_target(subscription), NOW, Cause.RESUME_DATE_REACHED)
        assert subscription.status == paused_from
        assert subscription.paused_until is None
        assert subscription.paused_from_status is None
        events = session.scalars(select(Event.type).order_by(Event.sequence)).all()
    assert events == [EventType.SUBSCRIPTION_PAUSED, EventType.SUBSCRIPTION_RESUMED]


@pytest.mark.parametrize("live", sorted(LIVE_STATUSES))
def test_one_live_subscription_per_member_in_every_live_status(
    container: Container, org_id: uuid.UUID, live: S
) -> None:
    with container.sessions() as session, session.begin():
        new_subscription(session, org_id, S.CANCELED)
        new_subscription(session, org_id, S.CANCELED)  # any number of ended ones
        new_subscription(session, org_id, live)
    with (
        pytest.raises(IntegrityError, match="uq_subscriptions_one_live_per_member"),
        container.sessions() as session,
        session.begin(),
    ):
        new_subscription(session, org_id, S.STANDBY)


def test_the_history_is_append_only_and_statuses_are_known(
    container: Container, org_id: uuid.UUID
) -> None:
    with container.sessions() as session, session.begin():
        new_subscription(session, org_id, S.ACTIVE)
    with pytest.raises(DBAPIError, match="append-only"), container.engine.begin() as connection:
        connection.execute(text("UPDATE subscription_status_changes SET cause = 'x'"))
    with pytest.raises(DBAPIError, match="append-only"), container.engine.begin() as connection:
        connection.execute(text("DELETE FROM subscription_status_changes"))
    with (
        pytest.raises(IntegrityError, match="status_known"),
        container.engine.begin() as connection,
    ):
        connection.execute(text("UPDATE subscriptions SET status = 'frozen'"))
