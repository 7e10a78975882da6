"""Posting many accruals at once: the monthly accrual of a whole union in set-based statements.

Same rules as `journal.post_entry` (one entry per member-month key, booked in an open month,
balances and dues months maintained in the same transaction), but a batch of thousands of
entries costs a handful of round trips instead of thousands.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.periods import format_period, period_of
from ledger import arrears, dues
from ledger.journal import (
    AccountRef,
    EntryDraft,
    Line,
    account_ids,
    apply_balance_deltas,
    first_open,
)
from ledger.service import accrual_key, org_account, receivable
from ledger.states import AccountKind, EntryKind


@dataclass(frozen=True)
class Accrual:
    member_id: uuid.UUID
    organization_id: uuid.UUID
    timezone: str
    period_month: date
    amount_kopecks: int
    occurred_at: datetime
    source_type: str
    source_id: str


def accrual_draft(item: Accrual) -> EntryDraft:
    """The very entry `service.post_dues_accrual` would post, so either path recognises the
    other's entry as the same one."""
    return EntryDraft(
        idempotency_key=accrual_key(item.member_id, item.period_month),
        kind=EntryKind.ACCRUAL,
        occurred_at=item.occurred_at,
        organization_id=item.organization_id,
        member_id=item.member_id,
        timezone=item.timezone,
        period_month=item.period_month,
        source_type=item.source_type,
        source_id=item.source_id,
        description=f"Dues for {format_period(item.period_month)}",
        lines=(
            Line(receivable(item.member_id), item.amount_kopecks),
            Line(org_account(item.organization_id, AccountKind.DUES_INCOME), -item.amount_kopecks),
        ),
    )


def post_accruals(session: Session, items: list[Accrual], *, recorded_at: datetime) -> int:
    """Post the accruals not posted yet; returns how many were posted."""
    items = [item for item in items if item.amount_kopecks > 0]
    if not items:
        return 0
    drafts = {accrual_draft(item).idempotency_key: (item, accrual_draft(item)) for item in items}
    occurred_periods = {
        key: period_of(item.occurred_at, item.timezone) for key, (item, _) in drafts.items()
    }
    closed = _closes_by_organization(session, items, min(occurred_periods.values()))
    booked: dict[tuple[uuid.UUID, date], date] = {}
    rows = []
    for key, (item, draft) in drafts.items():
        occurred = occurred_periods[key]
        slot = (item.organization_id, occurred)
        if slot not in booked:
            booked[slot] = first_open(occurred, closed.get(item.organization_id, set()))
        rows.append(
            {
                "id": uuid.uuid4(),
                "key": key,
                "hash": draft.body_hash(),
                "org": item.organization_id,
                "member": item.member_id,
                "occurred": item.occurred_at,
                "booked": booked[slot],
                "period": item.period_month,
                "source_type": item.source_type,
                "source_id": item.source_id,
                "description": draft.description,
            }
        )
    inserted = {
        row.idempotency_key: row.id
        for row in session.execute(
            text(
                "INSERT INTO ledger_entries (id, idempotency_key, body_hash, kind,"
                " organization_id, member_id, occurred_at, recorded_at, booked_period,"
                " period_month, source_type, source_id, description)"
                " SELECT id, key, hash, 'accrual', org, member, occurred, :recorded, booked,"
                " period, source_type, source_id, description FROM unnest("
                " CAST(:ids AS uuid[]), CAST(:keys AS text[]), CAST(:hashes AS text[]),"
                " CAST(:orgs AS uuid[]), CAST(:members AS uuid[]),"
                " CAST(:occurred AS timestamptz[]), CAST(:booked AS date[]),"
                " CAST(:periods AS date[]), CAST(:source_types AS text[]),"
                " CAST(:source_ids AS text[]), CAST(:descriptions AS text[]))"
                " AS r(id, key, hash, org, member, occurred, booked, period, source_type,"
                " source_id, description)"
                " ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key, id"
            ),
            {
                "recorded": recorded_at,
                "ids": [r["id"] for r in rows],
                "keys": [r["key"] for r in rows],
                "hashes": [r["hash"] for r in rows],
                "orgs": [r["org"] for r in rows],
                "members": [r["member"] for r in rows],
                "occurred": [r["occurred"] for r in rows],
                "booked": [r["booked"] for r in rows],
                "periods": [r["period"] for r in rows],
                "source_types": [r["source_type"] for r in rows],
                "source_ids": [r["source_id"] for r in rows],
                "descriptions": [r["description"] for r in rows],
            },
        )
    }
    if not inserted:
        return 0
    posted = [drafts[key] for key in inserted]
    refs: set[AccountRef] = set()
    for _, draft in posted:
        refs.update(line.account for line in draft.lines)
    ids = account_ids(session, refs, recorded_at)
    postings: dict[str, list[object]] = defaultdict(list)
    deltas: dict[uuid.UUID, tuple[int, int]] = {}
    for item, draft in posted:
        for line in draft.lines:
            account = ids[line.account]
            postings["entries"].append(inserted[draft.idempotency_key])
            postings["accounts"].append(account)
            postings["amounts"].append(line.amount_kopecks)
            postings["occurred"].append(item.occurred_at)
            amount, count = deltas.get(account, (0, 0))
            deltas[account] = (amount + line.amount_kopecks, count + 1)
    session.execute(
        text(
            "INSERT INTO ledger_postings (entry_id, account_id, amount_kopecks, currency,"
            " occurred_at) SELECT e, a, m, 'RUB', o FROM unnest(CAST(:entries AS uuid[]),"
            " CAST(:accounts AS uuid[]), CAST(:amounts AS bigint[]),"
            " CAST(:occurred AS timestamptz[])) AS p(e, a, m, o)"
        ),
        postings,
    )
    balances = apply_balance_deltas(session, deltas, recorded_at)
    _accrue_months(session, [item for item, _ in posted], ids, balances)
    arrears.track(session, {item.member_id for item, _ in posted}, now=recorded_at)
    return len(posted)


def _closes_by_organization(
    session: Session, items: list[Accrual], since: date
) -> dict[uuid.UUID, set[date]]:
    """Every organisation's closed months in one query, not one query per organisation."""
    organizations = list({item.organization_id for item in items})
    closes: dict[uuid.UUID, set[date]] = defaultdict(set)
    for row in session.execute(
        text(
            "SELECT organization_id, period_month FROM ledger_period_closes"
            " WHERE organization_id = ANY(:orgs) AND period_month >= :since"
        ),
        {"orgs": organizations, "since": since},
    ):
        closes[row.organization_id].add(row.period_month)
    return closes


def _accrue_months(
    session: Session,
    items: list[Accrual],
    ids: dict[AccountRef, uuid.UUID],
    balances: dict[uuid.UUID, int],
) -> None:
    """Add each accrued month to the member's months, paid from any credit the member had.
    Members with a later month already (accrued ahead) are recomputed instead."""
    members = [item.member_id for item in items]
    later = set(
        session.scalars(
            text(
                "SELECT DISTINCT d.member_id FROM ledger_dues_months d"
                " JOIN unnest(CAST(:members AS uuid[]), CAST(:periods AS date[])) AS n(m, p)"
                " ON d.member_id = n.m AND d.period_month > n.p"
            ),
            {"members": members, "periods": [item.period_month for item in items]},
        )
    )
    simple = [item for item in items if item.member_id not in later]
    if simple:
        paid = []
        for item in simple:
            balance_after = balances[ids[receivable(item.member_id)]]
            credit = max(-(balance_after - item.amount_kopecks), 0)
            paid.append(min(item.amount_kopecks, credit))
        session.execute(
            text(
                "INSERT INTO ledger_dues_months (member_id, period_month, organization_id,"
                " currency, accrued_kopecks, paid_kopecks)"
                " SELECT m, p, o, 'RUB', a, d FROM unnest(CAST(:members AS uuid[]),"
                " CAST(:periods AS date[]), CAST(:orgs AS uuid[]), CAST(:amounts AS bigint[]),"
                " CAST(:paid AS bigint[])) AS n(m, p, o, a, d)"
                " ON CONFLICT (member_id, period_month) DO UPDATE SET"
                " accrued_kopecks = ledger_dues_months.accrued_kopecks + excluded.accrued_kopecks,"
                " paid_kopecks = ledger_dues_months.paid_kopecks + excluded.paid_kopecks"
            ),
            {
                "members": [item.member_id for item in simple],
                "periods": [item.period_month for item in simple],
                "orgs": [item.organization_id for item in simple],
                "amounts": [item.amount_kopecks for item in simple],
                "paid": paid,
            },
        )
    for item in items:
        if item.member_id in later:
            dues.recompute(session, item.member_id, item.organization_id, "RUB")
