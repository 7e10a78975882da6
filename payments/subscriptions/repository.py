"""SQL for subscriptions. Never commits."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
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


def amount_changes(session: Session, subscription: Subscription) -> list[SubscriptionAmountChange]:
    return list(
        session.scalars(
            select(SubscriptionAmountChange)
            .where(SubscriptionAmountChange.subscription_id == subscription.id)
            .order_by(SubscriptionAmountChange.effective_from)
        )
    )
