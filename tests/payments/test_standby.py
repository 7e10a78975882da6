"""Standby auto-pay end to end over loopback HTTP with the emulator: a card saved with no
payment, a payroll shortfall charged after the pre-charge notice, late payroll money, and bad
input that changes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from core.clock import ManualClock
from core.outbox import Event
from core.periods import parse_period
from payments.charges.models import Charge, ChargeAttempt
from payments.charges.service import card_token
from payments.gateway.emulator import EmulatorServer
from payments.gateway.emulator.faults import Fault
from payments.gateway.emulator.testing import complete_checkout
from payments.standby.models import CardBinding
from payments.subscriptions.models import PaymentMethod
from tests.conftest import Workers
from vznos.checks import run_checks
from vznos.container import Container

pytestmark = pytest.mark.e2e

MEMBER = "m-7"
STANDBY_BODY: dict[str, Any] = {
    "amount": {"value": "350.00", "currency": "RUB"},
    "consent": {"text_version": "standby-2026-11", "accepted_at": "2026-11-23T06:55:00Z"},
    "return_url": "https://crm.example.org/standby/thanks",
}
NOTICE = timedelta(days=3)  # VZNOS_PRECHARGE_NOTICE_DAYS for this module (the fixture below)
STANDBY_TABLES = (
    "subscriptions",
    "card_bindings",
    "payment_methods",
    "payroll_shortfalls",
    "charges",
    "charge_attempts",
    "ledger_entries",
    "events",
)


@pytest.fixture
def precharge_notice_days() -> int:
    """These tests are about the pre-charge notice of standby shortfall charges."""
    return NOTICE.days


def add_member(client: httpx.Client, external_id: str = MEMBER) -> None:
    answer = client.put(
        f"/v1/members/{external_id}",
        json={"organization_code": "ppo-1", "full_name": "Ольга Иванова"},
    )
    assert answer.status_code in (200, 201), answer.text


def events(container: Container, type_: str) -> list[dict[str, Any]]:
    with container.sessions() as session:
        return [
            dict(e.payload)
            for e in session.scalars(
                select(Event).where(Event.type == type_).order_by(Event.sequence)
            )
        ]


def counts(container: Container) -> dict[str, int]:
    with container.sessions() as session:
        return {
            t: int(session.scalar(text(f"SELECT count(*) FROM {t}")) or 0) for t in STANDBY_TABLES
        }


def enroll(
    client: httpx.Client, emulator: EmulatorServer, workers: Workers, external_id: str = MEMBER
) -> dict[str, Any]:
    """Enrol a member in standby and confirm the card on the emulator's page."""
    add_member(client, external_id)
    started = client.post(f"/v1/members/{external_id}/standby", json=STANDBY_BODY)
    assert started.status_code == 201, started.text
    subscription = started.json()
    assert subscription["status"] == "pending_confirmation"
    assert subscription["mode"] == "standby"
    assert subscription["billing_day"] is None
    url = subscription["confirmation_url"]
    assert url.startswith(emulator.url + "/checkout/payment-methods/")
    confirmed = complete_checkout(url)
    assert confirmed.status_code == 303
    assert confirmed.headers["location"] == STANDBY_BODY["return_url"]
    emulator.state.flush_notifications()
    workers.drain()
    saved = client.get(f"/v1/subscriptions/{subscription['id']}").json()
    assert saved["status"] == "standby", saved
    return dict(saved)


def record_payroll(
    client: httpx.Client, amount: str, reference: str, period: str = "2026-11"
) -> None:
    answer = client.post(
        f"/v1/members/{MEMBER}/payments",
        json={
            "channel": "payroll",
            "amount": {"value": amount, "currency": "RUB"},
            "occurred_on": "2026-11-20",
            "period": period,
            "reference": reference,
            "recorded_by": "Казначей",
        },
    )
    assert answer.status_code == 201, answer.text


def set_fixed_plan(client: httpx.Client) -> None:
    plan = client.put(
        "/v1/dues-plans/fixed-350",
        json={
            "organization_code": "ppo-1",
            "name": "Фиксированный взнос",
            "kind": "fixed",
            "amount": {"value": "350.00", "currency": "RUB"},
        },
    )
    assert plan.status_code in (200, 201), plan.text
    member_plan = client.put(
        f"/v1/members/{MEMBER}/dues-plan",
        json={"plan_code": "fixed-350", "effective_from": "2026-11"},
    )
    assert member_plan.status_code in (200, 201), member_plan.text


def test_enrollment_saves_the_card_without_charging_anything(
    client: httpx.Client, emulator: EmulatorServer, workers: Workers, container: Container
) -> None:
    saved = enroll(client, emulator, workers)

    assert saved["card"]["last4"] == "4444"
    assert saved["confirmation_url"] is None
    assert saved["next_charge_date"] is None
    assert saved["consent_version"] == "standby-2026-11"
    # The oracle: the gateway saved a card and made no payment at all.
    assert emulator.state.payments() == []
    creates = [r for r in emulator.state.requests() if r["method"] == "POST"]
    assert [r["path"] for r in creates] == ["/v3/payment_methods"]
    [standby_event] = events(container, "subscription.standby")
    assert standby_event["subscription_id"] == saved["id"]
    assert standby_event["previous_status"] == "pending_confirmation"
    # A second enrolment while one is live is refused.
    again = client.post(f"/v1/members/{MEMBER}/standby", json=STANDBY_BODY)
    assert again.status_code == 409
    assert again.json()["field"] == "external_id"
    # Monthly billing never charges a standby card.
    assert container.billing.run(parse_period("2026-12")).charges_created == 0
    assert emulator.state.payments() == []


def test_shortfall_is_charged_once_after_the_notice_and_late_payroll_is_carried_forward(
    client: httpx.Client,
    emulator: EmulatorServer,
    workers: Workers,
    container: Container,
    clock: ManualClock,
) -> None:
    saved = enroll(client, emulator, workers)
    set_fixed_plan(client)
    container.dues.accrue(parse_period("2026-11"))
    record_payroll(client, "200.00", "payroll-2026-11")

    body = {"period": "2026-11", "amount": {"value": "150.00", "currency": "RUB"}}
    recorded = client.post(f"/v1/members/{MEMBER}/payroll-shortfalls", json=body)
    assert recorded.status_code == 201, recorded.text
    shortfall = recorded.json()
    assert shortfall["status"] == "scheduled"
    assert shortfall["subscription_id"] == saved["id"]
    assert shortfall["charge_on"] == (clock.now() + NOTICE).date().isoformat()
    [upcoming] = events(container, "charge.upcoming")
    assert upcoming["shortfall_id"] == shortfall["id"]
    assert upcoming["amount"] == {"value": "150.00", "currency": "RUB"}
    assert upcoming["period"] == "2026-11"

    # The same request again changes nothing.
    before = counts(container)
    replay = client.post(f"/v1/members/{MEMBER}/payroll-shortfalls", json=body)
    assert replay.status_code == 200
    assert replay.json()["id"] == shortfall["id"]
    assert counts(container) == before

    # During the notice period the card is not touched.
    clock.advance(NOTICE - timedelta(minutes=1))
    assert container.shortfalls.charge_due() == 0
    assert emulator.state.payments() == []

    clock.advance(timedelta(minutes=2))
    assert container.shortfalls.charge_due() == 1
    assert container.shortfalls.charge_due() == 0
    workers.drain()
    emulator.state.flush_notifications()
    workers.drain()

    [payment] = emulator.state.payments()
    assert payment["status"] == "succeeded"
    assert payment["amount"] == {"value": "150.00", "currency": "RUB"}
    charged = client.get(f"/v1/payroll-shortfalls/{shortfall['id']}").json()
    assert charged["status"] == "charging"
    assert charged["charge"]["status"] == "succeeded"
    # Charged through the ordinary attempt machinery; the subscription stays in standby.
    subscription = client.get(f"/v1/subscriptions/{saved['id']}").json()
    assert subscription["status"] == "standby"
    assert payment["metadata"]["vznos_charge_id"] == charged["charge"]["id"]

    account = client.get(f"/v1/members/{MEMBER}/account").json()
    assert [
        (line["kind"], line["channel"], line["amount"]["value"]) for line in account["lines"]
    ] == [
        ("accrual", None, "350.00"),
        ("payment", "payroll", "-200.00"),
        ("payment", "card", "-150.00"),
    ]
    assert account["balance"]["value"] == "0.00"

    # A different amount for the same month is refused and changes nothing.
    before = counts(container)
    conflict = client.post(
        f"/v1/members/{MEMBER}/payroll-shortfalls",
        json={"period": "2026-11", "amount": {"value": "100.00", "currency": "RUB"}},
    )
    assert conflict.status_code == 409
    assert conflict.headers["content-type"].startswith("application/problem+json")
    assert conflict.json()["field"] == "amount"
    assert counts(container) == before

    # The employer's money arrives late for the month the card already paid.
    clock.advance(timedelta(days=5))
    record_payroll(client, "150.00", "payroll-2026-11-late")
    assert container.shortfalls.settle_late_payroll() == 1
    assert container.shortfalls.settle_late_payroll() == 0
    settled = client.get(f"/v1/payroll-shortfalls/{shortfall['id']}").json()
    assert settled["late_payroll"]["credit"] == {"value": "150.00", "currency": "RUB"}
    assert settled["late_payroll"]["rule"] == "carry_forward"
    assert settled["late_payroll"]["applied"] == "carry_forward"
    [late] = events(container, "payroll_shortfall.late_payroll")
    assert late["credit"]["value"] == "150.00"
    account = client.get(f"/v1/members/{MEMBER}/account").json()
    assert account["balance"]["value"] == "-150.00"  # the member's credit

    # The credit pays the next month.
    container.dues.accrue(parse_period("2026-12"))
    account = client.get(f"/v1/members/{MEMBER}/account").json()
    assert account["balance"]["value"] == "200.00"
    assert len(emulator.state.payments()) == 1
    with container.sessions() as session:
        months = session.execute(
            text(
                "SELECT period_month, accrued_kopecks, paid_kopecks FROM ledger_dues_months "
                "ORDER BY period_month"
            )
        ).all()
    assert [(str(m.period_month), m.accrued_kopecks, m.paid_kopecks) for m in months] == [
        ("2026-11-01", 35000, 35000),
        ("2026-12-01", 35000, 15000),
    ]
    assert run_checks(container) == []


def test_a_member_without_a_standby_card_is_reported_not_charged(
    client: httpx.Client, emulator: EmulatorServer, container: Container
) -> None:
    add_member(client)
    recorded = client.post(
        f"/v1/members/{MEMBER}/payroll-shortfalls",
        json={
            "period": "2026-10",
            "amount": {"value": "120.50", "currency": "RUB"},
            "recorded_by": "crm",
        },
    )
    assert recorded.status_code == 201, recorded.text
    shortfall = recorded.json()
    assert shortfall["status"] == "uncovered"
    assert shortfall["uncovered_reason"] == "no_standby_card"
    assert shortfall["charge"] is None
    [uncovered] = events(container, "member.shortfall_uncovered")
    assert uncovered["member_external_id"] == MEMBER
    assert uncovered["amount"] == {"value": "120.50", "currency": "RUB"}
    assert uncovered["reason"] == "no_standby_card"
    assert events(container, "charge.upcoming") == []
    listed = client.get(f"/v1/members/{MEMBER}/payroll-shortfalls").json()
    assert [s["id"] for s in listed] == [shortfall["id"]]
    assert container.shortfalls.charge_due() == 0
    assert emulator.state.payments() == []
    assert counts(container)["charges"] == 0


def test_standby_canceled_during_the_notice_period_charges_nothing(
    client: httpx.Client,
    emulator: EmulatorServer,
    workers: Workers,
    container: Container,
    clock: ManualClock,
) -> None:
    saved = enroll(client, emulator, workers)
    recorded = client.post(
        f"/v1/members/{MEMBER}/payroll-shortfalls",
        json={"period": "2026-11", "amount": {"value": "50.00", "currency": "RUB"}},
    )
    assert recorded.status_code == 201
    assert client.post(f"/v1/subscriptions/{saved['id']}/cancel").json()["status"] == "canceled"
    clock.advance(NOTICE + timedelta(minutes=1))
    assert container.shortfalls.charge_due() == 0
    after = client.get(f"/v1/payroll-shortfalls/{recorded.json()['id']}").json()
    assert after["status"] == "uncovered"
    assert after["uncovered_reason"] == "standby_ended"
    assert [e["reason"] for e in events(container, "member.shortfall_uncovered")] == [
        "standby_ended"
    ]
    assert emulator.state.payments() == []


def test_a_lost_reply_to_the_card_binding_is_resolved_without_a_second_one(
    client: httpx.Client,
    emulator: EmulatorServer,
    workers: Workers,
    container: Container,
    clock: ManualClock,
) -> None:
    add_member(client)
    emulator.state.inject_fault(Fault("POST", "/v3/payment_methods", "drop_after"))
    started = client.post(f"/v1/members/{MEMBER}/standby", json=STANDBY_BODY)
    assert started.status_code == 201, started.text
    assert started.json()["confirmation_url"] is None
    with container.sessions() as session:
        binding = session.scalars(select(CardBinding)).one()
        assert binding.status == "submitting"
        key = str(binding.id)

    clock.advance(timedelta(minutes=2))
    assert container.standby.sweep() == 1
    workers.drain()
    pending = client.get(f"/v1/subscriptions/{started.json()['id']}").json()
    url = pending["confirmation_url"]
    assert url
    creates = [r for r in emulator.state.requests() if r["path"] == "/v3/payment_methods"]
    assert [r["idempotence_key"] for r in creates] == [key, key]

    assert complete_checkout(url).status_code == 303
    emulator.state.flush_notifications()
    workers.drain()
    assert client.get(f"/v1/subscriptions/{started.json()['id']}").json()["status"] == "standby"
    with container.sessions() as session:
        assert session.scalar(select(func.count()).select_from(CardBinding)) == 1
    assert emulator.state.payments() == []


def test_a_declined_card_binding_ends_the_standby_subscription(
    client: httpx.Client, emulator: EmulatorServer, workers: Workers, container: Container
) -> None:
    add_member(client)
    started = client.post(f"/v1/members/{MEMBER}/standby", json=STANDBY_BODY).json()
    declined = complete_checkout(started["confirmation_url"], card_number="5555555555554600")
    assert declined.status_code in (200, 303, 402, 409)
    # No notification comes for an inactive method: the sweeper asks the gateway.
    container.standby.resolve(_binding_id(container))
    after = client.get(f"/v1/subscriptions/{started['id']}").json()
    assert after["status"] == "canceled"
    assert after["cancel_cause"] == "card_not_saved"
    assert after["card"] is None


def _binding_id(container: Container) -> Any:
    with container.sessions() as session:
        return session.scalars(select(CardBinding.id)).one()


def test_the_late_payroll_rule_is_set_per_organization(
    client: httpx.Client, container: Container
) -> None:
    default = client.get("/v1/organizations/ppo-1/standby-policy")
    assert default.status_code == 200
    assert default.json() == {
        "organization_code": "ppo-1",
        "late_payroll_rule": "carry_forward",
        "inherited": True,
    }
    changed = client.put(
        "/v1/organizations/ppo-1/standby-policy", json={"late_payroll_rule": "refund"}
    )
    assert changed.status_code == 200
    assert changed.json()["late_payroll_rule"] == "refund"
    assert changed.json()["inherited"] is False
    bad = client.put(
        "/v1/organizations/ppo-1/standby-policy", json={"late_payroll_rule": "keep_it"}
    )
    assert bad.status_code == 422
    assert bad.json()["field"] == "late_payroll_rule"
    unknown = client.get("/v1/organizations/nope/standby-policy")
    assert unknown.status_code == 404
    assert client.get("/v1/organizations/ppo-1/standby-policy").json()["late_payroll_rule"] == (
        "refund"
    )


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        (
            "/v1/members/nobody/payroll-shortfalls",
            {"period": "2026-11", "amount": {"value": "10.00", "currency": "RUB"}},
            404,
            "external_id",
        ),
        (
            f"/v1/members/{MEMBER}/payroll-shortfalls",
            {"period": "2026-13", "amount": {"value": "10.00", "currency": "RUB"}},
            422,
            "period",
        ),
        (
            f"/v1/members/{MEMBER}/payroll-shortfalls",
            {"period": "11.2026", "amount": {"value": "10.00", "currency": "RUB"}},
            422,
            "period",
        ),
        (  # schemathesis at 200 examples: a year before 1000 was a 500
            f"/v1/members/{MEMBER}/payroll-shortfalls",
            {"period": "0820-12", "amount": {"value": "9.00", "currency": "RUB"}},
            422,
            "period",
        ),
        (  # non-ASCII digits (\d would take them)
            f"/v1/members/{MEMBER}/payroll-shortfalls",
            {"period": "２０２６-11", "amount": {"value": "9.00", "currency": "RUB"}},
            422,
            "period",
        ),
        (
            f"/v1/members/{MEMBER}/payroll-shortfalls",
            {"period": "2027-01", "amount": {"value": "10.00", "currency": "RUB"}},
            422,
            "period",
        ),
        (
            f"/v1/members/{MEMBER}/payroll-shortfalls",
            {"period": "2026-11", "amount": {"value": "0.00", "currency": "RUB"}},
            422,
            "amount.value",
        ),
        (
            f"/v1/members/{MEMBER}/payroll-shortfalls",
            {"period": "2026-11", "amount": {"value": "-5.00", "currency": "RUB"}},
            422,
            "amount.value",
        ),
        (
            f"/v1/members/{MEMBER}/payroll-shortfalls",
            {"period": "2026-11"},
            422,
            "amount",
        ),
        (
            f"/v1/members/{MEMBER}/standby",
            {k: v for k, v in STANDBY_BODY.items() if k != "consent"},
            422,
            "consent",
        ),
        (
            f"/v1/members/{MEMBER}/standby",
            {
                **STANDBY_BODY,
                "consent": {"text_version": "", "accepted_at": "2026-11-23T06:55:00Z"},
            },
            422,
            "consent.text_version",
        ),
        (
            f"/v1/members/{MEMBER}/standby",
            {**STANDBY_BODY, "consent": {"text_version": "v1", "accepted_at": "2026-11-23T06:55"}},
            422,
            "consent.accepted_at",
        ),
        (
            f"/v1/members/{MEMBER}/standby",
            {**STANDBY_BODY, "amount": {"value": "0.50", "currency": "RUB"}},
            422,
            "amount.value",
        ),
        ("/v1/members/nobody/standby", STANDBY_BODY, 404, "external_id"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    client: httpx.Client,
    emulator: EmulatorServer,
    container: Container,
    path: str,
    body: dict[str, Any],
    status: int,
    field: str,
) -> None:
    add_member(client)
    before = counts(container)
    answer = client.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["field"] == field, answer.json()
    assert counts(container) == before
    assert emulator.state.requests() == []


def test_a_shortfall_above_the_consented_amount_is_refused(
    client: httpx.Client, emulator: EmulatorServer, workers: Workers, container: Container
) -> None:
    enroll(client, emulator, workers)
    before = counts(container)
    answer = client.post(
        f"/v1/members/{MEMBER}/payroll-shortfalls",
        json={"period": "2026-11", "amount": {"value": "350.01", "currency": "RUB"}},
    )
    assert answer.status_code == 422
    assert answer.json()["field"] == "amount.value"
    assert counts(container) == before


def test_late_payroll_is_refunded_to_the_card_when_the_organization_says_so(
    client: httpx.Client,
    emulator: EmulatorServer,
    workers: Workers,
    container: Container,
    clock: ManualClock,
) -> None:
    assert (
        client.put(
            "/v1/organizations/ppo-1/standby-policy", json={"late_payroll_rule": "refund"}
        ).status_code
        == 200
    )
    enroll(client, emulator, workers)
    set_fixed_plan(client)
    container.dues.accrue(parse_period("2026-11"))
    record_payroll(client, "250.00", "payroll-2026-11")
    shortfall = client.post(
        f"/v1/members/{MEMBER}/payroll-shortfalls",
        json={"period": "2026-11", "amount": {"value": "100.00", "currency": "RUB"}},
    ).json()
    clock.advance(NOTICE + timedelta(minutes=1))
    assert container.shortfalls.charge_due() == 1
    workers.drain()
    [payment] = emulator.state.payments()
    assert payment["status"] == "succeeded"

    clock.advance(timedelta(days=2))
    record_payroll(client, "100.00", "payroll-2026-11-late")
    assert container.shortfalls.settle_late_payroll() == 1
    assert container.shortfalls.settle_late_payroll() == 0
    emulator.state.flush_notifications()
    workers.drain()
    settled = client.get(f"/v1/payroll-shortfalls/{shortfall['id']}").json()
    assert settled["late_payroll"]["rule"] == "refund"
    assert settled["late_payroll"]["applied"] == "refund"
    assert settled["late_payroll"]["refund_id"]
    # Exactly one refund of exactly the credit, and the member's account is square again.
    [refund] = emulator.state.refunds()
    assert refund["amount"] == {"value": "100.00", "currency": "RUB"}
    assert refund["status"] == "succeeded"
    container.refunds.sweep()
    workers.drain()
    account = client.get(f"/v1/members/{MEMBER}/account").json()
    assert account["balance"]["value"] == "0.00", account
    assert run_checks(container) == []


def test_a_declined_shortfall_charge_is_retried_by_the_retry_policy(
    client: httpx.Client,
    emulator: EmulatorServer,
    workers: Workers,
    container: Container,
    clock: ManualClock,
) -> None:
    saved = enroll(client, emulator, workers)
    with container.sessions() as session:
        method = session.scalars(select(PaymentMethod)).one()
        token = card_token(session, container.vault, method)
    emulator.state.script_outcomes(token, ["insufficient_funds", "succeeded"])
    shortfall = client.post(
        f"/v1/members/{MEMBER}/payroll-shortfalls",
        json={"period": "2026-11", "amount": {"value": "150.00", "currency": "RUB"}},
    ).json()
    clock.advance(NOTICE + timedelta(minutes=1))
    assert container.shortfalls.charge_due() == 1
    workers.drain()

    # Declined for a reason that may pass later: the charge stays open with a retry on the
    # policy's schedule (+1 day at 10:00 Moscow time), and standby stays standby.
    [declined] = emulator.state.payments()
    assert declined["status"] == "canceled"
    with container.sessions() as session:
        charge = session.scalars(select(Charge)).one()
        [first] = session.scalars(select(ChargeAttempt)).all()
    assert (charge.kind, charge.status) == ("shortfall", "pending")
    assert (first.cancellation_reason, first.decision) == ("insufficient_funds", "retry")
    assert charge.next_attempt_at is not None
    assert charge.next_attempt_at > clock.now()
    assert client.get(f"/v1/subscriptions/{saved['id']}").json()["status"] == "standby"
    assert events(container, "payment.failed") == []

    assert container.billing.create_due_attempts() == 0  # not due yet
    clock.set(charge.next_attempt_at)
    assert container.billing.create_due_attempts() == 1
    workers.drain()
    emulator.state.flush_notifications()
    workers.drain()

    # A new key for the retry; exactly one payment succeeded, of exactly the shortfall.
    payments = emulator.state.payments()
    assert [p["status"] for p in payments] == ["canceled", "succeeded"]
    assert payments[1]["amount"] == {"value": "150.00", "currency": "RUB"}
    with container.sessions() as session:
        attempts = list(session.scalars(select(ChargeAttempt).order_by(ChargeAttempt.attempt_no)))
    assert [p["idempotence_key"] for p in payments] == [str(a.id) for a in attempts]
    charged = client.get(f"/v1/payroll-shortfalls/{shortfall['id']}").json()
    assert charged["charge"]["status"] == "succeeded"
    assert client.get(f"/v1/subscriptions/{saved['id']}").json()["status"] == "standby"
    assert run_checks(container) == []
