"""Reading the books: a member's account and statement, balances as of a date, arrears, and an
organisation's month. Read use cases open their own (read-only) sessions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import psycopg
from sqlalchemy import Row, text
from sqlalchemy.orm import Session, sessionmaker

from ledger.states import AccountKind, EntryKind, OwnerType


@dataclass(frozen=True)
class StatementLine:
    entry_id: uuid.UUID
    occurred_at: datetime
    kind: EntryKind
    period_month: date | None
    channel: str | None
    description: str
    amount_kopecks: int  # positive: the member owes more; negative: paid
    balance_kopecks: int


@dataclass(frozen=True)
class Arrears:
    months: int
    kopecks: int
    oldest_unpaid: date | None


@dataclass(frozen=True)
class MemberAccount:
    member_id: uuid.UUID
    currency: str
    balance_kopecks: int  # positive: owed by the member; negative: credit
    arrears: Arrears
    lines: list[StatementLine]  # the latest lines, oldest first


@dataclass(frozen=True)
class Statement:
    member_id: uuid.UUID
    currency: str
    start: datetime
    end: datetime
    opening_balance_kopecks: int
    lines: list[StatementLine]
    closing_balance_kopecks: int


@dataclass(frozen=True)
class OrganizationMonth:
    organization_id: uuid.UUID
    period_month: date
    accrued_kopecks: int
    collected_kopecks: int
    collected_by_channel: dict[str, int]
    fees_kopecks: int
    shared_upward_kopecks: int  # the higher levels' part of what was collected this month
    kept_kopecks: int
    received_from_below_kopecks: int
    owed_upward_kopecks: int  # still owed to the higher levels at the month's end
    transferred_upward_kopecks: int
    members_in_arrears: int
    arrears_kopecks: int
    extra: dict[str, int] = field(default_factory=dict)


_RECEIVABLE = (
    "SELECT id FROM ledger_accounts WHERE owner_type = :member_owner AND owner_id = :member"
    " AND kind = :receivable AND currency = :currency"
)

_SUM_BEFORE = (
    "SELECT coalesce(sum(amount_kopecks), 0) FROM ledger_postings"
    " WHERE account_id = :account AND occurred_at < :at"
)
_SUM_THROUGH = _SUM_BEFORE.replace("occurred_at < :at", "occurred_at <= :at")

_LINES = (
    "SELECT e.id, p.occurred_at, e.kind, e.period_month, e.channel, e.description,"
    " p.amount_kopecks FROM ledger_postings p JOIN ledger_entries e ON e.id = p.entry_id"
    " WHERE p.account_id = :account"
)


# The literal `months_owed >= 2` lets every plan (generic ones too) use the partial index.
_ARREARS_OWING_TWO = (
    "SELECT member_id, sum(months_owed) AS months, sum(owed_kopecks) AS kopecks,"
    " min(oldest_unpaid) AS oldest FROM ledger_arrears_summary"
    " WHERE months_owed >= 2 AND months_owed >= :min_months AND organization_id = ANY(:orgs)"
    " AND member_id > :after GROUP BY member_id ORDER BY member_id LIMIT :limit"
)
_ARREARS_ANY = _ARREARS_OWING_TWO.replace("months_owed >= 2 AND ", "")


class LedgerReads:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def member_account(
        self, member_id: uuid.UUID, *, currency: str = "RUB", last: int = 50
    ) -> MemberAccount:
        with self._sessions() as session:
            account = self._receivable(session, member_id, currency)
            if account is None:
                return MemberAccount(member_id, currency, 0, Arrears(0, 0, None), [])
            balance = session.execute(
                text("SELECT balance_kopecks FROM ledger_balances WHERE account_id = :a"),
                {"a": account},
            ).scalar_one()
            rows = session.execute(
                text(_LINES + " ORDER BY p.occurred_at DESC, p.id DESC LIMIT :last"),
                {"account": account, "last": last},
            ).all()
            arrears = self._arrears(session, member_id)
        lines = _running(list(reversed(rows)), balance - sum(row.amount_kopecks for row in rows))
        return MemberAccount(member_id, currency, balance, arrears, lines)

    def statement(
        self, member_id: uuid.UUID, start: datetime, end: datetime, *, currency: str = "RUB"
    ) -> Statement:
        """Every line that occurred in [start, end), with the balances either side."""
        with self._sessions() as session:
            account = self._receivable(session, member_id, currency)
            if account is None:
                return Statement(member_id, currency, start, end, 0, [], 0)
            opening = self._sum_before(session, account, start)
            rows = session.execute(
                text(
                    _LINES + " AND p.occurred_at >= :start AND p.occurred_at < :end"
                    " ORDER BY p.occurred_at, p.id"
                ),
                {"account": account, "start": start, "end": end},
            ).all()
        lines = _running(rows, opening)
        closing = lines[-1].balance_kopecks if lines else opening
        return Statement(member_id, currency, start, end, opening, lines, closing)

    def balance_as_of(self, member_id: uuid.UUID, at: datetime, *, currency: str = "RUB") -> int:
        """What the member owed (positive) at an instant, by when things occurred."""
        with self._sessions() as session:
            account = self._receivable(session, member_id, currency)
            if account is None:
                return 0
            return self._sum_before(session, account, at, inclusive=True)

    def arrears(self, member_id: uuid.UUID) -> Arrears:
        with self._sessions() as session:
            return self._arrears(session, member_id)

    def arrears_list(
        self,
        organization_ids: Sequence[uuid.UUID],
        *,
        min_months: int = 2,
        limit: int = 1000,
        after: uuid.UUID | None = None,
    ) -> list[tuple[uuid.UUID, Arrears]]:
        """Members owing at least `min_months` months to one of these organisations, by member
        id, `limit` at a time after `after`. Reads the arrears summary the database maintains
        with the dues months: at 2 months or more, from its partial index alone."""
        with self._sessions() as session:
            rows = session.execute(
                text(_ARREARS_OWING_TWO if min_months >= 2 else _ARREARS_ANY),
                {
                    "orgs": list(organization_ids),
                    "after": after or uuid.UUID(int=0),
                    "min_months": min_months,
                    "limit": limit,
                },
            ).all()
        return [(row.member_id, Arrears(row.months, row.kopecks, row.oldest)) for row in rows]

    def arrears_stream(
        self, organization_ids: Sequence[uuid.UUID], *, min_months: int = 2, chunk: int = 10_000
    ) -> Iterator[tuple[uuid.UUID, Arrears]]:
        """The whole of `arrears_list`, by member id, in one query read through a server-side
        cursor `chunk` rows at a time: memory stays flat however many members owe, and there
        is no per-page round trip. One read-only transaction (one snapshot) for the whole list."""
        with self._sessions() as session, session.begin():
            connection: psycopg.Connection[Any] = session.connection().connection.driver_connection  # type: ignore[assignment]
            with connection.cursor(name="arrears_stream", binary=True) as cursor:
                cursor.itersize = chunk
                cursor.execute(
                    (_ARREARS_OWING_TWO if min_months >= 2 else _ARREARS_ANY)
                    .replace(" LIMIT :limit", "")
                    .replace(":min_months", "%(min_months)s")
                    .replace(":orgs", "%(orgs)s")
                    .replace(":after", "%(after)s"),
                    {
                        "orgs": list(organization_ids),
                        "after": uuid.UUID(int=0),
                        "min_months": min_months,
                    },
                )
                for member_id, months, kopecks, oldest in cursor:
                    yield member_id, Arrears(int(months), int(kopecks), oldest)

    def organization_month(self, organization_id: uuid.UUID, period: date) -> OrganizationMonth:
        params = {"org": organization_id, "period": period, "org_owner": OwnerType.ORGANIZATION}
        with self._sessions() as session:
            by_kind = {
                (row.kind, row.entry_kind): int(row.total)
                for row in session.execute(
                    text(
                        "SELECT a.kind, e.kind AS entry_kind, sum(p.amount_kopecks) AS total"
                        " FROM ledger_postings p"
                        " JOIN ledger_entries e ON e.id = p.entry_id"
                        " JOIN ledger_accounts a ON a.id = p.account_id"
                        " WHERE a.owner_type = :org_owner AND a.owner_id = :org"
                        " AND e.booked_period = :period GROUP BY a.kind, e.kind"
                    ),
                    params,
                )
            }
            channels = {
                row.channel: -int(row.total)
                for row in session.execute(
                    text(
                        "SELECT e.channel, sum(p.amount_kopecks) AS total FROM ledger_entries e"
                        " JOIN ledger_postings p ON p.entry_id = e.id"
                        " JOIN ledger_accounts a ON a.id = p.account_id"
                        " WHERE e.organization_id = :org AND e.booked_period = :period"
                        " AND e.channel IS NOT NULL AND e.kind IN ('payment', 'reversal')"
                        " AND a.kind = :receivable GROUP BY e.channel"
                    ),
                    {**params, "receivable": AccountKind.MEMBER_DUES_RECEIVABLE},
                )
            }
            owed_upward = session.execute(
                text(
                    "SELECT coalesce(-sum(p.amount_kopecks), 0) FROM ledger_postings p"
                    " JOIN ledger_entries e ON e.id = p.entry_id"
                    " JOIN ledger_accounts a ON a.id = p.account_id"
                    " WHERE a.owner_type = :org_owner AND a.owner_id = :org"
                    " AND a.kind = :payable AND e.booked_period <= :period"
                ),
                {**params, "payable": AccountKind.PAYABLE_UPWARD},
            ).scalar_one()
            arrears = session.execute(
                text(
                    "SELECT count(DISTINCT member_id) AS members,"
                    " coalesce(sum(accrued_kopecks - paid_kopecks), 0) AS kopecks"
                    " FROM ledger_dues_months WHERE organization_id = :org"
                    " AND period_month <= :period AND paid_kopecks < accrued_kopecks"
                ),
                params,
            ).one()

        def total(account: AccountKind, *entries: EntryKind) -> int:
            return sum(by_kind.get((account, entry), 0) for entry in entries)

        collected = sum(channels.values())
        shared = -total(AccountKind.PAYABLE_UPWARD, EntryKind.SPLIT, EntryKind.REVERSAL)
        return OrganizationMonth(
            organization_id=organization_id,
            period_month=period,
            accrued_kopecks=-total(AccountKind.DUES_INCOME, EntryKind.ACCRUAL),
            collected_kopecks=collected,
            collected_by_channel=channels,
            fees_kopecks=total(AccountKind.ACQUIRER_FEES, EntryKind.PAYMENT, EntryKind.REVERSAL),
            shared_upward_kopecks=shared,
            kept_kopecks=collected - shared,
            received_from_below_kopecks=total(
                AccountKind.RECEIVABLE_FROM_BELOW, EntryKind.SPLIT, EntryKind.REVERSAL
            ),
            owed_upward_kopecks=int(owed_upward),
            transferred_upward_kopecks=total(AccountKind.PAYABLE_UPWARD, EntryKind.TRANSFER),
            members_in_arrears=int(arrears.members),
            arrears_kopecks=int(arrears.kopecks),
        )

    @staticmethod
    def _receivable(session: Session, member_id: uuid.UUID, currency: str) -> uuid.UUID | None:
        found: uuid.UUID | None = session.execute(
            text(_RECEIVABLE),
            {
                "member_owner": OwnerType.MEMBER,
                "member": member_id,
                "receivable": AccountKind.MEMBER_DUES_RECEIVABLE,
                "currency": currency,
            },
        ).scalar_one_or_none()
        return found

    @staticmethod
    def _sum_before(
        session: Session, account: uuid.UUID, at: datetime, *, inclusive: bool = False
    ) -> int:
        query = _SUM_THROUGH if inclusive else _SUM_BEFORE
        total: int = session.execute(
            text(query),
            {"account": account, "at": at},
        ).scalar_one()
        return int(total)

    @staticmethod
    def _arrears(session: Session, member_id: uuid.UUID) -> Arrears:
        row = session.execute(
            text(
                "SELECT count(*) AS months, coalesce(sum(accrued_kopecks - paid_kopecks), 0)"
                " AS kopecks, min(period_month) AS oldest FROM ledger_dues_months"
                " WHERE member_id = :member AND paid_kopecks < accrued_kopecks"
            ),
            {"member": member_id},
        ).one()
        return Arrears(int(row.months), int(row.kopecks), row.oldest)


def _running(rows: Sequence[Row[Any]], opening: int) -> list[StatementLine]:
    balance = opening
    lines = []
    for row in rows:
        amount = int(row.amount_kopecks)
        balance += amount
        lines.append(
            StatementLine(
                entry_id=row.id,
                occurred_at=row.occurred_at,
                kind=EntryKind(row.kind),
                period_month=row.period_month,
                channel=row.channel,
                description=row.description,
                amount_kopecks=amount,
                balance_kopecks=balance,
            )
        )
    return lines
