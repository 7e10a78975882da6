"""The recurring engine: retries by decline reason on the policy's schedule (or after payday),
hard declines asking for a new card, never a second attempt while one is open, the pre-charge
notice, expiring and expired cards. The emulator's scripted autopay outcomes decline the saved
card; the manual clock moves time."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, text, update

from core.clock import ManualClock
from core.outbox import Event
from members.schemas import MemberUpsert
from members.service import Principal
from payments.charges.billing import BillingService
from payments.charges.models import Charge, ChargeAttempt
from payments.charges.states import AttemptStatus
from payments.gateway.emulator import EmulatorServer
from payments.retries.policy import DEFAULT_POLICY, DEFAULT_RULES, GATEWAY_REASONS, Action
from payments.subscriptions.models import PaymentMethod
from tests.conftest import Subscribe
from vznos.container import Container

DECEMBER = date(2026, 12, 1)
MSK = timedelta(hours=3)


def msk(year: int, month: int, day: int, hour: int = 10) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC) - MSK


def saved_method(emulator: EmulatorServer) -> str:
    first = emulator.state.payments()[0]
    return str(first["payment_method_id"])


def submit_created(container: Container) -> list[uuid.UUID]:
    """Play the worker: submit every attempt that is waiting to be sent."""
    with container.sessions() as session:
        ids = list(
            session.scalars(
                select(ChargeAttempt.id).where(ChargeAttempt.status == AttemptStatus.CREATED)
            )
        )
    for attempt_id in ids:
        container.charges.submit(attempt_id)
    return ids


def december(container: Container) -> Charge:
    with container.sessions() as session:
        charge = session.scalar(select(Charge).where(Charge.period_month == DECEMBER))
    assert charge is not None
    return charge


def attempts(container: Container, period: date = DECEMBER) -> list[ChargeAttempt]:
    with container.sessions() as session:
        return list(
            session.scalars(
                select(ChargeAttempt)
                .join(Charge, Charge.id == ChargeAttempt.charge_id)
                .where(Charge.period_month == period)
                .order_by(ChargeAttempt.attempt_no)
            )
        )


def events(container: Container, type_: str) -> list[Event]:
    with container.sessions() as session:
        return list(
            session.scalars(select(Event).where(Event.type == type_).order_by(Event.sequence))
        )


def december_payments(emulator: EmulatorServer) -> list[dict[str, object]]:
    return [p for p in emulator.state.payments() if "12.2026" in str(p["description"])]


def test_a_soft_decline_is_retried_on_the_schedule_with_new_keys_until_it_passes(
    container: Container,
    clock: ManualClock,
    emulator: EmulatorServer,
    principal: Principal,
    subscribe: Subscribe,
) -> None:
    subscription_id = subscribe()
    emulator.state.script_outcomes(
        saved_method(emulator), ["insufficient_funds", "insufficient_funds", "succeeded"]
    )
    container.billing.run(DECEMBER)
    submit_created(container)

    # Declined on 23 November: retries +1 and +3 days after it, at 10:00 Moscow time.
    assert december(container).status == "pending"
    assert december(container).next_attempt_at == msk(2026, 11, 24)
    view = container.subscriptions.get(principal, subscription_id)
    assert view.status == "past_due"
    assert view.next_attempt_at == msk(2026, 11, 24)
    [past_due] = events(container, "subscription.past_due")
    assert past_due.payload["reason"] == "insufficient_funds"
    assert events(container, "payment.failed") == []  # the month is still open

    clock.set(msk(2026, 11, 24) - timedelta(minutes=1))
    assert container.billing.create_due_attempts() == 0
    clock.set(msk(2026, 11, 24))
    assert container.billing.create_due_attempts() == 1
    submit_created(container)
    assert december(container).next_attempt_at == msk(2026, 11, 26)

    clock.set(msk(2026, 11, 26, 11))
    assert container.billing.create_due_attempts() == 1
    submit_created(container)

    charge = december(container)
    assert charge.status == "succeeded"
    assert charge.next_attempt_at is None
    made = attempts(container)
    assert [(a.status, a.cancellation_reason, a.decision) for a in made] == [
        ("canceled", "insufficient_funds", "retry"),
        ("canceled", "insufficient_funds", "retry"),
        ("succeeded", None, None),
    ]
    # A new key per attempt, each the attempt's own id; exactly one payment succeeded.
    payments = december_payments(emulator)
    assert [p["idempotence_key"] for p in payments] == [str(a.id) for a in made]
    assert [p["status"] for p in payments] == ["canceled", "canceled", "succeeded"]
    view = container.subscriptions.get(principal, subscription_id)
    assert view.status == "active"
    assert view.last_charge is not None
    assert [(a.attempt_no, a.reason, a.decision) for a in view.last_charge.attempts] == [
        (1, "insufficient_funds", "retry"),
        (2, "insufficient_funds", "retry"),
        (3, None, None),
    ]
    assert [h.cause for h in view.status_history][-2:] == ["charge_declined", "charge_succeeded"]


def test_retries_stop_when_exhausted_and_the_month_fails(
    container: Container, clock: ManualClock, emulator: EmulatorServer, subscribe: Subscribe
) -> None:
    subscribe()
    emulator.state.script_outcomes(saved_method(emulator), ["general_decline"] * 5)
    container.billing.run(DECEMBER)
    submit_created(container)
    for day in (24, 26):  # general_decline: two retries by default
        clock.set(msk(2026, 11, day))
        assert container.billing.create_due_attempts() == 1
        submit_created(container)
    clock.set(msk(2026, 12, 20))
    assert container.billing.create_due_attempts() == 0

    charge = december(container)
    assert charge.status == "failed"
    assert charge.failure_reason == "general_decline"
    assert [a.decision for a in attempts(container)] == ["retry", "retry", "stop"]
    [failed] = events(container, "payment.failed")
    assert failed.payload["reason"] == "general_decline"
    assert len(december_payments(emulator)) == 3


def test_the_months_end_stops_retries(
    container: Container, clock: ManualClock, emulator: EmulatorServer, subscribe: Subscribe
) -> None:
    subscribe()
    emulator.state.script_outcomes(saved_method(emulator), ["issuer_unavailable"] * 5)
    clock.set(msk(2026, 12, 30))
    container.billing.run(DECEMBER)
    submit_created(container)
    assert december(container).next_attempt_at == msk(2026, 12, 31)  # +1 day fits
    clock.set(msk(2026, 12, 31))
    assert container.billing.create_due_attempts() == 1
    submit_created(container)
    # +3 days would be 2 January: past the month, so the month's charge fails now.
    assert december(container).status == "failed"
    assert december(container).retry_until == datetime(2026, 12, 31, 21, tzinfo=UTC)


def test_with_known_paydays_the_retry_comes_the_day_after_the_next_payday(
    container: Container,
    clock: ManualClock,
    emulator: EmulatorServer,
    principal: Principal,
    subscribe: Subscribe,
) -> None:
    subscribe()
    container.members.upsert(
        principal,
        "m-1",
        MemberUpsert(organization_code="ppo-1", full_name="Анна Смирнова", paydays=[25, 10]),
    )
    assert container.members.get(principal, "m-1").paydays == [10, 25]
    emulator.state.script_outcomes(saved_method(emulator), ["insufficient_funds"] * 2)
    container.billing.run(DECEMBER)
    submit_created(container)
    assert december(container).next_attempt_at == msk(2026, 11, 26)  # payday 25 → the 26th
    clock.set(msk(2026, 11, 26))
    container.billing.create_due_attempts()
    submit_created(container)
    assert december(container).next_attempt_at == msk(2026, 12, 11)  # payday 10 → the 11th


def test_the_default_table_covers_every_documented_reason() -> None:
    assert set(DEFAULT_RULES) >= GATEWAY_REASONS
    assert DEFAULT_POLICY.rule_for("a_reason_from_the_future").action == Action.STOP
    assert DEFAULT_RULES["rejected_by_timeout"].action == Action.RETRY


# The emulator declines with every reason but `rejected_by_timeout` (not in the SDK's list).
@pytest.mark.parametrize("reason", sorted(GATEWAY_REASONS - {"rejected_by_timeout"}))
def test_every_documented_reason_has_a_sensible_outcome(
    container: Container,
    emulator: EmulatorServer,
    principal: Principal,
    subscribe: Subscribe,
    reason: str,
) -> None:
    subscription_id = subscribe()
    emulator.state.script_outcomes(saved_method(emulator), [reason])
    container.billing.run(DECEMBER)
    submit_created(container)

    rule = DEFAULT_RULES[reason]
    charge = december(container)
    status = container.subscriptions.get(principal, subscription_id).status
    [attempt] = attempts(container)
    assert attempt.cancellation_reason == reason
    assert attempt.decision == rule.action
    if rule.action == Action.RETRY:
        assert (charge.status, status) == ("pending", "past_due")
        assert charge.next_attempt_at is not None
    elif rule.action == Action.NEW_CARD:
        assert (charge.status, status) == ("failed", "needs_payment_method")
        [asked] = events(container, "subscription.needs_payment_method")
        assert asked.payload["reason"] == reason
        assert asked.payload["action"] == "save_new_card"
        assert asked.payload["cause"] in ("card_declined", "card_expired")
    else:
        assert (charge.status, status) == ("failed", "past_due")


def test_a_hard_decline_stops_and_nothing_more_is_charged(
    container: Container, clock: ManualClock, emulator: EmulatorServer, subscribe: Subscribe
) -> None:
    subscribe()
    emulator.state.script_outcomes(saved_method(emulator), ["permission_revoked"])
    container.billing.run(DECEMBER)
    submit_created(container)
    clock.set(msk(2026, 12, 20))
    assert container.billing.create_due_attempts() == 0
    assert container.billing.run(date(2027, 1, 1)).charges_created == 0
    assert len(december_payments(emulator)) == 1


def test_no_second_attempt_while_one_is_open(
    container: Container, clock: ManualClock, emulator: EmulatorServer, subscribe: Subscribe
) -> None:
    subscribe()
    emulator.state.script_outcomes(saved_method(emulator), ["pending"])
    container.billing.run(DECEMBER)
    submit_created(container)
    [open_attempt] = attempts(container)
    assert open_attempt.status == "pending"
    # Even if something marked the charge due, the open attempt blocks a new key.
    with container.sessions() as session, session.begin():
        session.execute(update(Charge).values(next_attempt_at=clock.now()))
    assert container.billing.create_due_attempts() == 0
    assert len(attempts(container)) == 1


def test_concurrent_runs_make_one_attempt_per_due_retry(
    container: Container, clock: ManualClock, emulator: EmulatorServer, subscribe: Subscribe
) -> None:
    subscribe()
    emulator.state.script_outcomes(saved_method(emulator), ["insufficient_funds"])
    container.billing.run(DECEMBER)
    submit_created(container)
    clock.set(msk(2026, 11, 24))
    made: list[int] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        made.append(container.billing.create_due_attempts())

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(made) == [0, 0, 0, 1]
    assert len(attempts(container)) == 2


def noticing_billing(container: Container, days: int = 2) -> BillingService:
    return BillingService(
        sessions=container.sessions, clock=container.clock, queue=container.queue, notice_days=days
    )


def test_the_charge_waits_for_its_pre_charge_notice(
    container: Container, clock: ManualClock, emulator: EmulatorServer, subscribe: Subscribe
) -> None:
    subscribe(billing_day=5)
    billing = noticing_billing(container)
    clock.set(msk(2026, 12, 2, 9))
    billing.run_due()
    assert events(container, "charge.upcoming") == []  # 5 December is 3 days away

    clock.set(msk(2026, 12, 3, 9))
    billing.run_due()
    [upcoming] = events(container, "charge.upcoming")
    assert upcoming.payload["period"] == "2026-12"
    assert upcoming.payload["charge_on"] == "2026-12-05"
    assert upcoming.payload["amount"] == {"value": "350.00", "currency": "RUB"}
    charge = december(container)
    assert charge.upcoming_notice_at == msk(2026, 12, 3, 9)
    assert charge.next_attempt_at == msk(2026, 12, 5)
    assert attempts(container) == []

    clock.set(msk(2026, 12, 5) - timedelta(seconds=1))
    billing.run_due()
    assert attempts(container) == []
    assert december_payments(emulator) == []
    clock.set(msk(2026, 12, 5))
    billing.run_due()
    submit_created(container)
    assert december(container).status == "succeeded"
    assert len(events(container, "charge.upcoming")) == 1


def test_an_operator_run_also_waits_for_the_notice_period(
    container: Container, clock: ManualClock, subscribe: Subscribe
) -> None:
    subscribe()
    billing = noticing_billing(container)
    assert billing.run(DECEMBER).charges_created == 1
    assert december(container).next_attempt_at == clock.now() + timedelta(days=2)
    assert attempts(container) == []
    clock.advance(timedelta(days=2))
    assert billing.create_due_attempts() == 1


def expire_card(container: Container, month: int, year: int) -> None:
    with container.sessions() as session, session.begin():
        session.execute(update(PaymentMethod).values(expiry_month=month, expiry_year=year))


def test_a_card_expiring_before_the_next_charge_is_announced_once(
    container: Container, clock: ManualClock, subscribe: Subscribe
) -> None:
    subscribe(billing_day=5)
    expire_card(container, 11, 2026)  # valid through 30 November; next charge 5 December
    assert container.billing.notify_expiring_cards() == 0  # 23 Nov: more than 10 days ahead
    clock.set(msk(2026, 11, 25))
    assert container.billing.notify_expiring_cards() == 1
    assert container.billing.notify_expiring_cards() == 0
    [expiring] = events(container, "card.expiring")
    assert expiring.payload["card"] == {"last4": "4444", "expiry_month": 11, "expiry_year": 2026}
    assert expiring.payload["next_charge_on"] == "2026-12-05"


def test_a_card_valid_at_the_next_charge_is_not_announced(
    container: Container, clock: ManualClock, subscribe: Subscribe
) -> None:
    subscribe(billing_day=5)
    expire_card(container, 12, 2026)
    clock.set(msk(2026, 11, 30))
    assert container.billing.notify_expiring_cards() == 0


def test_an_expired_card_is_not_charged_at_all(
    container: Container,
    clock: ManualClock,
    emulator: EmulatorServer,
    principal: Principal,
    subscribe: Subscribe,
) -> None:
    subscription_id = subscribe(billing_day=5)
    expire_card(container, 11, 2026)
    clock.set(msk(2026, 12, 5, 9))
    container.billing.run_due()
    submit_created(container)
    assert december_payments(emulator) == []
    view = container.subscriptions.get(principal, subscription_id)
    assert view.status == "needs_payment_method"
    assert view.status_history[-1].cause == "card_expired"
    with container.engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM charges")) == 1  # the first only


def test_a_retry_due_in_a_month_that_has_ended_fails_the_charge_instead(
    container: Container, clock: ManualClock, emulator: EmulatorServer, subscribe: Subscribe
) -> None:
    subscribe()
    emulator.state.script_outcomes(saved_method(emulator), ["insufficient_funds"])
    clock.set(msk(2026, 12, 30))
    container.billing.run(DECEMBER)
    submit_created(container)
    assert december(container).next_attempt_at == msk(2026, 12, 31)
    clock.set(msk(2027, 1, 5))  # nobody ran the scheduler on 31 December
    assert container.billing.create_due_attempts() == 0
    assert december(container).status == "failed"
    assert len(attempts(container)) == 1
