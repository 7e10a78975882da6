"""The treasurer's month of one organisation: what was accrued and collected, and how the money
was split with the level above."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from core.db import transaction
from ledger.service import (
    MemberPayment,
    Share,
    post_dues_accrual,
    post_member_payment,
    post_transfer_upward,
    set_shares,
)
from ledger.states import Channel
from members.schemas import MemberUpsert, OrganizationCreate
from members.service import Principal
from vznos.container import Container

MOSCOW = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
NOVEMBER = date(2026, 11, 1)


def msk(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=MOSCOW)


def add_member(container: Container, principal: Principal, external_id: str) -> uuid.UUID:
    member, _ = container.members.upsert(
        principal, external_id, MemberUpsert(organization_code="shop-1", full_name="Иван Петров")
    )
    return member.id


def pay(
    container: Container, member: uuid.UUID, org: uuid.UUID, channel: Channel, **amounts: int
) -> None:
    with transaction(container.sessions) as session:
        post_member_payment(
            session,
            MemberPayment(
                idempotency_key=f"pay:{member}:{channel}",
                member_id=member,
                organization_id=org,
                channel=channel,
                amount_kopecks=amounts["kopecks"],
                fee_kopecks=amounts.get("fee", 0),
                occurred_at=msk(2026, 11, 5 if channel == Channel.CARD else 10, 12),
                source_type="test",
                source_id=str(channel),
                description=f"{channel} payment",
            ),
            recorded_at=NOW,
        )


@pytest.fixture
def shop(container: Container, principal: Principal, api_key: str) -> uuid.UUID:
    """A primary organisation under ppo-1 that keeps 60 % of its dues and owes ppo-1 40 %;
    in November one member accrues 350 and pays 350 by card (10 of it the acquirer's fee) and
    200 cash, another accrues 350 and pays nothing, and 100 is sent up."""
    parent = principal.organization_id
    shop = container.organizations.create(
        OrganizationCreate(code="shop-1", name="Цеховая организация", parent_code="ppo-1"),
        principal,
    ).id
    principal = container.access.authenticate(api_key)  # now it sees shop-1 too
    payer = add_member(container, principal, "m-payer")
    debtor = add_member(container, principal, "m-debtor")
    with transaction(container.sessions) as session:
        set_shares(
            session,
            organization_id=shop,
            effective_from=NOVEMBER,
            shares=[Share(shop, 6000), Share(parent, 4000)],
            allowed={shop, parent},
            now=NOW,
        )
        for member in (payer, debtor):
            post_dues_accrual(
                session,
                member_id=member,
                organization_id=shop,
                period_month=NOVEMBER,
                amount_kopecks=35000,
                occurred_at=msk(2026, 11, 1),
                recorded_at=NOW,
                source_type="test",
                source_id=str(member),
            )
    pay(container, payer, shop, Channel.CARD, kopecks=35000, fee=1000)
    pay(container, payer, shop, Channel.CASH, kopecks=20000)
    with transaction(container.sessions) as session:
        post_transfer_upward(
            session,
            key="transfer:shop-1:1",
            organization_id=shop,
            upper_id=parent,
            amount_kopecks=10000,
            occurred_at=msk(2026, 11, 20, 12),
            timezone="Europe/Moscow",
            recorded_at=NOW,
            created_by="Казначей",
            description="Dues share for November",
        )
    return shop


def money(body: dict[str, object], name: str) -> str:
    amount = body[name]
    assert isinstance(amount, dict)
    assert amount["currency"] == "RUB"
    text = amount["value"]
    assert isinstance(text, str)
    return text


def test_the_month_of_a_primary_organisation(client: httpx.Client, shop: uuid.UUID) -> None:
    response = client.get(f"/v1/organizations/{shop}/summary", params={"period": "2026-11"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["organization_id"] == str(shop)
    assert body["period"] == "2026-11"
    assert money(body, "accrued") == "700.00"
    assert money(body, "collected") == "550.00"
    by_channel = body["collected_by_channel"]
    assert {channel: money(by_channel, channel) for channel in by_channel} == {
        "card": "350.00",
        "cash": "200.00",
        "payroll": "0.00",
        "bank_transfer": "0.00",
    }
    assert money(body, "fees") == "10.00"
    assert money(body, "shared_upward") == "220.00"  # 40 % of 350 + 40 % of 200
    assert money(body, "kept") == "330.00"
    assert money(body, "received_from_below") == "0.00"
    assert money(body, "transferred_upward") == "100.00"
    assert money(body, "owed_upward") == "120.00"
    assert body["members_in_arrears"] == 1
    assert money(body, "arrears") == "350.00"


def test_the_parent_receives_its_share_from_below(
    client: httpx.Client, shop: uuid.UUID, principal: Principal
) -> None:
    body = client.get(
        f"/v1/organizations/{principal.organization_id}/summary", params={"period": "2026-11"}
    ).json()

    assert money(body, "received_from_below") == "220.00"
    assert money(body, "collected") == "0.00"
    assert money(body, "shared_upward") == "0.00"
    assert money(body, "owed_upward") == "0.00"


def test_owed_upward_is_carried_into_later_months(client: httpx.Client, shop: uuid.UUID) -> None:
    body = client.get(f"/v1/organizations/{shop}/summary", params={"period": "2026-12"}).json()

    assert money(body, "collected") == "0.00"
    assert money(body, "owed_upward") == "120.00"
    assert body["members_in_arrears"] == 1


def test_an_organisation_outside_the_callers_tree_is_not_found(
    container: Container, client: httpx.Client
) -> None:
    other = container.organizations.create(
        OrganizationCreate(code="other-root", name="Другая организация"), None
    ).id

    for organization_id in (other, uuid.uuid4()):
        response = client.get(
            f"/v1/organizations/{organization_id}/summary", params={"period": "2026-11"}
        )
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["field"] == "organization_id"


@pytest.mark.parametrize(
    "params", [{}, {"period": "2026-13"}, {"period": "0000-01"}, {"period": "11.2026"}]
)
def test_the_period_is_required_and_checked(
    client: httpx.Client, principal: Principal, params: dict[str, str]
) -> None:
    response = client.get(f"/v1/organizations/{principal.organization_id}/summary", params=params)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == "period"
