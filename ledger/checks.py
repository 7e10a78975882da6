"""The ledger's invariants, checked from the data: run by `vznos ledger check` and daily by the
scheduler. Each check returns the violations it found; an empty list means it holds."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from ledger.dues import MONTH_CHARGING_KINDS
from ledger.states import AccountKind, OwnerType


@dataclass(frozen=True)
class Violation:
    check: str
    detail: str


def entries_balance(session: Session) -> list[Violation]:
    rows = session.execute(
        text(
            "SELECT entry_id, currency, sum(amount_kopecks) AS total FROM ledger_postings"
            " GROUP BY entry_id, currency HAVING sum(amount_kopecks) <> 0"
        )
    ).all()
    lonely = session.execute(
        text(
            "SELECT e.id FROM ledger_entries e LEFT JOIN ledger_postings p ON p.entry_id = e.id"
            " GROUP BY e.id HAVING count(p.id) < 2"
        )
    ).all()
    return [
        Violation("entries_balance", f"entry {r.entry_id} sums to {r.total} {r.currency}")
        for r in rows
    ] + [Violation("entries_balance", f"entry {r.id} has fewer than two postings") for r in lonely]


def balances_match_postings(session: Session) -> list[Violation]:
    rows = session.execute(
        text(
            "SELECT coalesce(b.account_id, p.account_id) AS account,"
            " coalesce(b.balance_kopecks, 0) AS kept, coalesce(p.total, 0) AS computed"
            " FROM ledger_balances b FULL JOIN ("
            "   SELECT account_id, sum(amount_kopecks) AS total FROM ledger_postings"
            "   GROUP BY account_id) p ON p.account_id = b.account_id"
            " WHERE coalesce(b.balance_kopecks, 0) <> coalesce(p.total, 0)"
        )
    ).all()
    return [
        Violation(
            "balances_match_postings",
            f"account {r.account}: maintained {r.kept}, postings sum to {r.computed}",
        )
        for r in rows
    ]


def nothing_posted_in_closed_months(session: Session) -> list[Violation]:
    rows = session.execute(
        text(
            "SELECT e.id, c.organization_id, c.period_month FROM ledger_entries e"
            " JOIN ledger_period_closes c ON c.organization_id = e.organization_id"
            " AND c.period_month = e.booked_period WHERE e.recorded_at > c.closed_at"
        )
    ).all()
    return [
        Violation(
            "nothing_posted_in_closed_months",
            f"entry {r.id} was booked in {r.period_month:%Y-%m} after {r.organization_id} "
            "closed it",
        )
        for r in rows
    ]


def dues_months_match_postings(session: Session) -> list[Violation]:
    """Each member's months hold what the postings accrued, and payments paid the oldest first."""
    params = {
        "member": OwnerType.MEMBER,
        "receivable": AccountKind.MEMBER_DUES_RECEIVABLE,
        "kinds": [str(kind) for kind in MONTH_CHARGING_KINDS],
    }
    accrued = session.execute(
        text(
            "WITH expected AS ("
            "  SELECT a.owner_id AS member_id, e.period_month, greatest(sum(p.amount_kopecks), 0)"
            "  AS accrued FROM ledger_postings p JOIN ledger_entries e ON e.id = p.entry_id"
            "  JOIN ledger_accounts a ON a.id = p.account_id"
            "  WHERE a.owner_type = :member AND a.kind = :receivable"
            "  AND e.kind = ANY(:kinds) AND e.period_month IS NOT NULL"
            "  GROUP BY a.owner_id, e.period_month)"
            " SELECT coalesce(x.member_id, d.member_id) AS member_id,"
            " coalesce(x.period_month, d.period_month) AS period_month,"
            " coalesce(x.accrued, 0) AS expected, coalesce(d.accrued_kopecks, 0) AS kept"
            " FROM expected x FULL JOIN ledger_dues_months d"
            " ON d.member_id = x.member_id AND d.period_month = x.period_month"
            " WHERE coalesce(x.accrued, 0) <> coalesce(d.accrued_kopecks, 0)"
        ),
        params,
    ).all()
    unpaid = session.execute(
        text(
            "SELECT d.member_id, sum(d.accrued_kopecks - d.paid_kopecks) AS unpaid,"
            " greatest(min(b.balance_kopecks), 0) AS owed FROM ledger_dues_months d"
            " JOIN ledger_accounts a ON a.owner_id = d.member_id AND a.owner_type = :member"
            " AND a.kind = :receivable JOIN ledger_balances b ON b.account_id = a.id"
            " GROUP BY d.member_id"
            " HAVING sum(d.accrued_kopecks - d.paid_kopecks) <> greatest(min(b.balance_kopecks), 0)"
        ),
        params,
    ).all()
    order = session.execute(
        text(
            "SELECT DISTINCT older.member_id FROM ledger_dues_months older"
            " JOIN ledger_dues_months newer ON newer.member_id = older.member_id"
            " AND newer.period_month > older.period_month"
            " WHERE older.paid_kopecks < older.accrued_kopecks AND newer.paid_kopecks > 0"
        )
    ).all()
    return (
        [
            Violation(
                "dues_months_match_postings",
                f"member {r.member_id} {r.period_month:%Y-%m}: accrued {r.kept}, "
                f"postings say {r.expected}",
            )
            for r in accrued
        ]
        + [
            Violation(
                "dues_months_match_postings",
                f"member {r.member_id}: months unpaid {r.unpaid}, balance owed {r.owed}",
            )
            for r in unpaid
        ]
        + [
            Violation(
                "dues_months_match_postings",
                f"member {r.member_id}: a later month is paid while an earlier one is not",
            )
            for r in order
        ]
    )


def arrears_summary_matches_months(session: Session) -> list[Violation]:
    """The arrears summary (kept by a trigger) holds exactly the unpaid months, per member and
    organisation."""
    rows = session.execute(
        text(
            "WITH expected AS ("
            "  SELECT member_id, organization_id, count(*) AS months,"
            "  sum(accrued_kopecks - paid_kopecks) AS kopecks, min(period_month) AS oldest"
            "  FROM ledger_dues_months WHERE paid_kopecks < accrued_kopecks"
            "  GROUP BY member_id, organization_id)"
            " SELECT coalesce(x.member_id, a.member_id) AS member_id,"
            " coalesce(x.organization_id, a.organization_id) AS organization_id,"
            " x.months AS expected_months, x.kopecks AS expected_kopecks,"
            " a.months_owed AS kept_months, a.owed_kopecks AS kept_kopecks"
            " FROM expected x FULL JOIN ledger_arrears_summary a"
            " ON a.member_id = x.member_id AND a.organization_id = x.organization_id"
            " WHERE (x.months, x.kopecks, x.oldest)"
            " IS DISTINCT FROM (a.months_owed, a.owed_kopecks, a.oldest_unpaid)"
        )
    ).all()
    return [
        Violation(
            "arrears_summary_matches_months",
            f"member {r.member_id} in {r.organization_id}: summary says {r.kept_months} months"
            f" / {r.kept_kopecks}, the months say {r.expected_months} / {r.expected_kopecks}",
        )
        for r in rows
    ]


LEDGER_CHECKS = (
    entries_balance,
    balances_match_postings,
    nothing_posted_in_closed_months,
    dues_months_match_postings,
    arrears_summary_matches_months,
)
