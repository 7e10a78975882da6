"""Subscription lifecycle. Terminal: canceled."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy.orm import object_session

from core.money import MoneyOut
from core.outbox import EventType, emit
from core.states import check_transition
from members.models import Member

if TYPE_CHECKING:
    from payments.subscriptions.models import Subscription


class SubscriptionStatus(StrEnum):
    PENDING_CONFIRMATION = (
        "pending_confirmation"  # first payment not yet made on the acquirer's page
    )
    ACTIVE = "active"
    PAST_DUE = "past_due"  # the last automatic charge was declined
    CANCELED = "canceled"


class CancelCause(StrEnum):
    BY_CRM = "by_crm"
    FIRST_PAYMENT_FAILED = "first_payment_failed"


LIVE_STATUSES = frozenset(
    {
        SubscriptionStatus.PENDING_CONFIRMATION,
        SubscriptionStatus.ACTIVE,
        SubscriptionStatus.PAST_DUE,
    }
)
CHARGEABLE_STATUSES = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE})

TRANSITIONS: dict[SubscriptionStatus, frozenset[SubscriptionStatus]] = {
    SubscriptionStatus.PENDING_CONFIRMATION: frozenset(
        {SubscriptionStatus.ACTIVE, SubscriptionStatus.CANCELED}
    ),
    SubscriptionStatus.ACTIVE: frozenset(
        {SubscriptionStatus.PAST_DUE, SubscriptionStatus.CANCELED}
    ),
    SubscriptionStatus.PAST_DUE: frozenset(
        {SubscriptionStatus.ACTIVE, SubscriptionStatus.CANCELED}
    ),
    SubscriptionStatus.CANCELED: frozenset(),
}


def transition(current: SubscriptionStatus, target: SubscriptionStatus) -> SubscriptionStatus:
    return check_transition("subscription", TRANSITIONS, current, target)


def move(
    subscription: Subscription,
    target: SubscriptionStatus,
    now: datetime,
    cause: CancelCause | None = None,
) -> bool:
    """Move a subscription to `target` through the table. Returns False when it is already there."""
    current = SubscriptionStatus(subscription.status)
    if current == target:
        return False
    subscription.status = transition(current, target)
    subscription.status_changed_at = now
    if target == SubscriptionStatus.ACTIVE and subscription.activated_at is None:
        subscription.activated_at = now
    if target == SubscriptionStatus.CANCELED:
        subscription.canceled_at = now
        subscription.cancel_cause = cause
    _emit_moved(subscription, current, target, now)
    return True


_EVENT_OF = {
    SubscriptionStatus.ACTIVE: EventType.SUBSCRIPTION_ACTIVATED,
    SubscriptionStatus.PAST_DUE: EventType.SUBSCRIPTION_PAST_DUE,
    SubscriptionStatus.CANCELED: EventType.SUBSCRIPTION_CANCELED,
}


def _emit_moved(
    subscription: Subscription,
    previous: SubscriptionStatus,
    target: SubscriptionStatus,
    now: datetime,
) -> None:
    """Tell the CRM, in the transaction that made the change: every status change passes here,
    so no caller can forget. Thin payload: ids and amounts, never the member's name."""
    session = object_session(subscription)
    event_type = _EVENT_OF.get(target)
    if session is None or event_type is None:
        return
    member = session.get(Member, subscription.member_id)
    data: dict[str, object] = {
        "subscription_id": str(subscription.id),
        "member_id": str(subscription.member_id),
        "member_external_id": member.external_id if member else None,
        "status": str(target),
        "previous_status": str(previous),
        "amount": MoneyOut.of(subscription.amount_kopecks, subscription.currency).model_dump(),
        "billing_day": subscription.billing_day,
    }
    if target == SubscriptionStatus.CANCELED:
        data["cause"] = subscription.cancel_cause
    emit(
        session,
        type=event_type,
        organization_id=subscription.organization_id,
        occurred_at=now,
        payload=data,
    )
