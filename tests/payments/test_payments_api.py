"""The payments API over loopback HTTP: a member's card payments newest first, a page at a time,
filtered by status and time, with attempts, decline reasons and the masked card; 404 for
what the caller may not see."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.clock import ManualClock
from members.schemas import OrganizationCreate
from payments.charges.models import Charge
from payments.gateway.emulator import EmulatorServer
from tests.conftest import Subscribe, Workers, saved_card_token, with_idempotency_key
from vznos.container import Container

MONTHS = [date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1)]


@pytest.fixture
def history(
    container: Container,
    workers: Workers,
    emulator: EmulatorServer,
    clock: ManualClock,
    subscribe: Subscribe,
) -> list[str]:
    """November paid at checkout, December paid, January declined (for a reason not retried
    inside the month), February paid: the payment ids, oldest first."""
    subscribe("m-1")
    token = saved_card_token(container)
    emulator.state.script_outcomes(
        token, ["succeeded", "payment_method_limit_exceeded", "succeeded"]
    )
    for month in MONTHS:
        clock.advance(timedelta(days=1))
        assert container.billing.run(month).charges_created == 1
        workers.drain()
    with container.sessions() as session:
        ids = session.scalars(select(Charge.id).order_by(Charge.created_at)).all()
    return [str(i) for i in ids]


def test_pages_newest_first_with_cursor(client: httpx.Client, history: list[str]) -> None:
    first = client.get("/v1/payments", params={"member": "m-1", "limit": 3})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["has_more"] is True
    assert [p["id"] for p in body["data"]] == list(reversed(history))[:3]
    assert [p["months"] for p in body["data"]] == [["2027-02"], ["2027-01"], ["2026-12"]]

    rest = client.get(
        "/v1/payments",
        params={"member": "m-1", "limit": 3, "starting_after": body["data"][-1]["id"]},
    ).json()
    assert rest["has_more"] is False
    assert [p["id"] for p in rest["data"]] == [history[0]]
    assert rest["data"][0]["kind"] == "initial"


def test_a_payment_shows_amount_card_attempts_and_refunds(
    client: httpx.Client, history: list[str]
) -> None:
    december = client.get(f"/v1/payments/{history[1]}")
    assert december.status_code == 200, december.text
    paid = december.json()
    assert paid["status"] == "succeeded"
    assert paid["channel"] == "card"
    assert paid["kind"] == "recurring"
    assert paid["amount"] == {"value": "350.00", "currency": "RUB"}
    assert paid["months"] == ["2026-12"]
    assert paid["card"] == {"card_type": "MasterCard", "first6": "555555", "last4": "4444"}
    assert paid["decline_reason"] is None
    assert paid["gateway_payment_id"]
    assert paid["refunded"] == {"value": "0.00", "currency": "RUB"}
    assert paid["refundable"] == {"value": "350.00", "currency": "RUB"}
    [attempt] = paid["attempts"]
    assert attempt["number"] == 1
    assert attempt["status"] == "succeeded"
    assert attempt["submitted_at"] and attempt["settled_at"]
    # The card is masked by the acquirer; the full number never reaches the API.
    assert "5555555555554444" not in december.text

    first = client.get(f"/v1/payments/{history[0]}").json()
    assert first["card"]["last4"] == "4444"  # the card the first payment saved

    declined = client.get(f"/v1/payments/{history[2]}").json()
    assert declined["status"] == "failed"
    assert declined["decline_reason"] == "payment_method_limit_exceeded"
    assert declined["attempts"][0]["reason"] == "payment_method_limit_exceeded"
    assert declined["refundable"]["value"] == "0.00"


def test_filters_by_status_and_time(
    client: httpx.Client, history: list[str], container: Container
) -> None:
    failed = client.get("/v1/payments", params={"member": "m-1", "status": "failed"}).json()
    assert [p["id"] for p in failed["data"]] == [history[2]]

    december = client.get(f"/v1/payments/{history[1]}").json()
    january = client.get(f"/v1/payments/{history[2]}").json()
    window = client.get(
        "/v1/payments",
        params={
            "member": "m-1",
            "created_from": december["created_at"],
            "created_to": january["created_at"],
        },
    ).json()
    assert [p["id"] for p in window["data"]] == [history[1]]

    naive = client.get("/v1/payments", params={"member": "m-1", "created_from": "2026-12-01"})
    assert naive.status_code == 422
    assert naive.json()["field"] == "created_from"


def test_unknown_and_foreign_payments_are_404(
    client: httpx.Client, history: list[str], container: Container, api_server: Any
) -> None:
    unknown = client.get(f"/v1/payments/{uuid.uuid4()}")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert unknown.json()["field"] == "payment_id"

    container.organizations.create(
        OrganizationCreate(code="other", name="Other union", timezone="Europe/Moscow"), None
    )
    _, stranger = container.access.create_api_key("other", "stranger", ["admin"])
    with httpx.Client(
        base_url=api_server.url,
        headers={"Authorization": f"Bearer {stranger}"},
        event_hooks={"request": [with_idempotency_key]},
    ) as other:
        foreign = other.get(f"/v1/payments/{history[1]}")
        assert foreign.status_code == 404
        assert foreign.json()["field"] == "payment_id"
        assert other.get("/v1/payments", params={"member": "m-1"}).status_code == 404
        assert other.get(f"/v1/payments/{history[1]}/refunds").status_code == 404
        refused = other.post(f"/v1/payments/{history[1]}/refunds", json={"reason": "x"})
        assert refused.status_code == 404

    assert client.get("/v1/payments", params={"member": "nobody"}).status_code == 404
    stray = client.get(
        "/v1/payments", params={"member": "m-1", "starting_after": str(uuid.uuid4())}
    )
    assert stray.status_code == 404
    assert stray.json()["field"] == "starting_after"
    too_many = client.get("/v1/payments", params={"member": "m-1", "limit": 101})
    assert too_many.status_code == 422
    assert too_many.json()["field"] == "limit"
    assert client.get("/v1/payments/not-a-uuid").status_code == 422
