"""Subscription lifecycle. Terminal: canceled.

```
pending_confirmation ─► active ⇄ past_due ─► needs_payment_method ─► active | standby
        │                  │         │               ▲
        └─► standby ───────┼─────────┼───────────────┘   (standby: a card saved with no payment,
                           ▼         ▼                     idle while payroll pays the dues)
             paused (from active, past_due, standby, needs_payment_method; resumes to where it
                     came from)                 every live status ─► canceled
```

Every change goes through `move()`: it checks the table, stamps the time and the cause, appends
a row to `subscription_status_changes` and emits the CRM event, all in the caller's transaction.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy.orm import object_session

from core.ids import new_id
from core.money import MoneyOut
from core.outbox import EventType, emit
from core.states import check_transition
from members.models import Member
from payments.subscriptions.models import SubscriptionStatusChange

if TYPE_CHECKING:
    from payments.subscriptions.models import Subscription


class SubscriptionStatus(StrEnum):
    PENDING_CONFIRMATION = (
        "pending_confirmation"  # first payment (or card save) not yet made on the acquirer's page
    )
    ACTIVE = "active"
    PAST_DUE = "past_due"  # the month's charge was declined; retries may still come
    NEEDS_PAYMENT_METHOD = "needs_payment_method"  # the saved card is dead: a new one is needed
    STANDBY = "standby"  # a card saved with no payment, idle while payroll pays the dues
    PAUSED = "paused"  # on leave or exempt; resumes on a date or when the CRM says so
    CANCELED = "canceled"


class SubscriptionMode(StrEnum):
    CARD = "card"  # the card pays every month
    STANDBY = "standby"  # the card waits; it pays only payroll shortfalls


class Cause(StrEnum):
    """Why a subscription changed status. Stored with every change and sent to the CRM."""

    CREATED = "created"
    FIRST_PAYMENT_SUCCEEDED = "first_payment_succeeded"
    CARD_SAVED = "card_saved"  # a new card was saved (first save or a replacement)
    CHARGE_SUCCEEDED = "charge_succeeded"
    CHARGE_DECLINED = "charge_declined"  # a decline that may pass: retries follow
    CARD_DECLINED = "card_declined"  # a decline that will not pass with this card
    CARD_EXPIRED = "card_expired"  # the card expired before a charge: not even tried
    RETRIES_EXHAUSTED = "retries_exhausted"
    PAUSED_BY_CRM = "paused_by_crm"
    RESUMED_BY_CRM = "resumed_by_crm"
    RESUME_DATE_REACHED = "resume_date_reached"
    # Cancel causes.
    BY_MEMBER = "by_member"
    BY_CRM = "by_crm"
    MEMBERSHIP_ENDED = "membership_ended"
    FIRST_PAYMENT_FAILED = "first_payment_failed"
    MEMBER_ERASED = "member_erased"
    CARD_NOT_SAVED = "card_not_saved"  # a standby card binding was declined or abandoned


# Kept for callers written before every change had a cause: the cancel causes are causes.
CancelCause = Cause
CANCEL_CAUSES = frozenset(
    {
        Cause.BY_MEMBER,
        Cause.BY_CRM,
        Cause.MEMBERSHIP_ENDED,
        Cause.FIRST_PAYMENT_FAILED,
        Cause.MEMBER_ERASED,
        Cause.CARD_NOT_SAVED,
    }
)

S = SubscriptionStatus

LIVE_STATUSES = frozenset(s for s in SubscriptionStatus if s != S.CANCELED)
# Charged every month by billing. Standby is charged only for payroll shortfalls, never monthly.
CHARGEABLE_STATUSES = frozenset({S.ACTIVE, S.PAST_DUE})
# A paused subscription resumes to the status it was paused from.
PAUSABLE_STATUSES = frozenset({S.ACTIVE, S.PAST_DUE, S.STANDBY, S.NEEDS_PAYMENT_METHOD})

TRANSITIONS: dict[SubscriptionStatus, frozenset[SubscriptionStatus]] = {
    S.PENDING_CONFIRMATION: frozenset({S.ACTIVE, S.STANDBY, S.CANCELED}),
    S.ACTIVE: frozenset({S.PAST_DUE, S.NEEDS_PAYMENT_METHOD, S.PAUSED, S.CANCELED}),
    S.PAST_DUE: frozenset({S.ACTIVE, S.NEEDS_PAYMENT_METHOD, S.PAUSED, S.CANCELED}),
    S.NEEDS_PAYMENT_METHOD: frozenset({S.ACTIVE, S.STANDBY, S.PAUSED, S.CANCELED}),
    S.STANDBY: frozenset({S.NEEDS_PAYMENT_METHOD, S.PAUSED, S.CANCELED}),
    S.PAUSED: frozenset({S.ACTIVE, S.PAST_DUE, S.STANDBY, S.NEEDS_PAYMENT_METHOD, S.CANCELED}),
    S.CANCELED: frozenset(),
}


def transition(current: SubscriptionStatus, target: SubscriptionStatus) -> SubscriptionStatus:
    return check_transition("subscription", TRANSITIONS, current, target)


def move(
    subscription: Subscription,
    target: SubscriptionStatus,
    now: datetime,
    cause: Cause,
    *,
    reason: str | None = None,
    resume_on: date | None = None,
) -> bool:
    """Move a subscription to `target` through the table, with its cause (and, for declines,
    the gateway's reason). Returns False when it is already there: nothing is recorded."""
    current = SubscriptionStatus(subscription.status)
    if current == target:
        return False
    subscription.status = transition(current, target)
    subscription.status_changed_at = now
    if target == S.ACTIVE and subscription.activated_at is None:
        subscription.activated_at = now
    if target == S.CANCELED:
        subscription.canceled_at = now
        subscription.cancel_cause = cause
    if target == S.PAUSED:
        subscription.paused_from_status = current
        subscription.paused_until = resume_on
    elif current == S.PAUSED:
        subscription.paused_from_status = None
        subscription.paused_until = None
    _record(subscription, current, target, now, cause, reason, resume_on)
    return True


def resume_target(subscription: Subscription) -> SubscriptionStatus:
    """Where a paused subscription goes back to: where it came from, or active."""
    previous = subscription.paused_from_status
    if previous is not None and previous in PAUSABLE_STATUSES:
        return SubscriptionStatus(previous)
    return S.ACTIVE


def record_created(subscription: Subscription, now: datetime, cause: Cause = Cause.CREATED) -> None:
    """The first row of a subscription's history (no event: nothing changed for the CRM yet)."""
    session = object_session(subscription)
    assert session is not None, "add the subscription to the session first"
    session.add(
        SubscriptionStatusChange(
            id=new_id(),
            subscription_id=subscription.id,
            previous_status=None,
            status=subscription.status,
            cause=cause,
            reason=None,
            changed_at=now,
        )
    )


_EVENT_OF = {
    S.ACTIVE: EventType.SUBSCRIPTION_ACTIVATED,
    S.PAST_DUE: EventType.SUBSCRIPTION_PAST_DUE,
    S.NEEDS_PAYMENT_METHOD: EventType.SUBSCRIPTION_NEEDS_PAYMENT_METHOD,
    S.STANDBY: EventType.SUBSCRIPTION_STANDBY,
    S.PAUSED: EventType.SUBSCRIPTION_PAUSED,
    S.CANCELED: EventType.SUBSCRIPTION_CANCELED,
}


def _record(
    subscription: Subscription,
    previous: SubscriptionStatus,
    target: SubscriptionStatus,
    now: datetime,
    cause: Cause,
    reason: str | None,
    resume_on: date | None,
) -> None:
    """Append the change and tell the CRM, in the transaction that made it: every status change
    passes here, so no caller can forget. Thin payload: ids and amounts, never the name."""
    session = object_session(subscription)
    if session is None:
        return
    session.add(
        SubscriptionStatusChange(
            id=new_id(),
            subscription_id=subscription.id,
            previous_status=previous,
            status=target,
            cause=cause,
            reason=reason[:64] if reason else None,
            changed_at=now,
        )
    )
    # Coming back from a pause is a resume, whatever status it resumes to.
    event_type = (
        EventType.SUBSCRIPTION_RESUMED
        if previous == S.PAUSED and target != S.CANCELED
        else _EVENT_OF[target]
    )
    member = session.get(Member, subscription.member_id)
    data: dict[str, object] = {
        "subscription_id": str(subscription.id),
        "member_id": str(subscription.member_id),
        "member_external_id": member.external_id if member else None,
        "status": str(target),
        "previous_status": str(previous),
        "cause": str(cause),
        "amount": MoneyOut.of(subscription.amount_kopecks, subscription.currency).model_dump(),
        "billing_day": subscription.billing_day,
    }
    if reason is not None:
        data["reason"] = reason
    if target == S.PAUSED:
        data["paused_until"] = resume_on.isoformat() if resume_on else None
    if target == S.NEEDS_PAYMENT_METHOD:
        # The member must save a new card: the CRM or a notice sends them the link.
        data["action"] = "save_new_card"
    emit(
        session,
        type=event_type,
        organization_id=subscription.organization_id,
        occurred_at=now,
        payload=data,
    )
