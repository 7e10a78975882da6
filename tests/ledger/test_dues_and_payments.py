"""Dues accrue by plan, payments from every channel pay the oldest month first, received dues
are shared up the tree, closed months stay closed, and corrections are reversals."""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from core.clock import ManualClock
from tests.ledger.conftest import Tree
from vznos.checks import run_checks
from vznos.cli import app as cli
from vznos.container import Container

DEC, JAN, FEB, MAR = date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1), date(2027, 3, 1)


def member(books: httpx.Client, external_id: str, **extra: object) -> None:
    body = {"organization_code": "ppo-1", "full_name": "Мария Иванова", **extra}
    answer = books.put(f"/v1/members/{external_id}", json=body)
    assert answer.status_code in (200, 201), answer.text


def plan(books: httpx.Client, code: str, **body: object) -> None:
    answer = books.put(f"/v1/dues-plans/{code}", json={"organization_code": "fed", **body})
    assert answer.status_code == 200, answer.text


def assign(books: httpx.Client, external_id: str, code: str, since: str, **extra: object) -> None:
    answer = books.put(
        f"/v1/members/{external_id}/dues-plan",
        json={"plan_code": code, "effective_from": since, **extra},
    )
    assert answer.status_code == 200, answer.text


def pay(
    books: httpx.Client, external_id: str, value: str, on: str, ref: str, **kw: object
) -> httpx.Response:
    return books.post(
        f"/v1/members/{external_id}/payments",
        json={
            "channel": kw.get("channel", "cash"),
            "amount": {"value": value, "currency": "RUB"},
            "occurred_on": on,
            "reference": ref,
            "recorded_by": "Казначей Петрова",
        },
    )


def account(books: httpx.Client, external_id: str) -> dict[str, object]:
    answer = books.get(f"/v1/members/{external_id}/account")
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


def assert_books_hold(container: Container) -> None:
    assert run_checks(container) == []


def test_plans_accrue_what_each_member_owes(
    container: Container, books: httpx.Client, tree: Tree
) -> None:
    plan(
        books,
        "fixed-350",
        name="Фиксированный",
        kind="fixed",
        amount={"value": "350.00", "currency": "RUB"},
    )
    plan(
        books,
        "one-percent",
        name="1 % от заработка",
        kind="percent_of_wage",
        percent="1.00",
        minimum={"value": "100.00", "currency": "RUB"},
        maximum={"value": "1500.00", "currency": "RUB"},
    )
    plan(books, "pensioner", name="Пенсионер", kind="exempt", category="pensioner")
    for external_id in ("fixed", "wage", "low", "high", "exempt", "joined-late", "left", "none"):
        member(books, external_id)
    member(books, "joined-late", joined_on="2026-12-02")
    member(books, "left", left_on="2026-11-30")
    assign(books, "fixed", "fixed-350", "2026-12")
    assign(
        books,
        "wage",
        "one-percent",
        "2026-12",
        declared_wage={"value": "85432.50", "currency": "RUB"},
    )
    assign(
        books,
        "low",
        "one-percent",
        "2026-12",
        declared_wage={"value": "5000.00", "currency": "RUB"},
    )
    assign(
        books,
        "high",
        "one-percent",
        "2026-12",
        declared_wage={"value": "900000.00", "currency": "RUB"},
    )
    assign(books, "exempt", "pensioner", "2026-12")
    assign(books, "joined-late", "fixed-350", "2026-12")
    assign(books, "left", "fixed-350", "2026-12")
    # A plan change applies from its month on.
    assign(
        books,
        "fixed",
        "one-percent",
        "2027-01",
        declared_wage={"value": "40000.00", "currency": "RUB"},
    )

    assert container.dues.accrue(DEC).accrued == 4
    assert container.dues.accrue(DEC).accrued == 0  # idempotent
    owed = {
        external_id: account(books, external_id)["balance"]
        for external_id in ("fixed", "wage", "low", "high", "exempt", "joined-late", "left", "none")
    }
    assert {k: v["value"] for k, v in owed.items()} == {  # type: ignore[index]
        "fixed": "350.00",
        "wage": "854.33",  # 1 % of 85 432.50, rounded half up
        "low": "100.00",  # the floor
        "high": "1500.00",  # the ceiling
        "exempt": "0.00",
        "joined-late": "0.00",  # not a member on the 1st: the default rule
        "left": "0.00",
        "none": "0.00",  # no plan: not accrued by plan
    }
    assert container.dues.accrue(JAN).accrued == 5  # joined-late owes January
    assert account(books, "fixed")["balance"] == {"value": "750.00", "currency": "RUB"}
    assert_books_hold(container)


def test_payments_pay_the_oldest_month_first_and_overpayment_is_credit(
    container: Container, books: httpx.Client, tree: Tree
) -> None:
    plan(
        books, "fixed-300", name="300", kind="fixed", amount={"value": "300.00", "currency": "RUB"}
    )
    member(books, "m-1")
    assign(books, "m-1", "fixed-300", "2026-12")
    for month in (DEC, JAN, FEB):
        container.dues.accrue(month)
    after = account(books, "m-1")
    assert after["arrears"] == {
        "months": 3,
        "amount": {"value": "900.00", "currency": "RUB"},
        "oldest_unpaid_period": "2026-12",
    }
    assert pay(books, "m-1", "450.00", "2027-02-10", "CASH-1").status_code == 201
    assert account(books, "m-1")["arrears"] == {
        "months": 2,
        "amount": {"value": "450.00", "currency": "RUB"},
        "oldest_unpaid_period": "2027-01",
    }
    # The same reference again records nothing.
    again = pay(books, "m-1", "450.00", "2027-02-10", "CASH-1")
    assert again.status_code == 201 and again.json()["replayed"] is True
    assert (
        pay(books, "m-1", "1000.00", "2027-02-11", "BANK-7", channel="bank_transfer").status_code
        == 201
    )
    paid_up = account(books, "m-1")
    assert paid_up["balance"] == {"value": "-550.00", "currency": "RUB"}
    assert paid_up["arrears"]["months"] == 0  # type: ignore[index]
    # The credit pays the next month as soon as it is accrued.
    container.dues.accrue(MAR)
    march = account(books, "m-1")
    assert march["balance"] == {"value": "-250.00", "currency": "RUB"}
    assert march["arrears"]["months"] == 0  # type: ignore[index]
    assert_books_hold(container)


def test_received_dues_are_shared_up_the_tree(
    container: Container, books: httpx.Client, tree: Tree
) -> None:
    shares = {
        "effective_from": "2026-12",
        "shares": [
            {"organization_code": "ppo-1", "percent": "60.00"},
            {"organization_code": "terr", "percent": "25.00"},
            {"organization_code": "sect", "percent": "10.00"},
            {"organization_code": "fed", "percent": "5.00"},
        ],
    }
    assert books.put("/v1/organizations/ppo-1/shares", json=shares).status_code == 204
    member(books, "m-2")
    assert pay(books, "m-2", "350.01", "2026-12-15", "C-1").status_code == 201

    def balance(owner: object, kind: str) -> int:
        with container.engine.connect() as connection:
            return int(
                connection.execute(
                    text(
                        "SELECT coalesce(sum(b.balance_kopecks), 0) FROM ledger_balances b"
                        " JOIN ledger_accounts a ON a.id = b.account_id"
                        " WHERE a.owner_id = :o AND a.kind = :k"
                    ),
                    {"o": owner, "k": kind},
                ).scalar_one()
            )

    # allocate() puts the odd kopeck deterministically: 350.01 → 210.01 / 87.50 / 35.00 / 17.50
    assert balance(tree.primary, "payable_upward") == -(8750 + 3500 + 1750)
    assert balance(tree.territorial, "receivable_from_below") == 8750
    assert balance(tree.sectoral, "receivable_from_below") == 3500
    assert balance(tree.federation, "receivable_from_below") == 1750
    assert balance(tree.primary, "dues_income") == 8750 + 3500 + 1750  # before any accrual

    transfer = books.post(
        "/v1/organizations/ppo-1/transfers",
        json={
            "to_organization_code": "terr",
            "amount": {"value": "87.50", "currency": "RUB"},
            "occurred_on": "2026-12-20",
            "reference": "PP-100",
            "recorded_by": "Казначей Петрова",
        },
    )
    assert transfer.status_code == 201, transfer.text
    assert balance(tree.territorial, "receivable_from_below") == 0
    assert balance(tree.primary, "payable_upward") == -(3500 + 1750)
    assert_books_hold(container)


@pytest.mark.parametrize(
    ("shares", "field"),
    [
        ([("ppo-1", "60.00"), ("terr", "30.00")], "shares"),
        ([("ppo-1", "60.00"), ("ppo-1", "40.00")], "shares.1"),
        ([("ppo-1", "60.00"), ("other", "40.00")], "shares.1.organization_code"),
        ([("ppo-1", "60.005")], "shares.0.percent"),
    ],
)
def test_a_share_table_that_does_not_add_up_is_refused(
    books: httpx.Client, tree: Tree, container: Container, shares: list[tuple[str, str]], field: str
) -> None:
    from members.schemas import OrganizationCreate

    container.organizations.create(OrganizationCreate(code="other", name="Other"), None)
    answer = books.put(
        "/v1/organizations/ppo-1/shares",
        json={
            "effective_from": "2026-12",
            "shares": [{"organization_code": c, "percent": p} for c, p in shares],
        },
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    with container.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM ledger_share_rules")).scalar() == 0


def test_a_closed_month_refuses_manual_entries_and_rebooks_late_facts(
    container: Container, books: httpx.Client, tree: Tree, clock: ManualClock
) -> None:
    member(books, "m-3")
    assert pay(books, "m-3", "100.00", "2026-11-20", "C-1").status_code == 201
    closed = books.post(
        "/v1/organizations/ppo-1/periods/2026-11/close", json={"closed_by": "Казначей Петрова"}
    )
    assert closed.status_code == 204
    refused = pay(books, "m-3", "100.00", "2026-11-25", "C-2")
    assert refused.status_code == 409
    assert refused.json()["field"] == "occurred_at"
    assert refused.json()["open_period"] == "2026-12"
    # A fact from outside (a card payment that occurred in November) goes to the open month.
    from core.db import transaction
    from ledger.service import MemberPayment, post_member_payment
    from ledger.states import Channel

    with transaction(container.sessions) as session:
        member_id = session.execute(
            text("SELECT id FROM members WHERE external_id = 'm-3'")
        ).scalar_one()
        posted = post_member_payment(
            session,
            MemberPayment(
                idempotency_key="payment:late-card",
                member_id=member_id,
                organization_id=tree.primary,
                channel=Channel.CARD,
                amount_kopecks=5000,
                occurred_at=datetime(2026, 11, 29, 12, tzinfo=UTC),
                source_type="charge",
                source_id="late",
                description="late card payment",
            ),
            recorded_at=clock.now(),
        )
    assert posted.booked_period == date(2026, 12, 1)
    assert_books_hold(container)
    with container.engine.begin() as connection:
        connection.execute(text("UPDATE ledger_period_closes SET closed_at = '2000-01-01'"))
    violations = run_checks(container)
    assert [v.check for v in violations] == ["nothing_posted_in_closed_months"]


def test_a_reversal_undoes_a_payment_and_its_share(
    container: Container, books: httpx.Client, tree: Tree
) -> None:
    books.put(
        "/v1/organizations/ppo-1/shares",
        json={
            "effective_from": "2026-12",
            "shares": [
                {"organization_code": "ppo-1", "percent": "50.00"},
                {"organization_code": "fed", "percent": "50.00"},
            ],
        },
    )
    plan(
        books, "fixed-200", name="200", kind="fixed", amount={"value": "200.00", "currency": "RUB"}
    )
    member(books, "m-4")
    assign(books, "m-4", "fixed-200", "2026-12")
    container.dues.accrue(DEC)
    entry = pay(books, "m-4", "200.00", "2026-12-03", "C-9").json()
    assert account(books, "m-4")["balance"]["value"] == "0.00"  # type: ignore[index]
    reversal = books.post(
        f"/v1/ledger/entries/{entry['id']}/reverse",
        json={"reason": "entered for the wrong member", "recorded_by": "Казначей Петрова"},
    )
    assert reversal.status_code == 201, reversal.text
    assert reversal.json()["reverses_entry_id"] == entry["id"]
    after = account(books, "m-4")
    assert after["balance"]["value"] == "200.00"  # type: ignore[index]
    assert after["arrears"]["months"] == 1  # type: ignore[index]
    twice = books.post(
        f"/v1/ledger/entries/{entry['id']}/reverse",
        json={"reason": "again", "recorded_by": "Казначей Петрова"},
    )
    assert twice.status_code == 409
    with container.engine.connect() as connection:
        payable = connection.execute(
            text(
                "SELECT coalesce(sum(balance_kopecks), 0) FROM ledger_balances b"
                " JOIN ledger_accounts a ON a.id = b.account_id WHERE a.kind = 'payable_upward'"
            )
        ).scalar_one()
    assert payable == 0
    assert_books_hold(container)


def test_ledger_check_command_reports_a_tampered_balance(
    container: Container, books: httpx.Client, tree: Tree, cli_env: dict[str, str]
) -> None:
    member(books, "m-5")
    pay(books, "m-5", "100.00", "2026-12-01", "C-1")
    runner = CliRunner()
    ok = runner.invoke(cli, ["ledger", "check"], env=cli_env)
    assert ok.exit_code == 0, ok.output
    with container.engine.begin() as connection:
        connection.execute(text("UPDATE ledger_balances SET balance_kopecks = balance_kopecks + 1"))
    bad = runner.invoke(cli, ["ledger", "check"], env=cli_env)
    assert bad.exit_code == 1
    assert "balances_match_postings" in bad.output


def test_accrue_command(
    container: Container, books: httpx.Client, tree: Tree, cli_env: dict[str, str]
) -> None:
    plan(books, "fixed-1", name="1", kind="fixed", amount={"value": "1.00", "currency": "RUB"})
    member(books, "m-6")
    assign(books, "m-6", "fixed-1", "2026-12")
    runner = CliRunner()
    first = runner.invoke(cli, ["ledger", "accrue", "--period", "2026-12"], env=cli_env)
    assert first.exit_code == 0 and "1 members accrued" in first.output, first.output
    second = runner.invoke(cli, ["ledger", "accrue", "--period", "2026-12"], env=cli_env)
    assert "0 members accrued" in second.output
    bad = runner.invoke(cli, ["ledger", "accrue", "--period", "2026-13"], env=cli_env)
    assert bad.exit_code == 2


def test_the_scheduler_accrues_each_month_once(
    container: Container, books: httpx.Client, tree: Tree, clock: ManualClock
) -> None:
    from vznos.scheduler import tick

    plan(books, "fixed-50", name="50", kind="fixed", amount={"value": "50.00", "currency": "RUB"})
    member(books, "m-7")
    assign(books, "m-7", "fixed-50", "2026-12")
    clock.set(datetime(2026, 11, 30, 20, 59, tzinfo=UTC))  # 23:59 on 30 November in Moscow
    tick(container)
    assert account(books, "m-7")["balance"]["value"] == "0.00"  # type: ignore[index]
    clock.set(datetime(2026, 11, 30, 21, 1, tzinfo=UTC))  # 00:01 on 1 December in Moscow
    tick(container)
    tick(container)
    assert account(books, "m-7")["balance"]["value"] == "50.00"  # type: ignore[index]
    with container.engine.connect() as connection:
        runs = connection.execute(text("SELECT job, run_key FROM job_runs ORDER BY job")).all()
    assert [tuple(run) for run in runs] == [
        ("dues.accrue", "2026-11"),
        ("dues.accrue", "2026-12"),
        ("ledger.check", "2026-11-30"),
    ]
