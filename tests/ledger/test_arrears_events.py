"""`member.arrears_changed`: raised in the posting's own transaction whenever what a member owes
(months not fully paid, and their amount) changes, and only then; a batch of accruals raises
its events in one statement."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from limits import parse_many
from sqlalchemy import event, select, text

from core.db import transaction
from core.outbox import Event
from ledger.journal import EntryDraft, Line, post_entry
from ledger.models import MemberArrears
from ledger.service import org_account, receivable
from ledger.states import AccountKind, EntryKind
from tests.ledger.conftest import Tree
from tests.ledger.test_dues_and_payments import DEC, FEB, JAN, MAR, assign, member, pay, plan
from vznos.container import Container

ARREARS = "member.arrears_changed"


def arrears_events(container: Container) -> list[Event]:
    with container.sessions() as session:
        return list(
            session.scalars(select(Event).where(Event.type == ARREARS).order_by(Event.sequence))
        )


def owed(payload: dict[str, Any]) -> tuple[int, str, int, str]:
    return (
        payload["previous_months_owed"],
        payload["previous_amount_owed"]["value"],
        payload["months_owed"],
        payload["amount_owed"]["value"],
    )


def test_accruals_and_payments_raise_an_event_only_when_what_is_owed_changes(
    container: Container, books: httpx.Client, tree: Tree
) -> None:
    plan(
        books, "fixed-300", name="300", kind="fixed", amount={"value": "300.00", "currency": "RUB"}
    )
    member(books, "m-1")
    assign(books, "m-1", "fixed-300", "2026-12")
    for month in (DEC, JAN, FEB):
        container.dues.accrue(month)
    container.dues.accrue(FEB)  # idempotent: nothing posted, nothing raised
    assert pay(books, "m-1", "450.00", "2027-02-10", "CASH-1").status_code == 201
    assert pay(books, "m-1", "450.00", "2027-02-10", "CASH-1").json()["replayed"] is True
    assert pay(books, "m-1", "1000.00", "2027-02-11", "BANK-7").status_code == 201
    # Paid up with 550.00 of credit: March's accrual is paid from it, so nothing is owed still.
    container.dues.accrue(MAR)
    assert pay(books, "m-1", "10.00", "2027-03-02", "CASH-2").status_code == 201  # more credit

    events = arrears_events(container)
    assert [owed(e.payload) for e in events] == [
        (0, "0.00", 1, "300.00"),
        (1, "300.00", 2, "600.00"),
        (2, "600.00", 3, "900.00"),
        (3, "900.00", 2, "450.00"),
        (2, "450.00", 0, "0.00"),
    ]
    first, *_, paid_up = events
    assert first.payload["oldest_unpaid_period"] == "2026-12"
    assert events[3].payload["oldest_unpaid_period"] == "2027-01"
    assert paid_up.payload["oldest_unpaid_period"] is None
    for e in events:
        assert e.organization_id == tree.primary
        assert e.payload["member_external_id"] == "m-1"
        assert e.payload["amount_owed"]["currency"] == "RUB"
        assert set(e.payload) == {
            "member_id",
            "member_external_id",
            "months_owed",
            "amount_owed",
            "oldest_unpaid_period",
            "previous_months_owed",
            "previous_amount_owed",
        }
        assert "Мария" not in str(e.payload)
    # The remembered value is what the API reports.
    with container.sessions() as session:
        remembered = session.get(MemberArrears, uuid.UUID(first.payload["member_id"]))
    assert remembered is not None and (remembered.months_owed, remembered.owed_kopecks) == (0, 0)


def test_a_reversed_payment_raises_the_arrears_back(
    container: Container, books: httpx.Client, tree: Tree
) -> None:
    plan(
        books, "fixed-200", name="200", kind="fixed", amount={"value": "200.00", "currency": "RUB"}
    )
    member(books, "m-4")
    assign(books, "m-4", "fixed-200", "2026-12")
    container.dues.accrue(DEC)
    entry = pay(books, "m-4", "200.00", "2026-12-03", "C-9").json()
    reversal = books.post(
        f"/v1/ledger/entries/{entry['id']}/reverse",
        json={"reason": "entered for the wrong member", "recorded_by": "Казначей Петрова"},
    )
    assert reversal.status_code == 201, reversal.text
    assert [owed(e.payload) for e in arrears_events(container)] == [
        (0, "0.00", 1, "200.00"),
        (1, "200.00", 0, "0.00"),
        (0, "0.00", 1, "200.00"),
    ]


def test_a_posting_rolled_back_raises_nothing_and_remembers_nothing(
    container: Container, books: httpx.Client, tree: Tree
) -> None:
    member(books, "m-2")
    with container.sessions() as session:
        member_id = session.scalar(text("SELECT id FROM members WHERE external_id = 'm-2'"))
    assert member_id is not None
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    draft = EntryDraft(
        idempotency_key=f"test-accrual-{member_id}",
        kind=EntryKind.ACCRUAL,
        occurred_at=now,
        organization_id=tree.primary,
        member_id=member_id,
        period_month=DEC,
        source_type="test",
        source_id="1",
        description="Dues for 2026-12",
        lines=(
            Line(receivable(member_id), 25000),
            Line(org_account(tree.primary, AccountKind.DUES_INCOME), -25000),
        ),
    )
    with pytest.raises(RuntimeError), transaction(container.sessions) as session:
        post_entry(session, draft, recorded_at=now)
        assert session.scalar(select(Event.type).where(Event.type == ARREARS)) == ARREARS
        raise RuntimeError("the use case failed after posting")
    assert arrears_events(container) == []
    with container.sessions() as session:
        assert session.get(MemberArrears, member_id) is None
    # Committed this time: the event is there, with the posting.
    with transaction(container.sessions) as session:
        post_entry(session, draft, recorded_at=now)
    assert [owed(e.payload) for e in arrears_events(container)] == [(0, "0.00", 1, "250.00")]


def test_a_batch_of_accruals_raises_its_events_in_one_statement(
    container: Container, books: httpx.Client, tree: Tree
) -> None:
    # Fifty-odd API calls in a row: lift the per-key rate limit this test is not about.
    container.rate_limiter.items = parse_many("100000/second")
    plan(
        books, "fixed-100", name="100", kind="fixed", amount={"value": "100.00", "currency": "RUB"}
    )
    for n in range(25):
        member(books, f"b-{n}")
        assign(books, f"b-{n}", "fixed-100", "2026-12")
    # One member paid ahead: December's accrual is paid from credit and changes nothing owed.
    assert pay(books, "b-0", "100.00", "2026-11-30", "AHEAD-1").status_code == 201
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(container.engine, "before_cursor_execute", record)
    try:
        assert container.dues.accrue(DEC).accrued == 25
    finally:
        event.remove(container.engine, "before_cursor_execute", record)
    assert sum("INSERT INTO events" in s for s in statements) == 1
    assert sum("ledger_member_arrears" in s for s in statements) == 1
    events = arrears_events(container)
    assert len(events) == 24
    assert {e.payload["member_external_id"] for e in events} == {f"b-{n}" for n in range(1, 25)}
    assert {owed(e.payload) for e in events} == {(0, "0.00", 1, "100.00")}
