"""The journal is append-only double entry, and the database itself says so."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.db import transaction
from ledger.errors import IdempotencyKeyReused, UnbalancedEntry
from ledger.journal import EntryDraft, Line, post_entry
from ledger.reads import LedgerReads
from ledger.service import org_account, post_dues_accrual, receivable
from ledger.states import AccountKind, EntryKind
from vznos.container import Container

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
MEMBER = uuid.UUID(int=1)
ORG = uuid.UUID(int=2)


@pytest.fixture(autouse=True)
def member_and_org(container: Container) -> None:
    """The member and organisation the entries below belong to (the journal references them)."""
    with container.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO organizations (id, code, name, timezone)"
                " VALUES (:org, 'org-j', 'Journal test', 'Europe/Moscow')"
            ),
            {"org": ORG},
        )
        connection.execute(
            text(
                "INSERT INTO members (id, external_id, organization_id, created_at,"
                " updated_at) VALUES (:m, 'm-j', :org, now(), now())"
            ),
            {"m": MEMBER, "org": ORG},
        )


def draft(key: str, amount: int, *, counter: int | None = None) -> EntryDraft:
    return EntryDraft(
        idempotency_key=key,
        kind=EntryKind.ADJUSTMENT,
        occurred_at=NOW,
        organization_id=ORG,
        member_id=MEMBER,
        source_type="test",
        source_id=key,
        description="test",
        lines=(
            Line(receivable(MEMBER), amount),
            Line(org_account(ORG, AccountKind.DUES_INCOME), -(counter if counter else amount)),
        ),
    )


def test_an_entry_posts_once_per_key(container: Container) -> None:
    with transaction(container.sessions) as session:
        first = post_entry(session, draft("k-1", 35000), recorded_at=NOW).entry_id
    with transaction(container.sessions) as session:
        assert post_entry(session, draft("k-1", 35000), recorded_at=NOW).entry_id == first
    with pytest.raises(IdempotencyKeyReused), transaction(container.sessions) as session:
        post_entry(session, draft("k-1", 40000), recorded_at=NOW)
    assert LedgerReads(container.sessions).member_account(MEMBER).balance_kopecks == 35000


def test_an_unbalanced_entry_is_refused_in_code(container: Container) -> None:
    with pytest.raises(UnbalancedEntry), transaction(container.sessions) as session:
        post_entry(session, draft("k-2", 35000, counter=34999), recorded_at=NOW)


def test_an_accrual_posts_once_per_member_and_month(container: Container) -> None:
    for source in ("charge-a", "charge-b"):
        with transaction(container.sessions) as session:
            post_dues_accrual(
                session,
                member_id=MEMBER,
                organization_id=ORG,
                period_month=date(2026, 11, 1),
                amount_kopecks=35000,
                occurred_at=NOW,
                recorded_at=NOW,
                source_type="charge",
                source_id=source,
            )
    account = LedgerReads(container.sessions).member_account(MEMBER)
    assert [line.amount_kopecks for line in account.lines] == [35000]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_postings SET amount_kopecks = 1",
        "DELETE FROM ledger_postings",
        "UPDATE ledger_entries SET description = 'edited'",
        "DELETE FROM ledger_entries",
    ],
)
def test_the_database_refuses_to_edit_the_journal(container: Container, statement: str) -> None:
    with transaction(container.sessions) as session:
        post_entry(session, draft("k-3", 35000), recorded_at=NOW)
    with pytest.raises(DBAPIError, match="append-only"), container.engine.begin() as connection:
        connection.execute(text(statement))


def test_the_database_refuses_an_entry_that_does_not_balance(container: Container) -> None:
    with transaction(container.sessions) as session:
        post_entry(session, draft("k-4", 35000), recorded_at=NOW)
    with container.engine.connect() as connection:
        accounts = connection.execute(text("SELECT id FROM ledger_accounts ORDER BY kind")).all()
    entry_id = uuid.uuid4()
    with pytest.raises(DBAPIError, match="does not balance"), container.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO ledger_entries (id, idempotency_key, body_hash, kind, occurred_at,"
                " recorded_at, booked_period, source_type, source_id, description)"
                " VALUES (:id, 'raw', 'x', 'adjustment', now(), now(), '2026-11-01', 't', 't', 't')"
            ),
            {"id": entry_id},
        )
        for account, amount in ((accounts[0].id, 100), (accounts[1].id, -99)):
            conn.execute(
                text(
                    "INSERT INTO ledger_postings (entry_id, account_id, amount_kopecks, currency,"
                    " occurred_at) VALUES (:e, :a, :m, 'RUB', now())"
                ),
                {"e": entry_id, "a": account, "m": amount},
            )


def test_the_database_refuses_a_posting_in_another_currency(container: Container) -> None:
    with transaction(container.sessions) as session:
        post_entry(session, draft("k-5", 35000), recorded_at=NOW)
    with container.engine.connect() as connection:
        account = connection.execute(text("SELECT id FROM ledger_accounts LIMIT 1")).scalar_one()
    with pytest.raises(DBAPIError, match="currency"), container.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO ledger_postings (entry_id, account_id, amount_kopecks, currency,"
                " occurred_at) SELECT id, :a, 1, 'USD', now() FROM ledger_entries LIMIT 1"
            ),
            {"a": account},
        )


def test_a_counterparty_is_required_exactly_for_debts_between_levels() -> None:
    with pytest.raises(ValueError, match="counterparty"):
        org_account(ORG, AccountKind.PAYABLE_UPWARD)
    with pytest.raises(ValueError, match="counterparty"):
        org_account(ORG, AccountKind.BANK, counterparty_id=MEMBER)


# -- the guards under the statement-level design: raw SQL as the application's role ---------

_EVERY_ORGANIZATION = "SELECT set_config('vznos.org_ids', '*', true)"
_RAW_ENTRY = (
    "INSERT INTO ledger_entries (id, idempotency_key, body_hash, kind, occurred_at,"
    " recorded_at, booked_period, source_type, source_id, description)"
    " VALUES (:id, :key, 'x', 'adjustment', now(), now(), '2026-11-01', 't', 't', 't')"
)
_RAW_POSTINGS = (
    "INSERT INTO ledger_postings (entry_id, account_id, amount_kopecks, currency, occurred_at)"
    " VALUES (:e, :a, :m, 'RUB', now()), (:e, :b, :n, 'RUB', now())"
)


def _accounts(container: Container) -> list[uuid.UUID]:
    with transaction(container.sessions) as session:
        post_entry(session, draft("k-raw-setup", 35000), recorded_at=NOW)
    with container.engine.connect() as connection:
        return list(connection.scalars(text("SELECT id FROM ledger_accounts ORDER BY kind")))


def test_the_database_refuses_an_unbalanced_entry_from_the_application_role(
    container: Container,
) -> None:
    first, second = _accounts(container)
    entry_id = uuid.uuid4()
    with pytest.raises(DBAPIError, match="does not balance"), container.engine.begin() as conn:
        conn.execute(text("SET LOCAL ROLE vznos_app"))
        conn.execute(text(_EVERY_ORGANIZATION))  # as background work runs
        conn.execute(text(_RAW_ENTRY), {"id": entry_id, "key": "raw-1"})
        conn.execute(
            text(_RAW_POSTINGS), {"e": entry_id, "a": first, "m": 100, "b": second, "n": -99}
        )
    with container.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM ledger_entries")).scalar() == 1


def test_the_database_accepts_a_balanced_entry_from_the_application_role(
    container: Container,
) -> None:
    first, second = _accounts(container)
    entry_id = uuid.uuid4()
    with container.engine.begin() as conn:
        conn.execute(text("SET LOCAL ROLE vznos_app"))
        conn.execute(text(_EVERY_ORGANIZATION))  # as background work runs
        conn.execute(text(_RAW_ENTRY), {"id": entry_id, "key": "raw-2"})
        conn.execute(
            text(_RAW_POSTINGS), {"e": entry_id, "a": first, "m": 100, "b": second, "n": -100}
        )
    with container.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM ledger_entries")).scalar() == 2


def test_the_database_refuses_postings_added_to_an_entry_by_a_later_transaction(
    container: Container,
) -> None:
    first, second = _accounts(container)
    with container.engine.connect() as connection:
        entry_id = connection.execute(text("SELECT id FROM ledger_entries")).scalar_one()
    # Even a pair that balances: a committed entry is final.
    with (
        pytest.raises(DBAPIError, match="earlier transaction"),
        container.engine.begin() as conn,
    ):
        conn.execute(text("SET LOCAL ROLE vznos_app"))
        conn.execute(text(_EVERY_ORGANIZATION))  # as background work runs
        conn.execute(
            text(_RAW_POSTINGS), {"e": entry_id, "a": first, "m": 500, "b": second, "n": -500}
        )


def test_the_database_refuses_an_entry_claiming_another_transaction(
    container: Container,
) -> None:
    with (
        pytest.raises(DBAPIError, match="created_xact"),
        container.engine.begin() as conn,
    ):
        conn.execute(text("SET LOCAL ROLE vznos_app"))
        conn.execute(text(_EVERY_ORGANIZATION))  # as background work runs
        conn.execute(
            text(
                "INSERT INTO ledger_entries (id, idempotency_key, body_hash, kind, occurred_at,"
                " recorded_at, booked_period, source_type, source_id, description, created_xact)"
                " VALUES (:id, 'raw-3', 'x', 'adjustment', now(), now(), '2026-11-01', 't', 't',"
                " 't', 1)"
            ),
            {"id": uuid.uuid4()},
        )


def test_the_database_refuses_an_entry_without_postings_at_commit(container: Container) -> None:
    with (
        pytest.raises(DBAPIError, match="fewer than two postings"),
        container.engine.begin() as conn,
    ):
        conn.execute(text("SET LOCAL ROLE vznos_app"))
        conn.execute(text(_EVERY_ORGANIZATION))  # as background work runs
        conn.execute(text(_RAW_ENTRY), {"id": uuid.uuid4(), "key": "raw-4"})


def test_the_database_refuses_an_entry_with_a_single_posting(container: Container) -> None:
    first, _ = _accounts(container)
    entry_id = uuid.uuid4()
    with pytest.raises(DBAPIError, match="does not balance"), container.engine.begin() as conn:
        conn.execute(text(_RAW_ENTRY), {"id": entry_id, "key": "raw-5"})
        conn.execute(
            text(
                "INSERT INTO ledger_postings (entry_id, account_id, amount_kopecks, currency,"
                " occurred_at) VALUES (:e, :a, 100, 'RUB', now())"
            ),
            {"e": entry_id, "a": first},
        )


def test_the_database_refuses_postings_split_over_two_statements(container: Container) -> None:
    first, second = _accounts(container)
    entry_id = uuid.uuid4()
    with pytest.raises(DBAPIError, match="one statement"), container.engine.begin() as conn:
        conn.execute(text(_RAW_ENTRY), {"id": entry_id, "key": "raw-6"})
        for _ in range(2):  # each statement balances on its own
            conn.execute(
                text(_RAW_POSTINGS), {"e": entry_id, "a": first, "m": 7, "b": second, "n": -7}
            )


@pytest.mark.parametrize("unknown", ["entry", "account"])
def test_the_database_refuses_a_posting_to_an_unknown_entry_or_account(
    container: Container, unknown: str
) -> None:
    first, second = _accounts(container)
    entry_id = uuid.uuid4()
    with pytest.raises(DBAPIError, match="unknown"), container.engine.begin() as conn:
        conn.execute(text(_RAW_ENTRY), {"id": entry_id, "key": "raw-7"})
        conn.execute(
            text(_RAW_POSTINGS),
            {
                "e": uuid.uuid4() if unknown == "entry" else entry_id,
                "a": first,
                "m": 7,
                "b": uuid.uuid4() if unknown == "account" else second,
                "n": -7,
            },
        )


@pytest.mark.parametrize(
    "statement",
    ["UPDATE ledger_accounts SET currency = 'USD'", "DELETE FROM ledger_accounts"],
)
def test_the_database_refuses_to_change_or_remove_an_account(
    container: Container, statement: str
) -> None:
    _accounts(container)
    with pytest.raises(DBAPIError, match="append-only"), container.engine.begin() as connection:
        connection.execute(text(statement))
    with pytest.raises(DBAPIError, match="permission denied"), container.engine.begin() as conn:
        conn.execute(text("SET LOCAL ROLE vznos_app"))
        conn.execute(text(_EVERY_ORGANIZATION))  # as background work runs
        conn.execute(text(statement))


def test_the_guards_see_entries_a_scoped_caller_cannot(container: Container) -> None:
    """A treasurer's row-level security hides other organisations' entries from them; the
    balance check must still find the entry it is checking (it runs as the table owner)."""
    first, second = _accounts(container)
    entry_id = uuid.uuid4()
    with container.engine.begin() as conn:
        conn.execute(text("SET LOCAL ROLE vznos_app"))
        conn.execute(text("SELECT set_config('vznos.org_ids', :org, true)"), {"org": str(ORG)})
        conn.execute(text(_RAW_ENTRY), {"id": entry_id, "key": "raw-8"})  # no organisation
        conn.execute(text(_RAW_POSTINGS), {"e": entry_id, "a": first, "m": 9, "b": second, "n": -9})
    with container.engine.connect() as connection:
        assert (
            connection.execute(
                text("SELECT count(*) FROM ledger_postings WHERE entry_id = :e"), {"e": entry_id}
            ).scalar()
            == 2
        )
