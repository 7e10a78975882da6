"""Reading a member's payments: card charges with their attempts, card and refunds."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from core.money import MoneyOut
from core.pagination import MAX_PAGE_SIZE
from core.periods import format_period
from ledger.states import Channel
from members.models import Member, Organization
from members.service import Principal, visible_member
from payments.charges.models import Charge, ChargeAttempt
from payments.charges.states import AttemptStatus, ChargeStatus
from payments.history.schemas import PaymentAttemptOut, PaymentCardOut, PaymentOut, PaymentPage
from payments.refunds import repository as refunds_repository
from payments.refunds.errors import PaymentNotFound
from payments.subscriptions.models import PaymentMethod


@dataclass(frozen=True)
class PaymentFilter:
    status: ChargeStatus | None = None
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive


class PaymentReads:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def list_for_member(
        self,
        principal: Principal,
        external_id: str,
        *,
        where: PaymentFilter,
        starting_after: uuid.UUID | None,
        limit: int,
    ) -> PaymentPage:
        """A member's payments, newest first, a page at a time."""
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        with self._sessions() as session:
            member = visible_member(session, principal, external_id)
            query = (
                select(Charge)
                .where(Charge.member_id == member.id)
                .order_by(Charge.created_at.desc(), Charge.id.desc())
                .limit(limit + 1)
            )
            if where.status is not None:
                query = query.where(Charge.status == where.status)
            if where.created_from is not None:
                query = query.where(Charge.created_at >= where.created_from)
            if where.created_to is not None:
                query = query.where(Charge.created_at < where.created_to)
            if starting_after is not None:
                cursor = session.get(Charge, starting_after)
                if cursor is None or cursor.member_id != member.id:
                    raise PaymentNotFound(
                        f"no payment {starting_after} of this member", field="starting_after"
                    )
                query = query.where(
                    tuple_(Charge.created_at, Charge.id) < tuple_(cursor.created_at, cursor.id)
                )
            charges = list(session.scalars(query))
            page = charges[:limit]
            return PaymentPage(data=_views(session, page, member), has_more=len(charges) > limit)

    def get(self, principal: Principal, payment_id: uuid.UUID) -> PaymentOut:
        with self._sessions() as session:
            charge = session.get(Charge, payment_id)
            if charge is None or not principal.can_see(charge.organization_id):
                raise PaymentNotFound(f"no payment {payment_id}", field="payment_id")
            member = session.get(Member, charge.member_id)
            assert member is not None
            return _views(session, [charge], member)[0]


def _views(session: Session, charges: list[Charge], member: Member) -> list[PaymentOut]:
    if not charges:
        return []
    ids = [c.id for c in charges]
    attempts: dict[uuid.UUID, list[ChargeAttempt]] = defaultdict(list)
    for attempt in session.scalars(
        select(ChargeAttempt)
        .where(ChargeAttempt.charge_id.in_(ids))
        .order_by(ChargeAttempt.charge_id, ChargeAttempt.attempt_no)
    ):
        attempts[attempt.charge_id].append(attempt)
    refunded = refunds_repository.refunded_by_charge(session, ids)
    org_codes: dict[uuid.UUID, str] = {
        row.id: row.code
        for row in session.execute(
            select(Organization.id, Organization.code).where(
                Organization.id.in_({c.organization_id for c in charges})
            )
        )
    }
    views = []
    for charge in charges:
        tries = attempts[charge.id]
        paid = next((a for a in tries if a.status == AttemptStatus.SUCCEEDED), None)
        last = tries[-1] if tries else None
        done, committed = refunded.get(charge.id, (0, 0))
        refundable = (
            charge.amount_kopecks - committed if charge.status == ChargeStatus.SUCCEEDED else 0
        )
        card = _card(session, member, paid or last)
        views.append(
            PaymentOut(
                id=charge.id,
                member_external_id=member.external_id,
                organization_code=org_codes.get(charge.organization_id, ""),
                subscription_id=charge.subscription_id,
                status=charge.status,
                channel=Channel.CARD,
                kind=charge.kind,
                amount=MoneyOut.of(charge.amount_kopecks, charge.currency),
                # An overdue payment covers several months; a card change, the month it was in.
                months=[format_period(m) for m in charge.covered_months or [charge.period_month]],
                card=card,
                decline_reason=(
                    charge.failure_reason or (last.cancellation_reason if last else None)
                    if charge.status != ChargeStatus.SUCCEEDED
                    else None
                ),
                gateway_payment_id=paid.gateway_payment_id if paid else None,
                attempts=[
                    PaymentAttemptOut(
                        number=a.attempt_no,
                        status=a.status,
                        reason=a.cancellation_reason,
                        created_at=a.created_at,
                        submitted_at=a.submitted_at,
                        settled_at=a.settled_at,
                    )
                    for a in tries
                ],
                refunded=MoneyOut.of(done, charge.currency),
                refundable=MoneyOut.of(max(refundable, 0), charge.currency),
                created_at=charge.created_at,
                settled_at=charge.settled_at,
            )
        )
    return views


def _card(session: Session, member: Member, attempt: ChargeAttempt | None) -> PaymentCardOut | None:
    """The card an attempt charged: the saved card it named, or for a first payment the card
    that payment saved (stored when the attempt settled)."""
    if attempt is None:
        return None
    method: PaymentMethod | None
    if attempt.payment_method_id is not None:
        method = session.get(PaymentMethod, attempt.payment_method_id)
    elif attempt.settled_at is not None:
        method = session.scalar(
            select(PaymentMethod)
            .where(
                and_(
                    PaymentMethod.member_id == member.id,
                    PaymentMethod.shop_id == attempt.shop_id,
                    PaymentMethod.created_at >= attempt.created_at,
                    PaymentMethod.created_at <= attempt.settled_at,
                )
            )
            .order_by(PaymentMethod.created_at)
            .limit(1)
        )
    else:
        method = None
    if method is None:
        return None
    return PaymentCardOut(
        card_type=method.card_type, first6=method.card_first6, last4=method.card_last4
    )
