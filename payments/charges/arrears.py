"""What a member with auto-pay can pay now as overdue: the oldest unpaid months that are due
and that auto-pay is no longer collecting.

The ledger pays the oldest unpaid month first, so an overdue payment covers exactly the months
named here only if they are a prefix of the unpaid months, oldest first: the walk stops at the
first month that is not overdue (not yet due, or its charge is still being collected).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.dues import unpaid_months
from payments.charges.models import Charge
from payments.charges.states import MONTHLY_KINDS, ChargeStatus
from payments.subscriptions.models import Subscription


@dataclass(frozen=True)
class OverdueMonth:
    period_month: date
    owed_kopecks: int


@dataclass(frozen=True)
class Overdue:
    months: tuple[OverdueMonth, ...]

    @property
    def total_kopecks(self) -> int:
        return sum(month.owed_kopecks for month in self.months)

    @property
    def periods(self) -> list[date]:
        return [month.period_month for month in self.months]


def overdue(session: Session, subscription: Subscription, current_period: date) -> Overdue:
    """A month is overdue when it is unpaid and either before the current month, or the current
    month whose automatic charge has already failed; a month whose charge is still pending
    (a retry may yet collect it) is not, and neither is anything after it."""
    statuses = dict(
        session.execute(
            select(Charge.period_month, Charge.status).where(
                Charge.subscription_id == subscription.id,
                Charge.kind.in_(list(MONTHLY_KINDS)),
            )
        ).all()
    )
    months: list[OverdueMonth] = []
    for month in unpaid_months(session, subscription.member_id):
        status = statuses.get(month.period_month)
        if month.period_month > current_period or status == ChargeStatus.PENDING:
            break
        if month.period_month == current_period and status != ChargeStatus.FAILED:
            break
        months.append(OverdueMonth(month.period_month, month.accrued_kopecks - month.paid_kopecks))
    return Overdue(tuple(months))
