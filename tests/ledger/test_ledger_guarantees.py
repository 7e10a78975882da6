"""The guarantees under pressure: the application's role cannot edit the journal, concurrent
posters lose nothing, and random histories keep every invariant."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from core.db import transaction
from core.periods import next_period
from ledger.batch import Accrual, accrual_body_hash, accrual_draft, post_accruals
from ledger.dues import fifo
from ledger.errors import AlreadyReversed, PeriodClosed
from ledger.reads import Arrears, LedgerReads
from ledger.service import (
    MemberPayment,
    Share,
    close_period,
    post_member_payment,
    reverse_entry,
    set_shares,
)
from ledger.states import Channel, ClosedPeriodPolicy
from tests.ledger.conftest import Tree
from vznos.checks import run_checks
from vznos.container import Container

# CI runs 1,000 random histories (.ci/run); a release run sets e.g. 20,000.
EXAMPLES = int(os.environ.get("VZNOS_LEDGER_EXAMPLES", "150"))
START = date(2026, 6, 1)


def add_member(container: Container, org: uuid.UUID, external_id: str) -> uuid.UUID:
    member_id = uuid.uuid4()
    with container.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO members (id, external_id, organization_id, created_at,"
                " updated_at) VALUES (:id, :ext, :org, now(), now())"
            ),
            {"id": member_id, "ext": external_id, "org": org},
        )
    return member_id


def test_the_application_role_cannot_update_or_delete_the_journal(
    container: Container, tree: Tree, database_url: str
) -> None:
    member_id = add_member(container, tree.primary, "m-role")
    with transaction(container.sessions) as session:
        post_member_payment(
            session,
            MemberPayment(
                "k-role",
                member_id,
                tree.primary,
                Channel.CASH,
                100,
                datetime(2026, 12, 1, tzinfo=UTC),
                "manual",
                "r",
                "cash",
            ),
            recorded_at=datetime(2026, 12, 1, tzinfo=UTC),
        )
    engine = create_engine(database_url)
    try:
        for statement in (
            "UPDATE ledger_postings SET amount_kopecks = amount_kopecks",
            "DELETE FROM ledger_postings",
            "UPDATE ledger_entries SET description = 'x'",
            "DELETE FROM ledger_entries",
            "TRUNCATE ledger_entries CASCADE",
        ):
            with pytest.raises(DBAPIError, match="permission denied"), engine.begin() as conn:
                conn.execute(text("SET LOCAL ROLE vznos_app"))
                assert conn.execute(text("SELECT current_user")).scalar() == "vznos_app"
                conn.execute(text(statement))
        with engine.begin() as conn:  # it may read and add (in an organisation context)
            conn.execute(text("SET LOCAL ROLE vznos_app"))
            conn.execute(text("SELECT set_config('vznos.org_ids', '*', true)"))
            assert conn.execute(text("SELECT count(*) FROM ledger_entries")).scalar() == 1
    finally:
        engine.dispose()


def test_many_threads_paying_one_member_lose_nothing(container: Container, tree: Tree) -> None:
    member_id = add_member(container, tree.primary, "m-busy")
    with transaction(container.sessions) as session:
        set_shares(
            session,
            organization_id=tree.primary,
            effective_from=date(2026, 1, 1),
            shares=[Share(tree.primary, 7000), Share(tree.federation, 3000)],
            allowed={tree.primary, tree.federation},
            now=datetime(2026, 1, 1, tzinfo=UTC),
        )
        post_accruals(
            session,
            [
                Accrual(
                    member_id,
                    tree.primary,
                    "Europe/Moscow",
                    month,
                    10_000,
                    datetime(2026, 12, 1, tzinfo=UTC),
                    "test",
                    "t",
                )
                for month in [date(2026, 12, 1)]
            ],
            recorded_at=datetime(2026, 12, 1, tzinfo=UTC),
        )

    def pay(n: int) -> None:
        with transaction(container.sessions) as session:
            post_member_payment(
                session,
                MemberPayment(
                    f"k-{n}",
                    member_id,
                    tree.primary,
                    Channel.CASH,
                    100 + n,
                    datetime(2026, 12, 2, tzinfo=UTC),
                    "manual",
                    str(n),
                    "cash",
                ),
                recorded_at=datetime(2026, 12, 2, tzinfo=UTC),
            )

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(pay, range(200)))
    paid = sum(100 + n for n in range(200))
    account = LedgerReads(container.sessions).member_account(member_id)
    assert account.balance_kopecks == 10_000 - paid
    assert run_checks(container) == []


@settings(max_examples=2_000)
@given(
    st.lists(st.integers(min_value=0, max_value=5_000), max_size=12),
    st.integers(min_value=0, max_value=80_000),
)
def test_fifo_pays_oldest_first_and_never_overpays(amounts: list[int], credit: int) -> None:
    months = [
        (date(2026, 1, 1) + timedelta(days=31 * i)).replace(day=1) for i in range(len(amounts))
    ]
    result = fifo(list(zip(months, amounts, strict=True)), credit)
    assert sum(m.paid_kopecks for m in result) == min(credit, sum(amounts))
    seen_unpaid = False
    for month in result:
        assert 0 <= month.paid_kopecks <= month.accrued_kopecks
        if seen_unpaid:
            assert month.paid_kopecks == 0
        if month.paid_kopecks < month.accrued_kopecks:
            seen_unpaid = True


@settings(max_examples=300)
@given(
    st.uuids(),
    st.uuids(),
    st.integers(min_value=1, max_value=10**12),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=3))])),
    st.dates(),
)
def test_the_batch_hashes_an_accrual_as_its_draft_does(
    member: uuid.UUID, org: uuid.UUID, amount: int, occurred_at: datetime, month: date
) -> None:
    """The batch writes the body hash without building the draft; a later `post_entry` of the
    same accrual must still see the same body."""
    item = Accrual(member, org, "UTC", month.replace(day=1), amount, occurred_at, "t", "t")
    assert accrual_body_hash(item) == accrual_draft(item).body_hash()


# -- random histories -------------------------------------------------------------------------

operation = st.one_of(
    st.tuples(st.just("accrue"), st.integers(0, 2), st.integers(1, 50_000)),
    st.tuples(
        st.just("pay"), st.integers(0, 2), st.integers(1, 80_000), st.sampled_from(list(Channel))
    ),
    st.tuples(st.just("reverse"), st.integers(0, 100)),
    st.tuples(st.just("close"), st.integers(0, 1)),
    st.tuples(st.just("next_month")),
    st.tuples(st.just("shares"), st.integers(1, 9_999)),
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(operation, min_size=1, max_size=14))
def test_random_histories_keep_every_invariant(
    container: Container, tree: Tree, all_tables: list[str], ops: list[tuple[object, ...]]
) -> None:
    with container.engine.begin() as connection:  # each example starts from empty books
        connection.execute(
            text(
                "TRUNCATE ledger_postings, ledger_entries, ledger_balances, ledger_accounts,"
                " ledger_dues_months, ledger_period_closes, ledger_share_rules, members CASCADE"
            )
        )
    members = [add_member(container, tree.primary, f"m-{i}") for i in range(3)]
    month = START
    accrued_months: dict[uuid.UUID, set[date]] = {m: set() for m in members}
    expected = dict.fromkeys(members, 0)
    entries: list[tuple[uuid.UUID, uuid.UUID, int]] = []  # (entry, member, effect on balance)
    reversed_entries: set[uuid.UUID] = set()
    closed: set[date] = set()

    def at(day: int = 10) -> datetime:
        return datetime(month.year, month.month, day, 9, tzinfo=UTC)

    for n, op in enumerate(ops):
        kind = op[0]
        with transaction(container.sessions) as session:
            if kind == "accrue":
                who, amount = members[int(op[1])], int(op[2])  # type: ignore[call-overload]
                if month in accrued_months[who]:
                    continue
                posted = post_accruals(
                    session,
                    [Accrual(who, tree.primary, "Europe/Moscow", month, amount, at(1), "t", "t")],
                    recorded_at=at(1),
                )
                if posted:
                    accrued_months[who].add(month)
                    expected[who] += amount
            elif kind == "pay":
                who, amount = members[int(op[1])], int(op[2])  # type: ignore[call-overload]
                try:
                    posted_payment = post_member_payment(
                        session,
                        MemberPayment(
                            f"p-{n}",
                            who,
                            tree.primary,
                            Channel(str(op[3])),
                            amount,
                            at(),
                            "manual",
                            str(n),
                            "pay",
                        ),
                        recorded_at=at(),
                        closed_period=ClosedPeriodPolicy.REFUSE,
                    )
                except PeriodClosed:
                    assert month in closed
                    continue
                expected[who] -= amount
                entries.append((posted_payment.entry_id, who, -amount))
            elif kind == "reverse" and entries:
                entry, who, effect = entries[int(op[1]) % len(entries)]  # type: ignore[call-overload]
                try:
                    reverse_entry(
                        session,
                        entry_id=entry,
                        reason="test",
                        created_by="t",
                        occurred_at=at(),
                        recorded_at=at(),
                        closed_period=ClosedPeriodPolicy.REBOOK,
                    )
                except AlreadyReversed:
                    assert entry in reversed_entries
                    continue
                reversed_entries.add(entry)
                expected[who] -= effect
            elif kind == "close":
                target = month if op[1] else month.replace(day=1)
                close_period(
                    session,
                    organization_id=tree.primary,
                    period_month=target,
                    closed_by="t",
                    now=at(),
                )
                closed.add(target)
            elif kind == "next_month":
                month = next_period(month)
            elif kind == "shares":
                share = int(op[1])  # type: ignore[call-overload]
                set_shares(
                    session,
                    organization_id=tree.primary,
                    effective_from=month,
                    shares=[Share(tree.primary, share), Share(tree.territorial, 10_000 - share)],
                    allowed={tree.primary, tree.territorial},
                    now=at(),
                )
        assert run_checks(container) == [], f"after step {n}: {op}"
    reads = LedgerReads(container.sessions)
    for who in members:
        assert reads.member_account(who).balance_kopecks == expected[who]


def test_the_arrears_list_follows_accruals_and_payments(container: Container, tree: Tree) -> None:
    owing, paying, newcomer = (
        add_member(container, tree.primary, f"m-arrears-{n}") for n in range(3)
    )
    months = [date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)]
    when = datetime(2026, 11, 20, tzinfo=UTC)
    with transaction(container.sessions) as session:
        for month in months:
            post_accruals(
                session,
                [
                    Accrual(who, tree.primary, "Europe/Moscow", month, 30_000, when, "t", "t")
                    for who in (owing, paying)
                ],
                recorded_at=when,
            )
        post_accruals(
            session,
            [Accrual(newcomer, tree.primary, "Europe/Moscow", months[-1], 30_000, when, "t", "t")],
            recorded_at=when,
        )
        post_member_payment(
            session,
            MemberPayment(
                "k-arrears", paying, tree.primary, Channel.CASH, 45_000, when, "manual", "r", "c"
            ),
            recorded_at=when,
        )
    reads = LedgerReads(container.sessions)
    everyone = [tree.primary, tree.territorial, tree.federation]
    listed = dict(reads.arrears_list(everyone))
    # `paying` paid September and half of October: two months still owed, 45,000 kopecks.
    assert listed == {
        owing: Arrears(3, 90_000, months[0]),
        paying: Arrears(2, 45_000, months[1]),
    }
    assert list(reads.arrears_stream(everyone, chunk=1)) == reads.arrears_list(everyone)
    assert [m for m, _ in reads.arrears_list(everyone, limit=1)] == [min(owing, paying)]
    after = min(owing, paying)
    assert [m for m, _ in reads.arrears_list(everyone, after=after)] == [max(owing, paying)]
    assert dict(reads.arrears_list(everyone, min_months=1))[newcomer] == Arrears(
        1, 30_000, months[-1]
    )
    assert reads.arrears_list([tree.territorial]) == []
    with transaction(container.sessions) as session:
        post_member_payment(
            session,
            MemberPayment(
                "k-arrears-2", owing, tree.primary, Channel.CASH, 90_000, when, "manual", "r", "c"
            ),
            recorded_at=when,
        )
    assert dict(reads.arrears_list(everyone)).keys() == {paying}
    assert run_checks(container) == []
