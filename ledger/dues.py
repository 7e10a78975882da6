"""A member's dues month by month: what each month owes and how much of it is paid.

Payments are applied to the oldest unpaid month first; an overpayment stays as credit and pays
the next months as they are accrued. The table is maintained with every posting to a member's
receivable and can always be recomputed from the postings (`recompute`, `expected_months`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import case, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.models import Account, DuesMonth, JournalEntry, Posting
from ledger.states import AccountKind, EntryKind, OwnerType


@dataclass(frozen=True)
class Month:
    period_month: date
    accrued_kopecks: int
    paid_kopecks: int


MONTH_CHARGING_KINDS = (EntryKind.ACCRUAL, EntryKind.REVERSAL, EntryKind.ADJUSTMENT)


def charged_month(kind: EntryKind, period_month: date | None) -> date | None:
    """The month an entry charges to a member, if it is an accrual or a correction of one."""
    return period_month if kind in MONTH_CHARGING_KINDS else None


def charged_month_of(kind: Any, period_month: Any) -> Any:
    """`charged_month` as SQL."""
    return case((kind.in_([k.value for k in MONTH_CHARGING_KINDS]), period_month), else_=None)


def fifo(accrued: Sequence[tuple[date, int]], credit_kopecks: int) -> list[Month]:
    """Apply a pool of credit to months in order, oldest first."""
    months = []
    remaining = max(credit_kopecks, 0)
    for period, amount in sorted(accrued):
        paid = min(max(amount, 0), remaining)
        remaining -= paid
        months.append(Month(period, max(amount, 0), paid))
    return months


def on_receivable_posting(
    session: Session,
    *,
    member_id: uuid.UUID,
    organization_id: uuid.UUID | None,
    currency: str,
    amount_kopecks: int,
    charged_month: date | None,
    balance_after: int,
) -> None:
    """`charged_month` is the month an accrual (or its reversal or adjustment) charges;
    None for payments and everything else, which are credit applied oldest month first."""
    if organization_id is None:
        raise ValueError("a posting to a member's receivable needs the entry's organization_id")
    period_month = charged_month
    if amount_kopecks > 0 and period_month is not None:
        newest = session.scalar(
            select(func.max(DuesMonth.period_month)).where(DuesMonth.member_id == member_id)
        )
        if newest is None or period_month >= newest:
            _accrue_newest(
                session,
                member_id,
                organization_id,
                currency,
                period_month,
                amount_kopecks,
                credit=max(-(balance_after - amount_kopecks), 0),
            )
            return
    elif amount_kopecks < 0 and period_month is None:
        _apply_credit(session, member_id, -amount_kopecks)
        return
    # A back-dated accrual, or a payment taken back: recompute the member's months.
    recompute(session, member_id, organization_id, currency)


def _accrue_newest(
    session: Session,
    member_id: uuid.UUID,
    organization_id: uuid.UUID,
    currency: str,
    period_month: date,
    amount: int,
    credit: int,
) -> None:
    paid = min(amount, credit)
    session.execute(
        insert(DuesMonth)
        .values(
            member_id=member_id,
            period_month=period_month,
            organization_id=organization_id,
            currency=currency,
            accrued_kopecks=amount,
            paid_kopecks=paid,
        )
        .on_conflict_do_update(
            index_elements=["member_id", "period_month"],
            set_={
                "accrued_kopecks": DuesMonth.accrued_kopecks + amount,
                "paid_kopecks": DuesMonth.paid_kopecks + paid,
            },
        )
    )


def _apply_credit(session: Session, member_id: uuid.UUID, credit: int) -> None:
    unpaid = session.execute(
        select(DuesMonth.period_month, DuesMonth.accrued_kopecks, DuesMonth.paid_kopecks)
        .where(
            DuesMonth.member_id == member_id,
            DuesMonth.paid_kopecks < DuesMonth.accrued_kopecks,
        )
        .order_by(DuesMonth.period_month)
        .with_for_update()
    ).all()
    for row in unpaid:
        if credit <= 0:
            break
        paying = min(credit, row.accrued_kopecks - row.paid_kopecks)
        credit -= paying
        session.execute(
            text(
                "UPDATE ledger_dues_months SET paid_kopecks = paid_kopecks + :paying "
                "WHERE member_id = :member AND period_month = :period"
            ),
            {"paying": paying, "member": member_id, "period": row.period_month},
        )


def expected_months(session: Session, member_id: uuid.UUID) -> list[Month]:
    """The member's months as the postings say they must be."""
    receivable = (
        select(
            Posting.amount_kopecks,
            charged_month_of(JournalEntry.kind, JournalEntry.period_month).label("month"),
        )
        .join(Account, Account.id == Posting.account_id)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(
            Account.owner_type == OwnerType.MEMBER,
            Account.owner_id == member_id,
            Account.kind == AccountKind.MEMBER_DUES_RECEIVABLE,
        )
    ).subquery()
    accrued: dict[date, int] = {}
    credit = 0
    for amount, period in session.execute(select(receivable.c.amount_kopecks, receivable.c.month)):
        if period is not None:
            accrued[period] = accrued.get(period, 0) + amount
        else:
            # Payments are credit; anything else debited without a month (a payment taken
            # back) shrinks the credit.
            credit -= amount
    return fifo(list(accrued.items()), credit)


def recompute(
    session: Session, member_id: uuid.UUID, organization_id: uuid.UUID, currency: str
) -> None:
    months = expected_months(session, member_id)
    session.execute(
        text("DELETE FROM ledger_dues_months WHERE member_id = :member"), {"member": member_id}
    )
    if months:
        session.execute(
            insert(DuesMonth),
            [
                {
                    "member_id": member_id,
                    "period_month": month.period_month,
                    "organization_id": organization_id,
                    "currency": currency,
                    "accrued_kopecks": month.accrued_kopecks,
                    "paid_kopecks": month.paid_kopecks,
                }
                for month in months
            ],
        )


def unpaid_months(session: Session, member_id: uuid.UUID) -> list[Month]:
    """The member's months not fully paid, oldest first: the order payments pay them in."""
    rows = session.execute(
        select(DuesMonth.period_month, DuesMonth.accrued_kopecks, DuesMonth.paid_kopecks)
        .where(
            DuesMonth.member_id == member_id,
            DuesMonth.paid_kopecks < DuesMonth.accrued_kopecks,
        )
        .order_by(DuesMonth.period_month)
    ).all()
    return [Month(row.period_month, row.accrued_kopecks, row.paid_kopecks) for row in rows]
