"""Data for the ledger benchmark: the organisation tree, members, dues plans, plan assignments
and a history of dues months.

Loading is not what the benchmark measures, so the bulk parts are set-based SQL run on the
server (`INSERT … SELECT generate_series`). The bulk history goes around the journal's row
triggers (`session_replication_role = replica`, superuser only) and writes rows that balance by
construction; balances are then derived from the postings and the arrears summary from the
dues months, as the ledger (and its triggers) would maintain them.
The ten-year history of the statement members goes through the application (`post_accruals`,
`post_member_payment`) because those members are few.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

from core.clock import ManualClock
from core.db import transaction
from core.periods import next_period, period_start
from ledger.batch import Accrual, post_accruals
from ledger.service import MemberPayment, post_member_payment
from ledger.states import Channel

FIXED_PLAN_KOPECKS = 30_000  # 300 ₽ a month
PLAN_FROM = date(2020, 1, 1)
TIMEZONES = ("Europe/Moscow", "Asia/Yekaterinburg")
# Of every 20 members by number: 2 never paid the history months, 1 paid only the first, the
# rest paid all of them. After one more month is accrued, 15 % owe two months or more.
NEVER_PAID_PER_20 = 2
PAID_FIRST_ONLY_PER_20 = 1


@dataclass(frozen=True)
class Tree:
    federation: uuid.UUID
    sectoral: tuple[uuid.UUID, ...]
    territorial: tuple[uuid.UUID, ...]
    primary: tuple[uuid.UUID, ...]

    @property
    def everyone(self) -> list[uuid.UUID]:
        return [self.federation, *self.sectoral, *self.territorial, *self.primary]


@dataclass(frozen=True)
class MemberRow:
    member_id: uuid.UUID
    organization_id: uuid.UUID
    timezone: str


def load_tree(connection: Connection, now: datetime) -> Tree:
    """Federation → 2 sectoral → 10 territorial → 100 primary organisations."""
    rows: list[dict[str, object]] = []

    def add(code: str, parent: uuid.UUID | None, timezone: str) -> uuid.UUID:
        org_id = uuid.uuid4()
        rows.append(
            {"id": org_id, "code": code, "name": code, "parent": parent, "tz": timezone, "now": now}
        )
        return org_id

    federation = add("fed", None, TIMEZONES[0])
    sectoral = tuple(add(f"sec-{s}", federation, TIMEZONES[0]) for s in range(2))
    territorial = tuple(add(f"ter-{t:02d}", sectoral[t % 2], TIMEZONES[t % 2]) for t in range(10))
    primary = tuple(
        add(f"pri-{p:03d}", territorial[p % 10], TIMEZONES[(p % 10) % 2]) for p in range(100)
    )
    connection.execute(
        text(
            "INSERT INTO organizations (id, code, name, parent_id, timezone, created_at)"
            " VALUES (:id, :code, :name, :parent, :tz, :now)"
        ),
        rows,
    )
    return Tree(federation, sectoral, territorial, primary)


def load_members(
    connection: Connection, tree: Tree, count: int, now: datetime, *, prefix: str
) -> None:
    """`count` members spread evenly over the primary organisations; external ids
    `<prefix>00000001` … number them."""
    connection.execute(
        text(
            "INSERT INTO members (id, external_id, organization_id,"
            " joined_on, left_on, created_at, updated_at)"
            " SELECT gen_random_uuid(), :prefix || lpad(g::text, 8, '0'),"
            " (CAST(:orgs AS uuid[]))[1 + g % :n_orgs], NULL, NULL,"
            " :now, :now FROM generate_series(1, :count) AS g"
        ),
        {
            "prefix": prefix,
            "orgs": list(tree.primary),
            "n_orgs": len(tree.primary),
            "count": count,
            "now": now,
        },
    )


def load_plans(connection: Connection, tree: Tree, now: datetime, *, prefix: str) -> None:
    """Two federation-wide plans: three in four members pay a fixed 300 ₽, the fourth 1 % of a
    declared wage of 30–100 thousand ₽ (floor 100 ₽, ceiling 1,000 ₽)."""
    fixed, percent = uuid.uuid4(), uuid.uuid4()
    connection.execute(
        text(
            "INSERT INTO dues_plans (id, organization_id, code, name, kind, amount_kopecks,"
            " rate_bp, minimum_kopecks, maximum_kopecks, category, created_at, updated_at)"
            " VALUES (:fixed, :fed, 'bench-fixed', 'Fixed', 'fixed', :amount, NULL, NULL, NULL,"
            " NULL, :now, :now), (:percent, :fed, 'bench-percent', 'One percent',"
            " 'percent_of_wage', NULL, 100, 10000, 100000, NULL, :now, :now)"
        ),
        {
            "fixed": fixed,
            "percent": percent,
            "fed": tree.federation,
            "amount": FIXED_PLAN_KOPECKS,
            "now": now,
        },
    )
    connection.execute(
        text(
            "INSERT INTO member_dues_plans (id, member_id, plan_id, effective_from,"
            " declared_wage_kopecks, created_at)"
            " SELECT gen_random_uuid(), m.id,"
            " CASE WHEN m.g % 4 = 0 THEN CAST(:percent AS uuid) ELSE CAST(:fixed AS uuid) END,"
            " :effective_from,"
            " CASE WHEN m.g % 4 = 0 THEN 3000000 + (m.g::bigint * 7919) % 7000000 END, :now"
            " FROM (SELECT id, substr(external_id, 2)::int AS g FROM members"
            " WHERE external_id LIKE :pattern) AS m"
        ),
        {
            "fixed": fixed,
            "percent": percent,
            "effective_from": PLAN_FROM,
            "now": now,
            "pattern": prefix + "%",
        },
    )


# With the triggers off, the arrears summary the database keeps from the dues months is
# rebuilt from them in one pass, as the migration that introduced it did.
REBUILD_MEMBER_ARREARS = (
    "DELETE FROM ledger_arrears_summary",
    "INSERT INTO ledger_arrears_summary"
    " (member_id, organization_id, months_owed, owed_kopecks, oldest_unpaid)"
    " SELECT member_id, organization_id, count(*), sum(accrued_kopecks - paid_kopecks),"
    " min(period_month) FROM ledger_dues_months WHERE paid_kopecks < accrued_kopecks"
    " GROUP BY member_id, organization_id ORDER BY member_id",
)


def load_history(engine: Engine, tree: Tree, months: list[date], now: datetime) -> None:
    """Accrue `months` for every member with a plan and post their payments (see
    NEVER_PAID_PER_20), as rows written straight into the journal, balances and dues months."""
    params = {
        "months": months,
        "orgs": list(tree.primary),
        "now": now,
        "never": NEVER_PAID_PER_20,
        "first_only": NEVER_PAID_PER_20 + PAID_FIRST_ONLY_PER_20,
    }
    paid_months = (
        "CASE WHEN d.g % 20 < :never THEN 0 WHEN d.g % 20 < :first_only THEN 1"
        " ELSE cardinality(CAST(:months AS date[])) END"
    )
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in (
            "CREATE TEMP TABLE bench_dues ON COMMIT DROP AS"
            " SELECT m.id AS member_id, m.organization_id, o.timezone,"
            " substr(m.external_id, 2)::int AS g, gen_random_uuid() AS receivable_id,"
            " CASE p.kind WHEN 'fixed' THEN p.amount_kopecks ELSE greatest(p.minimum_kopecks,"
            " least(p.maximum_kopecks, (a.declared_wage_kopecks * p.rate_bp + 5000) / 10000))"
            " END AS amount"
            " FROM members m JOIN organizations o ON o.id = m.organization_id"
            " JOIN member_dues_plans a ON a.member_id = m.id JOIN dues_plans p ON p.id = a.plan_id",
            "CREATE TEMP TABLE bench_org_accounts ON COMMIT DROP AS"
            " SELECT o AS organization_id, gen_random_uuid() AS income_id,"
            " gen_random_uuid() AS payroll_id FROM unnest(CAST(:orgs AS uuid[])) AS o",
            "INSERT INTO ledger_accounts (id, kind, currency, owner_type, owner_id,"
            " counterparty_id, created_at)"
            " SELECT receivable_id, 'member_dues_receivable', 'RUB', 'member', member_id,"
            " NULL::uuid, :now FROM bench_dues"
            " UNION ALL SELECT income_id, 'dues_income', 'RUB', 'organization', organization_id,"
            " NULL::uuid, :now FROM bench_org_accounts"
            " UNION ALL SELECT payroll_id, 'payroll_receivable', 'RUB', 'organization',"
            " organization_id, NULL::uuid, :now FROM bench_org_accounts",
            "CREATE TEMP TABLE bench_history ON COMMIT DROP AS"
            " SELECT gen_random_uuid() AS entry_id, d.member_id, d.organization_id,"
            " 'accrual' AS kind, 'accrual:' || d.member_id || ':' || to_char(mo.period, 'YYYY-MM')"
            " AS idempotency_key, mo.period AS period_month, mo.period AS booked_period,"
            " mo.period::timestamp AT TIME ZONE d.timezone AS occurred_at, NULL::text AS channel,"
            " 'Dues for ' || to_char(mo.period, 'YYYY-MM') AS description,"
            " d.amount AS receivable_kopecks, d.receivable_id, oa.income_id AS counter_id"
            " FROM bench_dues d JOIN bench_org_accounts oa USING (organization_id)"
            " CROSS JOIN unnest(CAST(:months AS date[])) AS mo(period)"
            " UNION ALL"
            " SELECT gen_random_uuid(), d.member_id, d.organization_id, 'payment',"
            " 'bench-payment:' || d.member_id, NULL::date, pm.month,"
            " (pm.month::timestamp + interval '14 days') AT TIME ZONE d.timezone, 'payroll',"
            " 'Payroll deduction', -d.amount * pm.paid, d.receivable_id, oa.payroll_id"
            " FROM bench_dues d JOIN bench_org_accounts oa USING (organization_id)"
            f" CROSS JOIN LATERAL (SELECT {paid_months} AS paid) AS n"
            " CROSS JOIN LATERAL (SELECT n.paid, (CAST(:months AS date[]))[n.paid] AS month) pm"
            " WHERE pm.paid > 0",
            # Ordered by time, as a journal written month by month lies on disk.
            "INSERT INTO ledger_entries (id, idempotency_key, body_hash, kind, organization_id,"
            " member_id, occurred_at, recorded_at, booked_period, period_month, channel,"
            " source_type, source_id, description, created_by, reverses_entry_id)"
            " SELECT entry_id, idempotency_key,"
            " encode(sha256(convert_to(idempotency_key, 'UTF8')), 'hex'), kind, organization_id,"
            " member_id, occurred_at, :now, booked_period, period_month, channel, 'bench',"
            " 'history', description, NULL, NULL FROM bench_history ORDER BY occurred_at",
            "INSERT INTO ledger_postings (entry_id, account_id, amount_kopecks, currency,"
            " occurred_at)"
            " SELECT entry_id, account_id, amount, 'RUB', occurred_at FROM ("
            " SELECT entry_id, receivable_id AS account_id, receivable_kopecks AS amount,"
            " occurred_at FROM bench_history UNION ALL"
            " SELECT entry_id, counter_id, -receivable_kopecks, occurred_at FROM bench_history"
            " ) AS p ORDER BY occurred_at",
            "INSERT INTO ledger_balances (account_id, balance_kopecks, postings, updated_at)"
            " SELECT account_id, sum(amount_kopecks), count(*), :now FROM ledger_postings"
            " GROUP BY account_id ON CONFLICT (account_id) DO UPDATE SET"
            " balance_kopecks = excluded.balance_kopecks, postings = excluded.postings",
            "INSERT INTO ledger_dues_months (member_id, period_month, organization_id, currency,"
            " accrued_kopecks, paid_kopecks)"
            " SELECT d.member_id, mo.period, d.organization_id, 'RUB', d.amount,"
            f" CASE WHEN mo.n <= {paid_months} THEN d.amount ELSE 0 END"
            " FROM bench_dues d CROSS JOIN unnest(CAST(:months AS date[])) WITH ORDINALITY"
            " AS mo(period, n) ORDER BY mo.period",
            *REBUILD_MEMBER_ARREARS,
        ):
            connection.execute(text(statement), params)


def vacuum_analyze(engine: Engine) -> None:
    """What autovacuum would have done by the time anyone reads: statistics and the
    visibility map (index-only scans)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM (ANALYZE)"))


def fetch_members(connection: Connection, *, prefix: str, limit: int) -> list[MemberRow]:
    rows = connection.execute(
        text(
            "SELECT m.id, m.organization_id, o.timezone FROM members m"
            " JOIN organizations o ON o.id = m.organization_id"
            " WHERE m.external_id LIKE :pattern ORDER BY m.external_id LIMIT :limit"
        ),
        {"pattern": prefix + "%", "limit": limit},
    ).all()
    return [MemberRow(row.id, row.organization_id, row.timezone) for row in rows]


def build_statement_history(
    sessions: sessionmaker[Session],
    clock: ManualClock,
    members: list[MemberRow],
    first_month: date,
    months: int,
) -> int:
    """Accrue `months` months from `first_month` for these members through `post_accruals`
    (one transaction a month), and post a payment for each quarter through
    `post_member_payment` (one transaction a quarter). Returns the entries posted."""
    posted = 0
    period = first_month
    for index in range(months):
        start = period_start(period, members[0].timezone).astimezone(UTC)
        clock.set(start + timedelta(hours=3))
        with transaction(sessions) as session:
            posted += post_accruals(
                session,
                [
                    Accrual(
                        member_id=member.member_id,
                        organization_id=member.organization_id,
                        timezone=member.timezone,
                        period_month=period,
                        amount_kopecks=FIXED_PLAN_KOPECKS,
                        occurred_at=period_start(period, member.timezone),
                        source_type="bench",
                        source_id="statement-history",
                    )
                    for member in members
                ],
                recorded_at=clock.now(),
            )
        if index % 3 == 2:
            clock.set(start + timedelta(days=19))
            with transaction(sessions) as session:
                for member in members:
                    post_member_payment(
                        session,
                        MemberPayment(
                            idempotency_key=f"bench-quarter:{member.member_id}:{period}",
                            member_id=member.member_id,
                            organization_id=member.organization_id,
                            channel=Channel.PAYROLL,
                            amount_kopecks=3 * FIXED_PLAN_KOPECKS,
                            occurred_at=clock.now(),
                            source_type="bench",
                            source_id="statement-history",
                            description="Payroll deduction for the quarter",
                            timezone=member.timezone,
                        ),
                        recorded_at=clock.now(),
                    )
                    posted += 1
        period = next_period(period)
    return posted


def complete_month(engine: Engine, month: date, now: datetime) -> int:
    """Accrue `month`, set-based, for every member with a plan who has no accrual for it yet
    (what a time-boxed accrual run left undone). Returns how many members it accrued."""
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in (
            "CREATE TEMP TABLE bench_rest ON COMMIT DROP AS"
            " SELECT gen_random_uuid() AS entry_id, m.id AS member_id, m.organization_id,"
            " 'accrual:' || m.id || ':' || to_char(CAST(:month AS date), 'YYYY-MM') AS key,"
            " CAST(:month AS date)::timestamp AT TIME ZONE o.timezone AS occurred_at,"
            " CASE p.kind WHEN 'fixed' THEN p.amount_kopecks ELSE greatest(p.minimum_kopecks,"
            " least(p.maximum_kopecks, (a.declared_wage_kopecks * p.rate_bp + 5000) / 10000))"
            " END AS amount, r.id AS receivable_id, i.id AS income_id"
            " FROM members m JOIN organizations o ON o.id = m.organization_id"
            " JOIN member_dues_plans a ON a.member_id = m.id JOIN dues_plans p ON p.id = a.plan_id"
            " JOIN ledger_accounts r ON r.owner_type = 'member' AND r.owner_id = m.id"
            " AND r.kind = 'member_dues_receivable'"
            " JOIN ledger_accounts i ON i.owner_type = 'organization'"
            " AND i.owner_id = m.organization_id AND i.kind = 'dues_income'"
            " WHERE NOT EXISTS (SELECT 1 FROM ledger_entries e"
            " WHERE e.idempotency_key = 'accrual:' || m.id || ':' || to_char(CAST(:month AS date),"
            " 'YYYY-MM'))",
            "INSERT INTO ledger_entries (id, idempotency_key, body_hash, kind, organization_id,"
            " member_id, occurred_at, recorded_at, booked_period, period_month, source_type,"
            " source_id, description)"
            " SELECT entry_id, key, encode(sha256(convert_to(key, 'UTF8')), 'hex'), 'accrual',"
            " organization_id, member_id, occurred_at, :now, :month, :month, 'bench', 'rest',"
            " 'Dues for ' || to_char(CAST(:month AS date), 'YYYY-MM') FROM bench_rest",
            "INSERT INTO ledger_postings (entry_id, account_id, amount_kopecks, currency,"
            " occurred_at)"
            " SELECT entry_id, receivable_id, amount, 'RUB', occurred_at FROM bench_rest"
            " UNION ALL SELECT entry_id, income_id, -amount, 'RUB', occurred_at FROM bench_rest",
            "INSERT INTO ledger_balances (account_id, balance_kopecks, postings, updated_at)"
            " SELECT account_id, sum(amount), count(*), :now FROM ("
            " SELECT receivable_id AS account_id, amount FROM bench_rest UNION ALL"
            " SELECT income_id, -amount FROM bench_rest) AS d GROUP BY account_id"
            " ON CONFLICT (account_id) DO UPDATE SET"
            " balance_kopecks = ledger_balances.balance_kopecks + excluded.balance_kopecks,"
            " postings = ledger_balances.postings + excluded.postings",
            # Nobody in the history has credit, so the month is simply unpaid.
            "INSERT INTO ledger_dues_months (member_id, period_month, organization_id, currency,"
            " accrued_kopecks, paid_kopecks)"
            " SELECT member_id, :month, organization_id, 'RUB', amount, 0 FROM bench_rest",
            *REBUILD_MEMBER_ARREARS,
        ):
            connection.execute(text(statement), {"month": month, "now": now})
        count: int = connection.execute(text("SELECT count(*) FROM bench_rest")).scalar_one()
    return count
