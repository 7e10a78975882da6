"""Money is never charged twice and never lost: billing run twice, a notification delivered
three times, a worker that dies between the gateway's answer and our commit, a gateway that
answers 500 after charging. In every case: one payment at the gateway, one ledger entry."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, timedelta

import httpx
import pytest
from sqlalchemy import func, select, text

from core.clock import ManualClock
from core.faults import FaultPoints, SimulatedCrash
from members.schemas import MemberUpsert
from members.service import Principal
from payments.charges.models import Charge, ChargeAttempt
from payments.charges.states import AttemptStatus
from payments.gateway.emulator import EmulatorServer, Fault
from payments.gateway.emulator.testing import complete_checkout
from payments.subscriptions.schemas import SubscriptionCreate
from tests.conftest import SHOP_ID, Subscribe, Workers
from vznos.container import Container

DECEMBER = date(2026, 12, 1)


@pytest.fixture
def active_subscription(subscribe: Subscribe) -> uuid.UUID:
    return subscribe()


def gateway_payments(emulator: EmulatorServer, period: date) -> list[dict[str, object]]:
    label = f"{period.month:02d}.{period.year}"
    return [p for p in emulator.state.payments() if label in str(p["description"])]


def ledger_payment_entries(container: Container) -> int:
    with container.engine.connect() as connection:
        count = connection.scalar(
            text("SELECT count(*) FROM ledger_entries WHERE kind = 'payment'")
        )
    return int(count or 0)


def attempt_of(container: Container, period: date) -> ChargeAttempt:
    with container.sessions() as session:
        attempt = session.scalar(
            select(ChargeAttempt)
            .join(Charge, Charge.id == ChargeAttempt.charge_id)
            .where(Charge.period_month == period)
        )
    assert attempt is not None
    return attempt


def test_billing_twice_for_a_month_charges_once(
    container: Container, workers: Workers, emulator: EmulatorServer, active_subscription: uuid.UUID
) -> None:
    assert container.billing.run(DECEMBER).charges_created == 1
    workers.drain()
    assert container.billing.run(DECEMBER).charges_created == 0
    workers.drain()

    [payment] = gateway_payments(emulator, DECEMBER)
    assert payment["status"] == "succeeded"
    assert ledger_payment_entries(container) == 2  # the first month and December
    with container.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Charge)) == 2


def test_the_same_notification_three_times_changes_things_once(
    container: Container,
    workers: Workers,
    emulator: EmulatorServer,
    api_server: object,
    client: httpx.Client,
    principal: Principal,
    subscription_body: Callable[..., dict[str, object]],
) -> None:
    container.members.upsert(
        principal, "m-2", MemberUpsert(organization_code="ppo-1", full_name="Олег Кузнецов")
    )
    started = container.subscriptions.start(
        principal, "m-2", SubscriptionCreate.model_validate(subscription_body())
    )
    assert started.confirmation_url
    complete_checkout(started.confirmation_url)
    emulator.state.flush_notifications()
    [payment] = emulator.state.payments()
    notification = {
        "type": "notification",
        "event": "payment.succeeded",
        "object": payment["object"],
    }
    for _ in range(3):
        answer = client.post("/webhooks/yookassa", json=notification)
        assert answer.status_code == 200
    workers.drain()

    with container.engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM webhook_inbox")) == 1
    assert ledger_payment_entries(container) == 1
    assert container.subscriptions.get(principal, started.id).status == "active"


def test_a_worker_dying_after_the_gateway_answered_is_healed_without_a_second_charge(
    container: Container,
    faults: FaultPoints,
    clock: ManualClock,
    emulator: EmulatorServer,
    active_subscription: uuid.UUID,
) -> None:
    # No workers here: the test plays the worker and the sweeper by hand.
    assert container.billing.run(DECEMBER).charges_created == 1
    attempt = attempt_of(container, DECEMBER)
    faults.arm("charge.after_reply_before_commit")
    with pytest.raises(SimulatedCrash):
        container.charges.submit(attempt.id)

    # The gateway charged the card, but we recorded nothing: the outcome is unknown to us.
    assert [p["status"] for p in gateway_payments(emulator, DECEMBER)] == ["succeeded"]
    stuck = attempt_of(container, DECEMBER)
    assert stuck.status == AttemptStatus.SUBMITTING
    assert stuck.gateway_payment_id is None
    assert ledger_payment_entries(container) == 1

    # A redelivered message must not send it again.
    container.charges.submit(attempt.id)
    assert len(gateway_payments(emulator, DECEMBER)) == 1

    # The sweeper finds it once its check is due and the resolver asks the gateway by
    # replaying the same key, which returns the payment already made.
    clock.advance(timedelta(minutes=2))
    assert container.charges.sweep() == 1
    container.charges.resolve(attempt.id)

    [payment] = gateway_payments(emulator, DECEMBER)
    assert payment["idempotence_key"] == str(attempt.id)
    healed = attempt_of(container, DECEMBER)
    assert healed.status == AttemptStatus.SUCCEEDED
    assert healed.gateway_payment_id == payment["id"]
    assert ledger_payment_entries(container) == 2
    container.charges.resolve(attempt.id)
    assert ledger_payment_entries(container) == 2


def test_a_500_after_charging_is_resolved_by_asking_not_by_charging_again(
    container: Container, emulator: EmulatorServer, active_subscription: uuid.UUID
) -> None:
    emulator.state.inject_fault(Fault("POST", "/v3/payments", "error_after"))
    container.billing.run(DECEMBER)
    attempt = attempt_of(container, DECEMBER)
    container.charges.submit(attempt.id)
    assert attempt_of(container, DECEMBER).status == AttemptStatus.SUBMITTING

    container.charges.resolve(attempt.id)
    [payment] = gateway_payments(emulator, DECEMBER)
    assert payment["status"] == "succeeded"
    assert attempt_of(container, DECEMBER).status == AttemptStatus.SUCCEEDED
    assert ledger_payment_entries(container) == 2


def test_a_stale_status_after_success_changes_nothing(
    container: Container, emulator: EmulatorServer, active_subscription: uuid.UUID
) -> None:
    from payments.gateway.yookassa import parse_payment

    container.billing.run(DECEMBER)
    attempt = attempt_of(container, DECEMBER)
    container.charges.submit(attempt.id)
    [payment] = gateway_payments(emulator, DECEMBER)
    assert isinstance(payment["object"], dict)
    stale = dict(payment["object"])
    stale.update(status="pending", paid=False)
    container.charges.record(attempt.id, parse_payment(stale))
    assert attempt_of(container, DECEMBER).status == AttemptStatus.SUCCEEDED
    assert ledger_payment_entries(container) == 2


def test_a_declined_autopayment_flags_the_subscription_and_schedules_a_retry(
    container: Container,
    emulator: EmulatorServer,
    principal: Principal,
    active_subscription: uuid.UUID,
) -> None:
    subscription = container.subscriptions.get(principal, active_subscription)
    [first] = emulator.state.payments()
    emulator.state.script_outcomes(str(first["payment_method_id"]), ["insufficient_funds"])
    container.billing.run(DECEMBER)
    container.charges.submit(attempt_of(container, DECEMBER).id)

    after = container.subscriptions.get(principal, subscription.id)
    assert after.status == "past_due"
    assert after.last_charge is not None
    assert after.last_charge.status == "pending"  # insufficient_funds is retried in the month
    assert after.last_charge.failure_reason == "insufficient_funds"
    assert after.last_charge.next_attempt_at is not None
    assert ledger_payment_entries(container) == 1
    assert emulator.state.payments()[-1]["shop_id"] == SHOP_ID
