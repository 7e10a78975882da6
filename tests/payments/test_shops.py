"""One shop per organisation, over loopback HTTP with a multi-shop emulator: members are charged
at the shop of their organisation or its nearest ancestor, cards stay at the shop that saved
them, refunds go where the payment was made, and the secret is never shown or logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from datetime import date
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import select, text

from core.serving import BackgroundServer
from members.models import Member
from members.schemas import OrganizationCreate
from payments.charges.models import Charge
from payments.gateway.emulator import EmulatorServer, Fault
from payments.shops.models import GatewayShop
from tests.conftest import SHOP_ID, Subscribe, Workers
from vznos.container import Container

SHOP_A, SECRET_A = "200001", "test_Secret-of-shop-A-4f9d1c7e"
SHOP_B, SECRET_B = "200002", "test_Secret-of-shop-B-8a2b6e30"
Logs = list[MutableMapping[str, Any]]


@pytest.fixture
def logs() -> Iterator[Logs]:
    with structlog.testing.capture_logs() as captured:
        yield captured


@pytest.fixture
def shops(
    container: Container, emulator: EmulatorServer, api_server: BackgroundServer, org_code: str
) -> None:
    """Two more shops at the emulator, each notifying this service, and organisations a (with
    a child a-1) and b under the caller's organisation."""
    for shop_id, secret in ((SHOP_A, SECRET_A), (SHOP_B, SECRET_B)):
        emulator.state.add_shop(shop_id, secret)
        emulator.state.set_notification_url(shop_id, api_server.url + "/webhooks/yookassa")
    for code, parent in (("a", org_code), ("a-1", "a"), ("b", org_code)):
        container.organizations.create(
            OrganizationCreate(code=code, name=code, parent_code=parent), None
        )


def put_shop(client: httpx.Client, code: str, shop_id: str, secret: str) -> httpx.Response:
    return client.put(
        f"/v1/organizations/{code}/shop", json={"shop_id": shop_id, "secret_key": secret}
    )


def shops_of_payments(emulator: EmulatorServer) -> dict[str, list[str]]:
    """Which shop each emulator payment was made at, by its description's month."""
    made: dict[str, list[str]] = {}
    for shop_id in (SHOP_ID, SHOP_A, SHOP_B):
        for payment in emulator.state.payments(shop_id):
            made.setdefault(shop_id, []).append(str(payment["id"]))
    return made


def charged_at(container: Container, emulator: EmulatorServer, external_id: str) -> list[str]:
    """The shops a member's gateway payments were made at, oldest first."""
    with container.engine.connect() as connection:
        payment_ids = connection.scalars(
            text(
                "SELECT a.gateway_payment_id FROM charge_attempts a"
                " JOIN charges c ON c.id = a.charge_id JOIN members m ON m.id = c.member_id"
                " WHERE m.external_id = :e ORDER BY a.created_at"
            ),
            {"e": external_id},
        ).all()
    where = {pid: shop for shop, pids in shops_of_payments(emulator).items() for pid in pids}
    return [where[pid] for pid in payment_ids]


def test_each_organisation_is_charged_at_its_own_shop(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    workers: Workers,
    subscribe: Subscribe,
    shops: None,
) -> None:
    assert put_shop(client, "a", SHOP_A, SECRET_A).status_code == 200
    assert put_shop(client, "b", SHOP_B, SECRET_B).status_code == 200

    subscribe("m-a", org_code="a")
    subscribe("m-b", org_code="b")
    subscribe("m-root", org_code="ppo-1")
    assert container.billing.run(date(2026, 12, 1)).charges_created == 3
    workers.drain()

    assert charged_at(container, emulator, "m-a") == [SHOP_A, SHOP_A]
    assert charged_at(container, emulator, "m-b") == [SHOP_B, SHOP_B]
    assert charged_at(container, emulator, "m-root") == [SHOP_ID, SHOP_ID]
    assert all(p["status"] == "succeeded" for p in emulator.state.payments(SHOP_A))

    # A refund goes to the shop that took the payment.
    with container.sessions() as session:
        charge_id = session.scalar(
            select(Charge.id)
            .join(Member, Member.id == Charge.member_id)
            .where(Member.external_id == "m-b")
            .limit(1)
        )
    refund = client.post(f"/v1/payments/{charge_id}/refunds", json={"reason": "r"})
    assert refund.status_code == 201, refund.text
    assert refund.json()["status"] == "succeeded"
    assert len(emulator.state.refunds(SHOP_B)) == 1
    assert emulator.state.refunds(SHOP_A) == emulator.state.refunds(SHOP_ID) == []


def test_nearest_ancestor_shop_and_falling_back(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    workers: Workers,
    subscribe: Subscribe,
    shops: None,
) -> None:
    assert put_shop(client, "a", SHOP_A, SECRET_A).status_code == 200
    child = client.get("/v1/organizations/a-1/shop").json()
    assert child["shop"] is None
    assert child["effective"] == {
        "shop_id": SHOP_A,
        "source": "inherited",
        "organization_code": "a",
    }
    own = client.get("/v1/organizations/a/shop").json()
    assert own["shop"] == {"shop_id": SHOP_A, "secret_set": True}
    assert own["effective"]["source"] == "own"

    subscribe("m-child", org_code="a-1")
    assert charged_at(container, emulator, "m-child") == [SHOP_A]

    # The child gets a shop of its own: nearest wins for new members.
    assert put_shop(client, "a-1", SHOP_B, SECRET_B).status_code == 200
    subscribe("m-child-2", org_code="a-1")
    assert charged_at(container, emulator, "m-child-2") == [SHOP_B]

    # Both fall back; the saved cards stay where they were saved (a token only works there).
    assert client.delete("/v1/organizations/a-1/shop").status_code == 204
    assert client.delete("/v1/organizations/a/shop").status_code == 204
    assert client.delete("/v1/organizations/a/shop").status_code == 204  # idempotent
    fallen = client.get("/v1/organizations/a-1/shop").json()
    assert fallen["effective"] == {
        "shop_id": SHOP_ID,
        "source": "default",
        "organization_code": None,
    }
    subscribe("m-child-3", org_code="a-1")
    assert charged_at(container, emulator, "m-child-3") == [SHOP_ID]
    assert container.billing.run(date(2026, 12, 1)).charges_created == 3
    workers.drain()
    assert charged_at(container, emulator, "m-child") == [SHOP_A, SHOP_A]
    assert charged_at(container, emulator, "m-child-2") == [SHOP_B, SHOP_B]
    assert charged_at(container, emulator, "m-child-3") == [SHOP_ID, SHOP_ID]


def test_a_changed_secret_is_used_from_the_next_call(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    subscribe: Subscribe,
    shops: None,
) -> None:
    emulator.state.add_shop(SHOP_A, "stale-secret")
    assert put_shop(client, "a", SHOP_A, "stale-secret").status_code == 200
    # The directory built a client with the stale secret; the shop then rotates its key.
    stale = container.gateways.for_shop(SHOP_A)
    assert container.gateways.for_shop(SHOP_A) is stale  # cached
    emulator.state.add_shop(SHOP_A, "rotated-secret-1")
    assert put_shop(client, "a", SHOP_A, "rotated-secret-1").status_code == 200
    assert container.gateways.for_shop(SHOP_A) is not stale
    subscribe("m-a", org_code="a")
    assert charged_at(container, emulator, "m-a") == [SHOP_A]

    # Another process changed it (only the row moved): the version tells this one.
    emulator.state.add_shop(SHOP_A, "rotated-secret-2")
    other_process = container.gateways.for_shop(SHOP_A)
    with container.engine.begin() as connection:
        connection.execute(
            text("UPDATE gateway_shops SET version = version + 1 WHERE shop_id = :s"),
            {"s": SHOP_A},
        )
    assert container.gateways.for_shop(SHOP_A) is not other_process


def test_the_secret_is_never_returned_logged_or_stored_in_clear(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    subscribe: Subscribe,
    shops: None,
    logs: Logs,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = [
        put_shop(client, "a", SHOP_A, SECRET_A),
        client.get("/v1/organizations/a/shop"),
        client.get("/v1/organizations/a-1/shop"),
        # Refused requests must not echo it either.
        client.put(
            "/v1/organizations/a/shop",
            json={"shop_id": "bad id!", "secret_key": SECRET_A},
        ),
        client.put(
            "/v1/organizations/a/shop",
            json={"shop_id": SHOP_A, "secret_key": SECRET_A, "extra": SECRET_A},
        ),
        client.put("/v1/organizations/a/shop", json={"shop_id": SHOP_A, "secret_key": 7}),
        put_shop(client, "b", SHOP_A, SECRET_A),
        put_shop(client, "nowhere", SHOP_B, SECRET_A),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 422, 422, 422, 409, 404]
    subscribe("m-a", org_code="a")
    assert client.get("/openapi.json").status_code == 200
    for answer in answers:
        assert SECRET_A not in answer.text
    with container.sessions() as session:
        shop = session.get(GatewayShop, SHOP_A)
        assert shop is not None
        assert SECRET_A not in shop.secret_sealed
        assert shop.secret_sealed.startswith("vzk1.")
    assert SECRET_A not in repr(logs)
    assert SECRET_A not in caplog.text
    captured = capsys.readouterr()
    assert SECRET_A not in captured.out + captured.err
    assert charged_at(container, emulator, "m-a") == [SHOP_A]


def test_a_shop_cannot_be_taken_from_another_organisation(
    client: httpx.Client, container: Container, shops: None
) -> None:
    assert put_shop(client, "a", SHOP_A, SECRET_A).status_code == 200
    taken = put_shop(client, "b", SHOP_A, "hijack")
    assert taken.status_code == 409
    assert taken.json()["field"] == "shop_id"
    assert client.get("/v1/organizations/b/shop").json()["shop"] is None
    default = put_shop(client, "b", SHOP_ID, "x")
    assert default.status_code == 409
    assert default.json()["field"] == "shop_id"
    with container.sessions() as session:
        shop = session.get(GatewayShop, SHOP_A)
        assert shop is not None and shop.version == 1


def test_credentials_the_gateway_refuses_change_nothing(
    client: httpx.Client, container: Container, emulator: EmulatorServer, shops: None
) -> None:
    wrong = put_shop(client, "a", SHOP_A, "not-the-secret-of-A")
    assert wrong.status_code == 422, wrong.text
    assert wrong.json()["field"] == "secret_key"
    assert "not-the-secret-of-A" not in wrong.text
    unknown = put_shop(client, "a", "999999", SECRET_A)
    assert unknown.status_code == 422
    assert client.get("/v1/organizations/a/shop").json()["shop"] is None
    with container.sessions() as session:
        assert session.scalar(select(GatewayShop.shop_id)) is None

    emulator.state.inject_fault(Fault("GET", "/v3/me", "error_before", times=1))
    unreachable = put_shop(client, "a", SHOP_A, SECRET_A)
    assert unreachable.status_code == 503, unreachable.text
    assert client.get("/v1/organizations/a/shop").json()["shop"] is None
    assert put_shop(client, "a", SHOP_A, SECRET_A).status_code == 200
