"""Posting many accruals at once: the monthly accrual of a whole union in set-based statements.

Same rules as `journal.post_entry` (one entry per member-month key, booked in an open month,
balances and dues months maintained in the same transaction), but a batch of thousands of
entries costs a handful of round trips instead of thousands.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from sqlalchemy.orm import Session

from core.periods import format_period, period_of
from ledger import arrears, dues
from ledger.journal import (
    EntryDraft,
    Line,
    account_ids,
    apply_balance_deltas,
    driver_rows,
    first_open,
)
from ledger.service import accrual_key, org_account, receivable
from ledger.states import AccountKind, EntryKind, OwnerType


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


def accrual_body_hash(item: Accrual) -> str:
    """`accrual_draft(item).body_hash()` without building the draft: the same JSON text,
    written out (a test holds the two equal). An accrual's body has a fixed shape."""
    member, org, amount = item.member_id, item.organization_id, item.amount_kopecks
    body = (
        f'{{"channel": null, "kind": "accrual", "lines": [["member", "{member}",'
        f' "member_dues_receivable", "RUB", "", {amount}], ["organization", "{org}",'
        f' "dues_income", "RUB", "", {-amount}]], "member": "{member}",'
        f' "occurred_at": "{item.occurred_at.isoformat()}",'
        f' "period_month": "{item.period_month.isoformat()}", "reverses": null}}'
    )
    return hashlib.sha256(body.encode()).hexdigest()


def post_accruals(session: Session, items: list[Accrual], *, recorded_at: datetime) -> int:
    """Post the accruals not posted yet; returns how many were posted.

    A handful of set-based statements per batch, whatever its size: the entries (skipping
    keys already posted), the accounts, the postings by COPY, the balances and the months."""
    by_key: dict[str, Accrual] = {}
    for item in items:
        if item.amount_kopecks > 0:
            by_key[f"accrual:{item.member_id}:{format_period(item.period_month)}"] = item
    if not by_key:
        return 0
    occurred_periods: dict[tuple[datetime, str], date] = {}
    for item in by_key.values():
        instant = (item.occurred_at, item.timezone)
        if instant not in occurred_periods:
            occurred_periods[instant] = period_of(item.occurred_at, item.timezone)
    closed = _closes_by_organization(session, by_key.values(), min(occurred_periods.values()))
    booked: dict[tuple[uuid.UUID, date], date] = {}
    columns: dict[str, list[Any]] = defaultdict(list)
    entry_ids: dict[uuid.UUID, Accrual] = {}
    for key, item in by_key.items():
        occurred = occurred_periods[(item.occurred_at, item.timezone)]
        slot = (item.organization_id, occurred)
        if slot not in booked:
            booked[slot] = first_open(occurred, closed.get(item.organization_id, set()))
        entry_id = uuid.uuid4()
        entry_ids[entry_id] = item
        columns["ids"].append(entry_id)
        columns["keys"].append(key)
        columns["hashes"].append(accrual_body_hash(item))
        columns["orgs"].append(item.organization_id)
        columns["members"].append(item.member_id)
        columns["occurred"].append(item.occurred_at)
        columns["booked"].append(booked[slot])
        columns["periods"].append(item.period_month)
        columns["source_types"].append(item.source_type)
        columns["source_ids"].append(item.source_id)
        columns["descriptions"].append(f"Dues for {format_period(item.period_month)}")
    # Concurrent accruers of the same member-month wait for each other here and the loser
    # skips it, so the batch never fails on a race.
    inserted = driver_rows(
        session,
        "INSERT INTO ledger_entries (id, idempotency_key, body_hash, kind,"
        " organization_id, member_id, occurred_at, recorded_at, booked_period,"
        " period_month, source_type, source_id, description)"
        " SELECT id, key, hash, 'accrual', org, member, occurred, %(recorded)b, booked,"
        " period, source_type, source_id, description FROM unnest("
        " CAST(%(ids)b AS uuid[]), CAST(%(keys)b AS text[]), CAST(%(hashes)b AS text[]),"
        " CAST(%(orgs)b AS uuid[]), CAST(%(members)b AS uuid[]),"
        " CAST(%(occurred)b AS timestamptz[]), CAST(%(booked)b AS date[]),"
        " CAST(%(periods)b AS date[]), CAST(%(source_types)b AS text[]),"
        " CAST(%(source_ids)b AS text[]), CAST(%(descriptions)b AS text[]))"
        " AS r(id, key, hash, org, member, occurred, booked, period, source_type,"
        " source_id, description)"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        {"recorded": recorded_at, **columns},
    )
    if not inserted:
        return 0
    posted = [(entry_id, entry_ids[entry_id]) for (entry_id,) in inserted]
    receivables, income = _accrual_accounts(session, posted, recorded_at)
    deltas: dict[uuid.UUID, tuple[int, int]] = {}
    connection: psycopg.Connection[Any] = session.connection().connection.driver_connection  # type: ignore[assignment]
    with connection.cursor() as cursor, cursor.copy(_COPY_POSTINGS) as copy:
        copy.set_types(["uuid", "uuid", "int8", "text", "timestamptz"])
        for entry_id, item in posted:
            amount = item.amount_kopecks
            debit, credit = receivables[item.member_id], income[item.organization_id]
            copy.write_row((entry_id, debit, amount, "RUB", item.occurred_at))
            copy.write_row((entry_id, credit, -amount, "RUB", item.occurred_at))
            total, count = deltas.get(debit, (0, 0))
            deltas[debit] = (total + amount, count + 1)
            total, count = deltas.get(credit, (0, 0))
            deltas[credit] = (total - amount, count + 1)
    balances = apply_balance_deltas(session, deltas, recorded_at)
    _accrue_months(session, [item for _, item in posted], receivables, balances)
    arrears.track(session, {item.member_id for _, item in posted}, now=recorded_at)
    return len(posted)


# Binary COPY: all of an entry's postings in one statement, which the database checks at its
# end (every entry touched sums to zero), at the price of the bare table's COPY.
_COPY_POSTINGS = (
    "COPY ledger_postings (entry_id, account_id, amount_kopecks, currency, occurred_at)"
    " FROM STDIN (FORMAT BINARY)"
)


def _closes_by_organization(
    session: Session, items: Iterable[Accrual], since: date
) -> dict[uuid.UUID, set[date]]:
    """Every organisation's closed months in one query, not one query per organisation."""
    organizations = list({item.organization_id for item in items})
    closes: dict[uuid.UUID, set[date]] = defaultdict(set)
    for organization, period in driver_rows(
        session,
        "SELECT organization_id, period_month FROM ledger_period_closes"
        " WHERE organization_id = ANY(%(orgs)b) AND period_month >= %(since)b",
        {"orgs": organizations, "since": since},
    ):
        closes[organization].add(period)
    return closes


def _accrual_accounts(
    session: Session, posted: list[tuple[uuid.UUID, Accrual]], now: datetime
) -> tuple[dict[uuid.UUID, uuid.UUID], dict[uuid.UUID, uuid.UUID]]:
    """The members' receivables and the organisations' dues income accounts, by owner: one
    indexed lookup when they exist (every month after a member's first), created otherwise."""
    members = list({item.member_id for _, item in posted})
    organizations = list({item.organization_id for _, item in posted})
    receivables: dict[uuid.UUID, uuid.UUID] = {}
    income: dict[uuid.UUID, uuid.UUID] = {}
    for owner_type, owner, account in driver_rows(
        session,
        "SELECT owner_type, owner_id, id FROM ledger_accounts WHERE owner_type = 'member'"
        " AND owner_id = ANY(%(members)b) AND kind = 'member_dues_receivable'"
        " AND currency = 'RUB' AND counterparty_id IS NULL"
        " UNION ALL SELECT owner_type, owner_id, id FROM ledger_accounts"
        " WHERE owner_type = 'organization' AND owner_id = ANY(%(orgs)b)"
        " AND kind = 'dues_income' AND currency = 'RUB' AND counterparty_id IS NULL",
        {"members": members, "orgs": organizations},
    ):
        (receivables if owner_type == OwnerType.MEMBER else income)[owner] = account
    missing = {receivable(member) for member in members if member not in receivables}
    missing |= {
        org_account(organization, AccountKind.DUES_INCOME)
        for organization in organizations
        if organization not in income
    }
    if missing:
        for ref, account in account_ids(session, missing, now).items():
            (receivables if ref.owner_type == OwnerType.MEMBER else income)[ref.owner_id] = account
    return receivables, income


def _accrue_months(
    session: Session,
    items: list[Accrual],
    receivables: dict[uuid.UUID, uuid.UUID],
    balances: dict[uuid.UUID, int],
) -> None:
    """Add each accrued month to the member's months, paid from any credit the member had, in
    one statement. Members with a later month already (accrued ahead), or with several months
    in this batch, are recomputed from their postings instead."""
    counts = Counter(item.member_id for item in items)
    simple = [item for item in items if counts[item.member_id] == 1]
    appended: set[uuid.UUID] = set()
    if simple:
        paid = []
        for item in simple:
            balance_after = balances[receivables[item.member_id]]
            credit = max(-(balance_after - item.amount_kopecks), 0)
            paid.append(min(item.amount_kopecks, credit))
        # The newest month per member is one backward index probe (a subplan per row, never a
        # scan of the whole table, whatever the planner thinks of the array's size).
        appended = {
            member
            for (member,) in driver_rows(
                session,
                "INSERT INTO ledger_dues_months (member_id, period_month, organization_id,"
                " currency, accrued_kopecks, paid_kopecks)"
                " SELECT m, p, o, 'RUB', a, d FROM unnest(CAST(%(members)b AS uuid[]),"
                " CAST(%(periods)b AS date[]), CAST(%(orgs)b AS uuid[]),"
                " CAST(%(amounts)b AS bigint[]), CAST(%(paid)b AS bigint[])) AS n(m, p, o, a, d)"
                " WHERE coalesce((SELECT max(x.period_month) FROM ledger_dues_months x"
                " WHERE x.member_id = n.m), n.p) <= n.p"
                " ON CONFLICT (member_id, period_month) DO UPDATE SET"
                " accrued_kopecks = ledger_dues_months.accrued_kopecks + excluded.accrued_kopecks,"
                " paid_kopecks = ledger_dues_months.paid_kopecks + excluded.paid_kopecks"
                " RETURNING member_id",
                {
                    "members": [item.member_id for item in simple],
                    "periods": [item.period_month for item in simple],
                    "orgs": [item.organization_id for item in simple],
                    "amounts": [item.amount_kopecks for item in simple],
                    "paid": paid,
                },
            )
        }
    recomputed: set[uuid.UUID] = set()
    for item in items:
        if item.member_id not in appended and item.member_id not in recomputed:
            recomputed.add(item.member_id)
            dues.recompute(session, item.member_id, item.organization_id, "RUB")
