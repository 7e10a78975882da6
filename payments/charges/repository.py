"""SQL for charges and attempts. Never commits."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from members.models import Organization
from payments.charges.models import Charge, ChargeAttempt
from payments.charges.states import MONTHLY_KINDS, AttemptStatus, ChargeKind, ChargeStatus
from payments.subscriptions.models import PaymentMethod, Subscription

OPEN_ATTEMPT_STATUSES = (AttemptStatus.CREATED, AttemptStatus.SUBMITTING, AttemptStatus.PENDING)


def attempt_for_update(session: Session, attempt_id: uuid.UUID) -> ChargeAttempt | None:
    return session.get(ChargeAttempt, attempt_id, with_for_update=True)


def attempt_by_gateway_payment(session: Session, payment_id: str) -> ChargeAttempt | None:
    return session.scalar(
        select(ChargeAttempt).where(ChargeAttempt.gateway_payment_id == payment_id)
    )


def attempt_for_gateway_payment(
    session: Session, payment_id: str, named_attempt_id: str | None
) -> uuid.UUID | None:
    """Which attempt a gateway payment belongs to: by its id, or by the attempt id it carries
    in metadata (the reply that gave us the id may have been lost)."""
    attempt_id: uuid.UUID | None = session.scalar(
        select(ChargeAttempt.id).where(ChargeAttempt.gateway_payment_id == payment_id)
    )
    if attempt_id is not None or not named_attempt_id:
        return attempt_id
    try:
        candidate = uuid.UUID(named_attempt_id)
    except ValueError:
        return None
    found = session.get(ChargeAttempt, candidate)
    if found is not None and found.gateway_payment_id in (None, payment_id):
        return found.id
    return None


def claim_due_attempts(session: Session, now: datetime, limit: int) -> list[ChargeAttempt]:
    """Open attempts whose check is due; several sweepers may run, each takes different rows."""
    return list(
        session.scalars(
            select(ChargeAttempt)
            .where(
                ChargeAttempt.status.in_(OPEN_ATTEMPT_STATUSES),
                ChargeAttempt.next_check_at <= now,
            )
            .order_by(ChargeAttempt.next_check_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def last_attempt(session: Session, charge_id: uuid.UUID) -> ChargeAttempt | None:
    return session.scalar(
        select(ChargeAttempt)
        .where(ChargeAttempt.charge_id == charge_id)
        .order_by(ChargeAttempt.attempt_no.desc())
        .limit(1)
    )


def latest_charge(session: Session, subscription_id: uuid.UUID) -> Charge | None:
    return session.scalar(
        select(Charge)
        .where(Charge.subscription_id == subscription_id, Charge.kind.in_(list(MONTHLY_KINDS)))
        .order_by(Charge.period_month.desc())
        .limit(1)
    )


def open_self_service_attempt(
    session: Session, subscription_id: uuid.UUID, kind: ChargeKind
) -> ChargeAttempt | None:
    """The open attempt of a member's pending card change or overdue payment, if any."""
    return session.scalar(
        select(ChargeAttempt)
        .join(Charge, Charge.id == ChargeAttempt.charge_id)
        .where(
            Charge.subscription_id == subscription_id,
            Charge.kind == kind,
            Charge.status == ChargeStatus.PENDING,
            ChargeAttempt.status.in_(OPEN_ATTEMPT_STATUSES),
        )
        .order_by(ChargeAttempt.created_at.desc())
        .limit(1)
    )


def open_first_payment_attempts(session: Session, subscription_id: uuid.UUID) -> list[uuid.UUID]:
    """Open attempts the member confirms on the acquirer's page (first payment, card change,
    overdue payment): a member coming back from that page may have just finished one."""
    return list(
        session.scalars(
            select(ChargeAttempt.id)
            .join(Charge, Charge.id == ChargeAttempt.charge_id)
            .where(
                Charge.subscription_id == subscription_id,
                Charge.kind != ChargeKind.RECURRING,
                ChargeAttempt.status.in_(OPEN_ATTEMPT_STATUSES),
            )
        )
    )


def recent_charges(session: Session, subscription_id: uuid.UUID, limit: int) -> list[Charge]:
    return list(
        session.scalars(
            select(Charge)
            .where(Charge.subscription_id == subscription_id)
            .order_by(Charge.created_at.desc())
            .limit(limit)
        )
    )


def claim_due_charges(session: Session, now: datetime, limit: int) -> list[Charge]:
    """Open charges whose next attempt is due; concurrent runs each take different rows."""
    return list(
        session.scalars(
            select(Charge)
            .where(
                Charge.status == ChargeStatus.PENDING,
                Charge.next_attempt_at.is_not(None),
                Charge.next_attempt_at <= now,
            )
            .order_by(Charge.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def attempts_of(session: Session, charge_id: uuid.UUID) -> list[ChargeAttempt]:
    return list(
        session.scalars(
            select(ChargeAttempt)
            .where(ChargeAttempt.charge_id == charge_id)
            .order_by(ChargeAttempt.attempt_no)
        )
    )


def last_attempts(session: Session, charge_ids: list[uuid.UUID]) -> dict[uuid.UUID, ChargeAttempt]:
    """Each charge's latest attempt, for many charges in one query."""
    if not charge_ids:
        return {}
    return {
        attempt.charge_id: attempt
        for attempt in session.scalars(
            select(ChargeAttempt)
            .where(ChargeAttempt.charge_id.in_(charge_ids))
            .ext(distinct_on(ChargeAttempt.charge_id))
            .order_by(ChargeAttempt.charge_id, ChargeAttempt.attempt_no.desc())
        )
    }


def subscriptions_for_update(
    session: Session, subscription_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Subscription]:
    """Lock many subscriptions in one statement, in id order (so two lockers never deadlock)."""
    if not subscription_ids:
        return {}
    return {
        subscription.id: subscription
        for subscription in session.scalars(
            select(Subscription)
            .where(Subscription.id.in_(set(subscription_ids)))
            .order_by(Subscription.id)
            .with_for_update()
        )
    }


def payment_methods(
    session: Session, method_ids: list[uuid.UUID]
) -> dict[uuid.UUID, PaymentMethod]:
    if not method_ids:
        return {}
    return {
        method.id: method
        for method in session.scalars(
            select(PaymentMethod).where(PaymentMethod.id.in_(set(method_ids)))
        )
    }


def timezones(session: Session, organization_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not organization_ids:
        return {}
    return {
        row[0]: row[1]
        for row in session.execute(
            select(Organization.id, Organization.timezone).where(
                Organization.id.in_(set(organization_ids))
            )
        )
    }
