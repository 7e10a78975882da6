"""Refunds over loopback HTTP with the emulator: full and partial, through to the reversing
ledger entry and the CRM event; over-refunds refused with nothing changed; a lost reply
resolved to exactly one refund at the gateway; `refund.succeeded` through the inbox."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from core.clock import ManualClock
from core.outbox import Event
from payments.charges.models import Charge
from payments.gateway.emulator import EmulatorServer, Fault
from payments.refunds.errors import RefundKeyReused
from payments.refunds.models import Refund
from payments.refunds.states import RefundStatus
from tests.conftest import SHOP_ID, Subscribe, Workers, saved_card_token
from vznos.checks import run_checks
from vznos.container import Container


@pytest.fixture
def paid(container: Container, subscribe: Subscribe) -> str:
    """A member whose first month (350.00) is paid by card: the payment's id."""
    subscribe("m-1")
    with container.sessions() as session:
        charge_id = session.scalar(select(Charge.id))
    return str(charge_id)


def balance(client: httpx.Client) -> str:
    value: str = client.get("/v1/members/m-1/account").json()["balance"]["value"]
    return value


def refund_entries(container: Container) -> int:
    with container.engine.connect() as connection:
        return int(
            connection.scalar(
                text("SELECT count(*) FROM ledger_entries WHERE source_type = 'refund'")
            )
            or 0
        )


def refunded_events(container: Container) -> list[dict[str, Any]]:
    with container.sessions() as session:
        return [
            e.payload
            for e in session.scalars(select(Event).where(Event.type == "payment.refunded"))
        ]


def snapshot(container: Container, emulator: EmulatorServer) -> tuple[int, int, int, int]:
    with container.sessions() as session:
        rows = session.scalar(select(func.count()).select_from(Refund)) or 0
        events = session.scalar(select(func.count()).select_from(Event)) or 0
    return rows, len(emulator.state.refunds()), refund_entries(container), events


def test_full_refund_reverses_the_payment_in_the_books(
    client: httpx.Client, container: Container, emulator: EmulatorServer, paid: str
) -> None:
    assert balance(client) == "0.00"
    response = client.post(f"/v1/payments/{paid}/refunds", json={"reason": "paid by payroll"})
    assert response.status_code == 201, response.text
    refund = response.json()
    assert refund["status"] == "succeeded"
    assert refund["amount"] == {"value": "350.00", "currency": "RUB"}
    assert refund["reason"] == "paid by payroll"
    assert refund["payment_id"] == paid

    [at_gateway] = emulator.state.refunds()
    assert at_gateway["id"] == refund["gateway_refund_id"]
    assert at_gateway["amount"]["value"] == "350.00"
    # The member's bank shows a neutral text; the reason stays with us.
    assert "payroll" not in at_gateway.get("description", "")

    assert balance(client) == "350.00"  # the month is owed again
    payment = client.get(f"/v1/payments/{paid}").json()
    assert payment["refunded"]["value"] == "350.00"
    assert payment["refundable"]["value"] == "0.00"
    assert refund_entries(container) == 1
    [event] = refunded_events(container)
    assert event["refund_id"] == refund["id"]
    assert event["refunded"] == {"value": "350.00", "currency": "RUB"}
    assert event["member_external_id"] == "m-1"
    assert run_checks(container) == []

    listed = client.get(f"/v1/payments/{paid}/refunds").json()["data"]
    assert [r["id"] for r in listed] == [refund["id"]]
    one = client.get(f"/v1/payments/{paid}/refunds/{refund['id']}")
    assert one.json() == refund

    again = client.post(f"/v1/payments/{paid}/refunds", json={"reason": "again"})
    assert again.status_code == 422
    assert again.json()["field"] == "amount"


def test_partial_refunds_then_over_refund_changes_nothing(
    client: httpx.Client, container: Container, emulator: EmulatorServer, paid: str
) -> None:
    first = client.post(
        f"/v1/payments/{paid}/refunds",
        json={"amount": {"value": "100.00", "currency": "RUB"}, "reason": "overpaid"},
    )
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "succeeded"
    assert balance(client) == "100.00"

    before = snapshot(container, emulator)
    too_much = client.post(
        f"/v1/payments/{paid}/refunds",
        json={"amount": {"value": "250.01", "currency": "RUB"}, "reason": "too much"},
    )
    assert too_much.status_code == 422, too_much.text
    problem = too_much.json()
    assert problem["field"] == "amount"
    assert problem["refundable"] == {"value": "250.00", "currency": "RUB"}
    assert snapshot(container, emulator) == before
    assert balance(client) == "100.00"

    rest = client.post(
        f"/v1/payments/{paid}/refunds",
        json={"amount": {"value": "250.00", "currency": "RUB"}, "reason": "the rest"},
    )
    assert rest.status_code == 201, rest.text
    assert balance(client) == "350.00"
    assert [r["amount"]["value"] for r in emulator.state.refunds()] == ["100.00", "250.00"]
    assert refund_entries(container) == 2
    assert [e["refunded_total"]["value"] for e in refunded_events(container)] == [
        "100.00",
        "350.00",
    ]
    assert run_checks(container) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "x", "amount": {"value": "0.00", "currency": "RUB"}}, "amount.value"),
        ({"reason": "x", "amount": {"value": "-1.00", "currency": "RUB"}}, "amount.value"),
        ({"reason": "x", "amount": {"value": "1.001", "currency": "RUB"}}, "amount.value"),
        ({"reason": "x", "amount": {"value": "1.00", "currency": "USD"}}, "amount.currency"),
        ({"reason": ""}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": "\x1c\x1d\x1e\x1f"}, "reason"),
        ({}, "reason"),
        ({"reason": "x", "extra": 1}, "extra"),
    ],
)
def test_bad_refund_requests_are_422_and_change_nothing(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    paid: str,
    body: dict[str, Any],
    field: str,
) -> None:
    before = snapshot(container, emulator)
    response = client.post(f"/v1/payments/{paid}/refunds", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert snapshot(container, emulator) == before


def test_a_declined_payment_cannot_be_refunded(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    workers: Workers,
    paid: str,
) -> None:
    from datetime import date

    token = saved_card_token(container)
    # A reason the retry policy does not retry inside the month: the charge fails at once.
    emulator.state.script_outcomes(token, ["payment_method_limit_exceeded"])
    container.billing.run(date(2026, 12, 1))
    workers.drain()
    with container.sessions() as session:
        declined = session.scalar(select(Charge.id).where(Charge.status == "failed"))
    before = snapshot(container, emulator)
    response = client.post(f"/v1/payments/{declined}/refunds", json={"reason": "x"})
    assert response.status_code == 409, response.text
    assert response.json()["field"] == "payment_id"
    assert snapshot(container, emulator) == before


def test_a_lost_reply_is_resolved_to_exactly_one_refund(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    workers: Workers,
    clock: ManualClock,
    paid: str,
) -> None:
    # The gateway makes the refund, then the reply is lost; no notification arrives either.
    emulator.state.set_notification_url(SHOP_ID, None)
    emulator.state.inject_fault(Fault("POST", "/v3/refunds", "error_after", times=1))
    response = client.post(
        f"/v1/payments/{paid}/refunds",
        json={"amount": {"value": "150.00", "currency": "RUB"}, "reason": "overpaid"},
    )
    assert response.status_code == 201, response.text
    refund = response.json()
    assert refund["status"] == "submitting"
    assert refund["gateway_refund_id"] is None
    assert len(emulator.state.refunds()) == 1
    assert refund_entries(container) == 0

    # Under way, it counts against what is left: no second refund can squeeze past it.
    over = client.post(
        f"/v1/payments/{paid}/refunds",
        json={"amount": {"value": "200.01", "currency": "RUB"}, "reason": "x"},
    )
    assert over.status_code == 422

    # The sweeper finds it and the resolver replays the same key: the gateway answers with
    # the refund it made, and no second one exists.
    clock.advance(timedelta(minutes=2))
    assert container.refunds.sweep() == 1
    workers.drain()
    settled = client.get(f"/v1/payments/{paid}/refunds/{refund['id']}").json()
    assert settled["status"] == "succeeded"
    [at_gateway] = emulator.state.refunds()
    assert settled["gateway_refund_id"] == at_gateway["id"]
    assert at_gateway["metadata"]["vznos_refund_id"] == refund["id"]
    assert refund_entries(container) == 1
    assert len(refunded_events(container)) == 1

    # Resolving again changes nothing: the books and the CRM heard of it once.
    container.refunds.resolve(uuid.UUID(refund["id"]))
    assert refund_entries(container) == 1
    assert len(refunded_events(container)) == 1
    assert balance(client) == "150.00"


def test_after_the_key_expired_the_refund_is_found_in_the_gateway_list(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    clock: ManualClock,
    paid: str,
) -> None:
    emulator.state.set_notification_url(SHOP_ID, None)
    emulator.state.inject_fault(Fault("POST", "/v3/refunds", "error_after", times=1))
    refund = client.post(f"/v1/payments/{paid}/refunds", json={"reason": "r"}).json()
    assert refund["status"] == "submitting"
    clock.advance(timedelta(hours=23, minutes=30))
    container.refunds.resolve(uuid.UUID(refund["id"]))
    assert client.get(f"/v1/payments/{paid}/refunds").json()["data"][0]["status"] == "succeeded"
    assert len(emulator.state.refunds()) == 1


def test_a_refund_the_gateway_never_made_is_canceled_and_frees_the_amount(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    clock: ManualClock,
    paid: str,
) -> None:
    emulator.state.inject_fault(Fault("POST", "/v3/refunds", "error_before", times=1))
    refund = client.post(f"/v1/payments/{paid}/refunds", json={"reason": "r"}).json()
    assert refund["status"] == "submitting"
    clock.advance(timedelta(hours=24))
    container.refunds.resolve(uuid.UUID(refund["id"]))
    gone = client.get(f"/v1/payments/{paid}/refunds/{refund['id']}").json()
    assert gone["status"] == "canceled"
    assert emulator.state.refunds() == []
    again = client.post(f"/v1/payments/{paid}/refunds", json={"reason": "r"})
    assert again.status_code == 201
    assert again.json()["status"] == "succeeded"


def test_refund_succeeded_notification_settles_it_through_the_inbox(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    workers: Workers,
    paid: str,
) -> None:
    emulator.state.inject_fault(Fault("POST", "/v3/refunds", "error_after", times=1))
    refund = client.post(f"/v1/payments/{paid}/refunds", json={"reason": "r"}).json()
    assert refund["status"] == "submitting"
    # The emulator notifies `refund.succeeded`; the inbox re-reads the refund and records it.
    emulator.state.flush_notifications()
    workers.drain()
    settled = client.get(f"/v1/payments/{paid}/refunds/{refund['id']}").json()
    assert settled["status"] == "succeeded"
    assert settled["gateway_refund_id"] == emulator.state.refunds()[0]["id"]
    assert refund_entries(container) == 1
    with container.engine.connect() as connection:
        inbox = connection.execute(
            text("SELECT event, processed_at FROM webhook_inbox WHERE event = 'refund.succeeded'")
        ).all()
    assert len(inbox) == 1 and inbox[0].processed_at is not None


def test_the_same_idempotency_key_returns_the_same_refund(
    client: httpx.Client, container: Container, emulator: EmulatorServer, paid: str
) -> None:
    body = {"amount": {"value": "10.00", "currency": "RUB"}, "reason": "r"}
    headers = {"Idempotency-Key": "crm-refund-0001-of-payment"}
    first = client.post(f"/v1/payments/{paid}/refunds", json=body, headers=headers)
    second = client.post(f"/v1/payments/{paid}/refunds", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert len(emulator.state.refunds()) == 1

    other = {**body, "amount": {"value": "20.00", "currency": "RUB"}}
    reused = client.post(f"/v1/payments/{paid}/refunds", json=other, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["field"] == "Idempotency-Key"
    assert len(emulator.state.refunds()) == 1

    # Past the HTTP layer's stored answer (e.g. after its retention), the refund row itself
    # refuses the key with the same type and status, and nothing is sent to the gateway.
    with pytest.raises(RefundKeyReused) as refused:
        container.refunds.refund_charge(
            uuid.UUID(paid),
            amount_kopecks=2_000,
            reason="r",
            requested_by="crm",
            client_key="crm-refund-0001-of-payment",
        )
    assert refused.value.status == 422
    assert refused.value.type_slug == "idempotency-key-reused"
    assert len(emulator.state.refunds()) == 1


def test_other_code_refunds_through_the_service(
    client: httpx.Client, container: Container, emulator: EmulatorServer, paid: str
) -> None:
    result = container.refunds.refund_charge(
        uuid.UUID(paid), amount_kopecks=5_000, reason="late payroll", requested_by="standby"
    )
    assert result.status == RefundStatus.SUCCEEDED
    assert result.amount_kopecks == 5_000
    assert [r["amount"]["value"] for r in emulator.state.refunds()] == ["50.00"]
    assert balance(client) == "50.00"


@pytest.mark.parametrize("outcome", ["succeeded", "canceled"])
def test_a_pending_refund_is_polled_until_the_gateway_settles_it(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    workers: Workers,
    clock: ManualClock,
    paid: str,
    outcome: str,
) -> None:
    emulator.state.script_refund_outcomes(["pending"])
    body = {"amount": {"value": "200.00", "currency": "RUB"}, "reason": "r"}
    refund = client.post(f"/v1/payments/{paid}/refunds", json=body).json()
    assert refund["status"] == "pending"
    assert refund_entries(container) == 0
    assert client.get(f"/v1/payments/{paid}").json()["refundable"]["value"] == "150.00"

    clock.advance(timedelta(minutes=2))
    container.refunds.sweep()
    workers.drain()
    assert client.get(f"/v1/payments/{paid}/refunds/{refund['id']}").json()["status"] == "pending"

    # YooKassa would notify a success but never a cancellation: polling must see both.
    emulator.state.set_notification_url(SHOP_ID, None)
    emulator.state.settle_refund(refund["gateway_refund_id"], outcome)
    clock.advance(timedelta(hours=1))
    assert container.refunds.sweep() == 1
    workers.drain()
    settled = client.get(f"/v1/payments/{paid}/refunds/{refund['id']}").json()
    assert settled["status"] == outcome
    payment = client.get(f"/v1/payments/{paid}").json()
    if outcome == "succeeded":
        assert refund_entries(container) == 1
        assert balance(client) == "200.00"
        assert payment["refundable"]["value"] == "150.00"
    else:
        assert settled["cancellation_reason"] == "general_decline"
        assert refund_entries(container) == 0
        assert refunded_events(container) == []
        assert balance(client) == "0.00"
        assert payment["refundable"]["value"] == "350.00"
    assert container.refunds.sweep() == 0  # nothing open is left to poll
