"""SQL for refunds. Never commits."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from payments.charges.models import ChargeAttempt
from payments.charges.states import AttemptStatus
from payments.refunds.models import Refund
from payments.refunds.states import OPEN_REFUND_STATUSES, RefundStatus


def refund_for_update(session: Session, refund_id: uuid.UUID) -> Refund | None:
    return session.get(Refund, refund_id, with_for_update=True)


def refund_by_gateway_id(session: Session, gateway_refund_id: str) -> Refund | None:
    return session.scalar(select(Refund).where(Refund.gateway_refund_id == gateway_refund_id))


def refund_by_client_key(session: Session, charge_id: uuid.UUID, client_key: str) -> Refund | None:
    return session.scalar(
        select(Refund).where(Refund.charge_id == charge_id, Refund.client_key == client_key)
    )


def refunds_of(session: Session, charge_id: uuid.UUID) -> list[Refund]:
    return list(
        session.scalars(
            select(Refund)
            .where(Refund.charge_id == charge_id)
            .order_by(Refund.created_at, Refund.id)
        )
    )


def committed_kopecks(session: Session, charge_id: uuid.UUID) -> int:
    """What is refunded or on its way back: every refund the gateway has not canceled."""
    total = session.scalar(
        select(func.coalesce(func.sum(Refund.amount_kopecks), 0)).where(
            Refund.charge_id == charge_id, Refund.status != RefundStatus.CANCELED
        )
    )
    return int(total or 0)


def refunded_by_charge(
    session: Session, charge_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, int]]:
    """Per charge: (succeeded refunds, refunds not canceled) in kopecks."""
    if not charge_ids:
        return {}
    rows = session.execute(
        select(
            Refund.charge_id,
            func.coalesce(
                func.sum(Refund.amount_kopecks).filter(Refund.status == RefundStatus.SUCCEEDED), 0
            ),
            func.coalesce(
                func.sum(Refund.amount_kopecks).filter(Refund.status != RefundStatus.CANCELED), 0
            ),
        )
        .where(Refund.charge_id.in_(charge_ids))
        .group_by(Refund.charge_id)
    ).all()
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


def succeeded_attempt(session: Session, charge_id: uuid.UUID) -> ChargeAttempt | None:
    return session.scalar(
        select(ChargeAttempt).where(
            ChargeAttempt.charge_id == charge_id,
            ChargeAttempt.status == AttemptStatus.SUCCEEDED,
            ChargeAttempt.gateway_payment_id.is_not(None),
        )
    )


def claim_due_refunds(session: Session, now: datetime, limit: int) -> list[Refund]:
    """Open refunds whose check is due; several sweepers may run, each takes different rows."""
    return list(
        session.scalars(
            select(Refund)
            .where(Refund.status.in_(OPEN_REFUND_STATUSES), Refund.next_check_at <= now)
            .order_by(Refund.next_check_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
