"""SQL for subscriptions. Never commits."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from payments.subscriptions.models import Subscription, SubscriptionAmountChange


def amount_for_period(session: Session, subscription: Subscription, period: date) -> int:
    """The monthly amount in force for a month: the latest change effective by then, or the
    amount the subscription started with."""
    changed = session.scalar(
        select(SubscriptionAmountChange.amount_kopecks)
        .where(
            SubscriptionAmountChange.subscription_id == subscription.id,
            SubscriptionAmountChange.effective_from <= period,
        )
        .order_by(SubscriptionAmountChange.effective_from.desc())
        .limit(1)
    )
    return changed if changed is not None else subscription.amount_kopecks


def amounts_for_period(
    session: Session, subscriptions: list[Subscription], period: date
) -> dict[uuid.UUID, int]:
    """`amount_for_period` for many subscriptions in one query."""
    changed: dict[uuid.UUID, int] = {
        row[0]: row[1]
        for row in session.execute(
            select(
                SubscriptionAmountChange.subscription_id, SubscriptionAmountChange.amount_kopecks
            )
            .where(
                SubscriptionAmountChange.subscription_id.in_([s.id for s in subscriptions]),
                SubscriptionAmountChange.effective_from <= period,
            )
            .ext(distinct_on(SubscriptionAmountChange.subscription_id))
            .order_by(
                SubscriptionAmountChange.subscription_id,
                SubscriptionAmountChange.effective_from.desc(),
            )
        )
    }
    return {s.id: changed.get(s.id, s.amount_kopecks) for s in subscriptions}


def amount_changes(session: Session, subscription: Subscription) -> list[SubscriptionAmountChange]:
    return list(
        session.scalars(
            select(SubscriptionAmountChange)
            .where(SubscriptionAmountChange.subscription_id == subscription.id)
            .order_by(SubscriptionAmountChange.effective_from)
        )
    )
