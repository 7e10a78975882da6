"""Posting to the journal, inside the caller's transaction.

`post_entry` is the one way money moves in the books. Use cases of this and higher layers call
it within their own transaction, so the posting commits atomically with the state change it
records (a charge succeeding, a month accrued). In that same transaction it books the entry in
an open month, updates the maintained balances and the member's per-month dues ledger.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core.ids import new_id
from core.periods import DEFAULT_TIMEZONE, format_period, next_period, period_of
from ledger import arrears, dues
from ledger.errors import IdempotencyKeyReused, PeriodClosed, UnbalancedEntry
from ledger.models import JournalEntry, PeriodClose, Posting
from ledger.states import (
    COUNTERPARTY_KINDS,
    AccountKind,
    Channel,
    ClosedPeriodPolicy,
    EntryKind,
    OwnerType,
)

_NO_COUNTERPARTY = uuid.UUID(int=0)


@dataclass(frozen=True)
class AccountRef:
    owner_type: OwnerType
    owner_id: uuid.UUID
    kind: AccountKind
    currency: str = "RUB"
    counterparty_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        needs = self.kind in COUNTERPARTY_KINDS
        if (self.counterparty_id is not None) != needs:
            raise ValueError(f"{self.kind} accounts {'need' if needs else 'take no'} counterparty")


@dataclass(frozen=True)
class Line:
    account: AccountRef
    amount_kopecks: int  # debit positive, credit negative


@dataclass(frozen=True)
class EntryDraft:
    idempotency_key: str
    kind: EntryKind
    occurred_at: datetime
    source_type: str
    source_id: str
    description: str
    lines: tuple[Line, ...]
    organization_id: uuid.UUID | None = None
    member_id: uuid.UUID | None = None
    timezone: str = DEFAULT_TIMEZONE
    period_month: date | None = None
    channel: Channel | None = None
    created_by: str | None = None
    reverses_entry_id: uuid.UUID | None = None

    def body_hash(self) -> str:
        body = {
            "kind": self.kind,
            "occurred_at": self.occurred_at.isoformat(),
            "period_month": self.period_month.isoformat() if self.period_month else None,
            "channel": self.channel,
            "member": str(self.member_id) if self.member_id else None,
            "reverses": str(self.reverses_entry_id) if self.reverses_entry_id else None,
            "lines": sorted(
                [
                    str(line.account.owner_type),
                    str(line.account.owner_id),
                    str(line.account.kind),
                    line.account.currency,
                    str(line.account.counterparty_id or ""),
                    line.amount_kopecks,
                ]
                for line in self.lines
            ),
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Posted:
    entry_id: uuid.UUID
    created: bool  # False: the same entry had been posted before (idempotent replay)
    booked_period: date


def check_balanced(lines: tuple[Line, ...]) -> None:
    if len(lines) < 2:
        raise UnbalancedEntry("a journal entry needs at least two postings", field="lines")
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        if line.amount_kopecks == 0:
            raise UnbalancedEntry("a posting cannot be zero", field="lines")
        totals[line.account.currency] += line.amount_kopecks
    unbalanced = {cur: total for cur, total in totals.items() if total != 0}
    if unbalanced:
        raise UnbalancedEntry(f"postings do not sum to zero: {unbalanced}", field="lines")


def driver_rows(session: Session, query: str, params: dict[str, Any]) -> list[Any]:
    """Run psycopg-style SQL (`%(name)b`) on the session's connection, in its transaction, with
    parameters and results in binary: arrays of thousands of ids go without text quoting."""
    connection: psycopg.Connection[Any] = session.connection().connection.driver_connection  # type: ignore[assignment]
    with connection.cursor(binary=True) as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description is not None else []


def account_ids(
    session: Session, refs: set[AccountRef], now: datetime
) -> dict[AccountRef, uuid.UUID]:
    """Get or create accounts in one statement when they all exist (the usual case) and three
    at most, however many; safe under concurrency thanks to the unique key, and created in one
    global order so concurrent creators do not deadlock."""
    found = _find_accounts(session, sorted(refs, key=_account_sort_key))
    missing = sorted(refs - found.keys(), key=_account_sort_key)
    if missing:
        driver_rows(
            session,
            "INSERT INTO ledger_accounts"
            " (id, kind, currency, owner_type, owner_id, counterparty_id, created_at)"
            " SELECT gen_random_uuid(), r.k, r.c, r.t, r.o, r.cp, %(now)b"
            + _REFS
            + " ORDER BY r.n ON CONFLICT DO NOTHING",
            {**_ref_arrays(missing), "now": now},
        )
        found.update(_find_accounts(session, missing))
    assert len(found) == len(refs)
    return found


def _find_accounts(session: Session, ordered: list[AccountRef]) -> dict[AccountRef, uuid.UUID]:
    rows = driver_rows(
        session,
        "SELECT r.n, a.id" + _REFS + " JOIN ledger_accounts a ON a.owner_type = r.t"
        " AND a.owner_id = r.o AND a.kind = r.k AND a.currency = r.c"
        " AND coalesce(a.counterparty_id, CAST(%(none)b AS uuid))"
        " = coalesce(r.cp, CAST(%(none)b AS uuid))",
        {**_ref_arrays(ordered), "none": _NO_COUNTERPARTY},
    )
    return {ordered[n - 1]: account for n, account in rows}


def _ref_arrays(ordered: list[AccountRef]) -> dict[str, list[Any]]:
    return {
        "types": [str(ref.owner_type) for ref in ordered],
        "owners": [ref.owner_id for ref in ordered],
        "kinds": [str(ref.kind) for ref in ordered],
        "currencies": [ref.currency for ref in ordered],
        "counterparties": [ref.counterparty_id for ref in ordered],
    }


_REFS = (
    " FROM unnest(CAST(%(types)b AS text[]), CAST(%(owners)b AS uuid[]),"
    " CAST(%(kinds)b AS text[]), CAST(%(currencies)b AS text[]),"
    " CAST(%(counterparties)b AS uuid[])) WITH ORDINALITY AS r(t, o, k, c, cp, n)"
)


def _account_sort_key(ref: AccountRef) -> tuple[str, str, str, str, str]:
    return (
        ref.owner_type,
        str(ref.owner_id),
        ref.kind,
        ref.currency,
        str(ref.counterparty_id or _NO_COUNTERPARTY),
    )


def organizations_touched(draft: EntryDraft) -> set[uuid.UUID]:
    orgs = {
        line.account.owner_id
        for line in draft.lines
        if line.account.owner_type == OwnerType.ORGANIZATION
    }
    if draft.organization_id is not None:
        orgs.add(draft.organization_id)
    return orgs


def first_open(period: date, closed: set[date]) -> date:
    """The first month from `period` on that is not among the closed ones."""
    while period in closed:
        period = next_period(period)
    return period


def open_period(session: Session, organizations: set[uuid.UUID], period: date) -> date:
    """The first month from `period` on that none of the organisations has closed."""
    if not organizations:
        return period
    closed = set(
        session.scalars(
            select(PeriodClose.period_month).where(
                PeriodClose.organization_id.in_(organizations),
                PeriodClose.period_month >= period,
            )
        )
    )
    return first_open(period, closed)


def post_entry(
    session: Session,
    draft: EntryDraft,
    *,
    recorded_at: datetime,
    closed_period: ClosedPeriodPolicy = ClosedPeriodPolicy.REBOOK,
) -> Posted:
    """Post an entry once. The same key and body again is a no-op returning the first entry;
    the same key with another body is refused."""
    check_balanced(draft.lines)
    body_hash = draft.body_hash()
    existing = _existing(session, draft.idempotency_key, body_hash)
    if existing is not None:
        return existing
    occurred_period = period_of(draft.occurred_at, draft.timezone)
    booked = open_period(session, organizations_touched(draft), occurred_period)
    if booked != occurred_period and closed_period == ClosedPeriodPolicy.REFUSE:
        raise PeriodClosed(
            f"{format_period(occurred_period)} is closed; post it in {format_period(booked)} "
            "with a reference to the original date",
            field="occurred_at",
            extra={"open_period": format_period(booked)},
        )
    entry_id = new_id()
    inserted = session.scalar(
        insert(JournalEntry)
        .values(
            id=entry_id,
            idempotency_key=draft.idempotency_key,
            body_hash=body_hash,
            kind=draft.kind,
            organization_id=draft.organization_id,
            member_id=draft.member_id,
            occurred_at=draft.occurred_at,
            recorded_at=recorded_at,
            booked_period=booked,
            period_month=draft.period_month,
            channel=draft.channel,
            source_type=draft.source_type,
            source_id=draft.source_id,
            description=draft.description,
            created_by=draft.created_by,
            reverses_entry_id=draft.reverses_entry_id,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(JournalEntry.id)
    )
    if inserted is None:  # a concurrent poster of the same key won the race
        raced = _existing(session, draft.idempotency_key, body_hash)
        assert raced is not None
        return raced
    ids = account_ids(session, {line.account for line in draft.lines}, recorded_at)
    # One multi-row statement, not executemany: the database checks the balance of every
    # entry an INSERT touched at the end of that statement, so the lines go in together.
    session.execute(
        insert(Posting).values(
            [
                {
                    "entry_id": entry_id,
                    "account_id": ids[line.account],
                    "amount_kopecks": line.amount_kopecks,
                    "currency": line.account.currency,
                    "occurred_at": draft.occurred_at,
                }
                for line in draft.lines
            ]
        )
    )
    deltas: dict[uuid.UUID, tuple[int, int]] = {}
    for line in draft.lines:
        amount, count = deltas.get(ids[line.account], (0, 0))
        deltas[ids[line.account]] = (amount + line.amount_kopecks, count + 1)
    balances = apply_balance_deltas(session, deltas, recorded_at)
    for line in draft.lines:
        if line.account.kind == AccountKind.MEMBER_DUES_RECEIVABLE:
            dues.on_receivable_posting(
                session,
                member_id=line.account.owner_id,
                organization_id=draft.organization_id,
                currency=line.account.currency,
                amount_kopecks=line.amount_kopecks,
                charged_month=dues.charged_month(draft.kind, draft.period_month),
                balance_after=balances[ids[line.account]],
            )
    arrears.track(session, _members_owing(draft), now=recorded_at)
    return Posted(entry_id, True, booked)


def _members_owing(draft: EntryDraft) -> set[uuid.UUID]:
    return {
        line.account.owner_id
        for line in draft.lines
        if line.account.kind == AccountKind.MEMBER_DUES_RECEIVABLE
    }


def apply_balance_deltas(
    session: Session, deltas: dict[uuid.UUID, tuple[int, int]], now: datetime
) -> dict[uuid.UUID, int]:
    """Add to maintained balances, locking rows in one global order so that concurrent
    posters wait for each other instead of deadlocking. Returns the new balances."""
    # UUIDs order as their text does (fixed-width hex): the same global order as ever.
    ordered = sorted(deltas.items(), key=lambda item: item[0])
    rows = driver_rows(
        session,
        "INSERT INTO ledger_balances (account_id, balance_kopecks, postings, updated_at) "
        "SELECT d.account_id, d.delta, d.n, %(now)b "
        "FROM unnest(CAST(%(ids)b AS uuid[]), CAST(%(deltas)b AS bigint[]),"
        " CAST(%(ns)b AS bigint[])) WITH ORDINALITY AS d(account_id, delta, n, ord) ORDER BY d.ord "
        "ON CONFLICT (account_id) DO UPDATE SET "
        "balance_kopecks = ledger_balances.balance_kopecks + excluded.balance_kopecks, "
        "postings = ledger_balances.postings + excluded.postings, "
        "updated_at = excluded.updated_at "
        "RETURNING account_id, balance_kopecks",
        {
            "ids": [account for account, _ in ordered],
            "deltas": [delta for _, (delta, _n) in ordered],
            "ns": [n for _, (_delta, n) in ordered],
            "now": now,
        },
    )
    return dict(rows)


def _existing(session: Session, key: str, body_hash: str) -> Posted | None:
    row = session.execute(
        select(JournalEntry.id, JournalEntry.body_hash, JournalEntry.booked_period).where(
            JournalEntry.idempotency_key == key
        )
    ).one_or_none()
    if row is None:
        return None
    if row.body_hash != body_hash:
        raise IdempotencyKeyReused(
            f"entry {key!r} was already posted with different postings",
            field="idempotency_key",
        )
    return Posted(row.id, False, row.booked_period)
