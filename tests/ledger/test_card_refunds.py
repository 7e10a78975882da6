"""A refunded card payment in the books: the member owes again, the acquirer's clearing account
gives the money back, and the higher levels return their share; refunded in any parts, the
shares come back to the kopeck, and every invariant of the books holds."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import text

from core.db import transaction
from ledger.service import (
    Share,
    post_card_payment,
    post_card_refund,
    post_dues_accrual,
    set_shares,
)
from members.schemas import MemberUpsert
from tests.ledger.conftest import Tree
from vznos.checks import run_checks
from vznos.container import Container

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
NOVEMBER = date(2026, 11, 1)
PAID = 35_000


def balances(container: Container, owner: uuid.UUID) -> dict[str, int]:
    with container.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT a.kind, sum(b.balance_kopecks) AS total FROM ledger_accounts a"
                " JOIN ledger_balances b ON b.account_id = a.id WHERE a.owner_id = :o"
                " GROUP BY a.kind"
            ),
            {"o": owner},
        ).all()
    return {row.kind: int(row.total) for row in rows}


@pytest.fixture
def paid_member(container: Container, tree: Tree) -> uuid.UUID:
    """A member of ppo-1, which owes 30 % of its dues to the territorial organisation and
    12.34 % to the federation, accrued and paid 350.00 by card (fee 10.00)."""
    principal = container.access.authenticate(
        container.access.create_api_key("fed", "t", ["admin"])[1]
    )
    member, _ = container.members.upsert(
        principal, "m-1", MemberUpsert(organization_code="ppo-1", full_name="Иван Петров")
    )
    with transaction(container.sessions) as session:
        set_shares(
            session,
            organization_id=tree.primary,
            effective_from=NOVEMBER,
            shares=[
                Share(tree.primary, 5766),
                Share(tree.territorial, 3000),
                Share(tree.federation, 1234),
            ],
            allowed={tree.primary, tree.territorial, tree.federation},
            now=NOW,
        )
        post_dues_accrual(
            session,
            member_id=member.id,
            organization_id=tree.primary,
            period_month=NOVEMBER,
            amount_kopecks=PAID,
            occurred_at=NOW,
            recorded_at=NOW,
            source_type="test",
            source_id="accrual",
        )
        post_card_payment(
            session,
            member_id=member.id,
            organization_id=tree.primary,
            gateway_payment_id="gw-pay-1",
            period_month=NOVEMBER,
            amount_kopecks=PAID,
            income_kopecks=PAID - 1_000,
            occurred_at=NOW,
            recorded_at=NOW,
            source_id="charge-1",
        )
    return member.id


def refund(container: Container, member: uuid.UUID, tree: Tree, kopecks: int, before: int) -> None:
    with transaction(container.sessions) as session:
        post_card_refund(
            session,
            refund_id=str(uuid.uuid4()),
            gateway_payment_id="gw-pay-1",
            member_id=member,
            organization_id=tree.primary,
            amount_kopecks=kopecks,
            occurred_at=NOW,
            recorded_at=NOW,
            refunded_before_kopecks=before,
        )


def test_a_full_refund_undoes_the_payment_and_its_split(
    container: Container, tree: Tree, paid_member: uuid.UUID
) -> None:
    upper = balances(container, tree.territorial)
    assert upper["receivable_from_below"] == 10_500
    refund(container, paid_member, tree, PAID, 0)

    assert balances(container, paid_member)["member_dues_receivable"] == PAID  # owes again
    primary = balances(container, tree.primary)
    assert primary["acquirer_clearing"] == -1_000  # the acquirer keeps its fee
    assert primary["acquirer_fees"] == 1_000
    assert primary["payable_upward"] == 0
    assert balances(container, tree.territorial)["receivable_from_below"] == 0
    assert balances(container, tree.federation)["receivable_from_below"] == 0
    assert run_checks(container) == []


@pytest.mark.parametrize(
    "parts",
    [
        [1, PAID - 1],
        [10_000, 25_000],
        [3_333, 3_333, 3_333, PAID - 9_999],
        [1, 1, 1, 1, 1, PAID - 5],
    ],
    ids=["kopeck-then-rest", "two", "thirds", "five-kopecks-then-rest"],
)
def test_refunded_in_any_parts_the_shares_come_back_to_the_kopeck(
    container: Container, tree: Tree, paid_member: uuid.UUID, parts: list[int]
) -> None:
    before = 0
    for part in parts:
        refund(container, paid_member, tree, part, before)
        before += part
        returned = 10_500 - balances(container, tree.territorial)["receivable_from_below"]
        # Each level gives back its share of what was refunded so far, to within a kopeck.
        assert abs(returned - before * 3_000 // 10_000) <= 1
    assert balances(container, tree.primary)["payable_upward"] == 0
    assert balances(container, tree.territorial)["receivable_from_below"] == 0
    assert balances(container, tree.federation)["receivable_from_below"] == 0
    assert balances(container, paid_member)["member_dues_receivable"] == PAID
    assert run_checks(container) == []
