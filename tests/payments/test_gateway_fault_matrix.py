"""T05, the gateway fault matrix: every fault the emulator can script, many runs each, through
the real adapter over loopback HTTP. Every run must end in the right final state with zero
double charges (the emulator's record is the truth), zero new keys for an attempt whose outcome
was unknown, and zero create replays with a key aged 23 h or more.

Runs per fault: VZNOS_FAULT_RUNS (default 5; 50 for the full T05 budget)."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select, text

from core.clock import ManualClock
from core.faults import FaultPoints
from payments.charges.models import Charge, ChargeAttempt
from payments.charges.service import (
    CHECK_JITTER_FRACTION,
    META_CHARGE,
    NOT_CREATED_REASON,
    ChargeService,
    next_check_delay,
    recheck_delay,
)
from payments.charges.states import TERMINAL_ATTEMPT_STATUSES, AttemptStatus
from payments.gateway.emulator import EmulatorServer, Fault
from payments.gateway.yookassa import SingleShopDirectory, YooKassaGateway
from tests.conftest import SECRET_KEY, SHOP_ID, Subscribe
from vznos.container import Container

RUNS = int(os.environ.get("VZNOS_FAULT_RUNS", "5"))
READ_TIMEOUT_SECONDS = 0.4
SLOW_SECONDS = 0.6  # past the read timeout
FIRST_MONTH = date(2026, 12, 1)


@dataclass(frozen=True)
class Case:
    name: str
    # What to do to the emulator before the attempt is submitted (and with its saved card).
    arrange: Callable[[EmulatorServer, str], None]
    expect: str  # succeeded | canceled
    reason: str | None = None
    # Hours the clock moves before the resolver first runs (key expiry cases).
    resolver_late_hours: float = 0.0
    settle_pending_as: str | None = None
    wait_for_server_seconds: float = 0.0


def fault(kind: str, **kw: object) -> Callable[[EmulatorServer, str], None]:
    def arrange(emulator: EmulatorServer, _: str) -> None:
        emulator.state.inject_fault(Fault("POST", "/v3/payments", kind, **kw))  # type: ignore[arg-type]

    return arrange


def outcome(*outcomes: str) -> Callable[[EmulatorServer, str], None]:
    def arrange(emulator: EmulatorServer, method_id: str) -> None:
        emulator.state.script_outcomes(method_id, list(outcomes))

    return arrange


def both(*steps: Callable[[EmulatorServer, str], None]) -> Callable[[EmulatorServer, str], None]:
    def arrange(emulator: EmulatorServer, method_id: str) -> None:
        for step in steps:
            step(emulator, method_id)

    return arrange


CASES = [
    Case("refused_before_processing", fault("drop_before"), "succeeded"),
    Case("timeout_before_processing", fault("delay", seconds=SLOW_SECONDS), "succeeded",
         wait_for_server_seconds=SLOW_SECONDS),
    Case("reply_dropped_after_processing", fault("drop_after"), "succeeded"),
    Case("reply_reset_mid_body", fault("reset_mid_body"), "succeeded"),
    Case("500_after_processing", fault("error_after"), "succeeded"),
    Case("500_before_processing", fault("error_before"), "succeeded"),
    Case("429_with_retry_after", fault("error_before", status=429, retry_after_seconds=90),
         "succeeded"),
    Case("202_with_retry_after", fault("error_before", status=202, retry_after_ms=1800),
         "succeeded"),
    Case("202_after_processing", fault("error_after", status=202), "succeeded"),
    Case("slow_reply_past_timeout", fault("delay_after", seconds=SLOW_SECONDS), "succeeded",
         wait_for_server_seconds=SLOW_SECONDS),
    Case("pending_then_succeeded", outcome("pending"), "succeeded",
         settle_pending_as="succeeded"),
    Case("pending_then_canceled", outcome("pending"), "canceled", "insufficient_funds",
         settle_pending_as="insufficient_funds"),
    Case("declined", outcome("insufficient_funds"), "canceled", "insufficient_funds"),
    # A decline the retry policy neither retries nor blames on the card, so that every case's
    # subscription is billed again next run.
    Case("500_twice_then_declined", both(fault("error_before", times=2),
                                         outcome("payment_method_limit_exceeded")), "canceled",
         "payment_method_limit_exceeded"),
    Case("key_expired_payment_made", fault("drop_after"), "succeeded", resolver_late_hours=23.5),
    Case("key_expired_nothing_made", fault("error_before"), "canceled", NOT_CREATED_REASON,
         resolver_late_hours=23.5),
    Case("key_expired_long_after", fault("drop_after"), "succeeded", resolver_late_hours=30),
]  # fmt: skip


@pytest.fixture
def service(
    container: Container, clock: ManualClock, emulator: EmulatorServer, faults: FaultPoints
) -> Iterator[ChargeService]:
    """The real adapter with a short read timeout, so slow replies time out in milliseconds."""
    gateway = YooKassaGateway(
        shop_id=SHOP_ID,
        secret_key=SECRET_KEY,
        api_url=emulator.api_url,
        read_timeout_seconds=READ_TIMEOUT_SECONDS,
    )
    yield ChargeService(
        sessions=container.sessions,
        clock=clock,
        gateways=SingleShopDirectory(gateway),
        queue=container.queue,
        faults=faults,
        vault=container.vault,
        rng=random.Random(5),
    )
    gateway.close()


def attempts_of(container: Container, charge_id: uuid.UUID) -> list[ChargeAttempt]:
    with container.sessions() as session:
        return list(
            session.scalars(
                select(ChargeAttempt)
                .where(ChargeAttempt.charge_id == charge_id)
                .order_by(ChargeAttempt.attempt_no)
            )
        )


def drive_to_terminal(
    service: ChargeService,
    container: Container,
    clock: ManualClock,
    emulator: EmulatorServer,
    attempt_id: uuid.UUID,
    case: Case,
) -> ChargeAttempt:
    """Play the sweeper: whenever the attempt's next check is due, run the resolver."""
    for _ in range(40):
        with container.sessions() as session:
            attempt = session.get(ChargeAttempt, attempt_id)
        assert attempt is not None
        if attempt.status in TERMINAL_ATTEMPT_STATUSES:
            return attempt
        if attempt.status == AttemptStatus.PENDING and case.settle_pending_as:
            assert attempt.gateway_payment_id is not None
            emulator.state.settle_payment(attempt.gateway_payment_id, case.settle_pending_as)
        if attempt.next_check_at > clock.now():
            clock.set(attempt.next_check_at)
        service.resolve(attempt_id)
    raise AssertionError(f"attempt {attempt_id} not terminal after 40 checks")


def check_run(
    container: Container, emulator: EmulatorServer, charge_id: uuid.UUID, case: Case
) -> None:
    attempts = attempts_of(container, charge_id)
    keys = {str(a.id) for a in attempts}
    made = [
        p for p in emulator.state.payments() if p["metadata"].get(META_CHARGE) == str(charge_id)
    ]
    # Zero double charges: the emulator's own record is the truth.
    assert sum(p["status"] == "succeeded" for p in made) <= 1
    # One payment per key at most, and only keys of this charge's attempts.
    per_key = Counter(p["idempotence_key"] for p in made)
    assert set(per_key) <= keys, (per_key, keys)
    assert max(per_key.values(), default=0) <= 1, per_key
    # Zero new keys for an unknown outcome: a later attempt exists only after the one before it
    # was confirmed canceled.
    assert all(a.status == AttemptStatus.CANCELED for a in attempts[:-1])
    first = attempts[0]
    assert first.status == (
        AttemptStatus.SUCCEEDED if case.expect == "succeeded" else AttemptStatus.CANCELED
    ), (case.name, first.status, first.last_error)
    if case.reason:
        assert first.cancellation_reason == case.reason
    with container.sessions() as session:
        charge = session.get(Charge, charge_id)
        assert charge is not None
        entries = session.scalar(
            text("SELECT count(*) FROM ledger_entries WHERE kind = 'payment' AND source_id = :c"),
            {"c": str(charge_id)},
        )
    succeeded = [p for p in made if p["status"] == "succeeded"]
    if case.expect == "succeeded":
        assert charge.status == "succeeded"
        assert [p["id"] for p in succeeded] == [first.gateway_payment_id]
        assert entries == 1
    else:
        assert succeeded == []
        assert entries == 0
    if case.reason == NOT_CREATED_REASON:
        assert made == []


def check_no_late_replays(emulator: EmulatorServer) -> None:
    first_use: dict[str, datetime] = {}
    for request in emulator.state.requests():
        if request["method"] != "POST" or request["path"] != "/v3/payments":
            continue
        key = request["idempotence_key"]
        first = first_use.setdefault(key, request["at"])
        assert request["at"] - first < timedelta(hours=23), (key, first, request["at"])


def test_fault_matrix(
    container: Container,
    service: ChargeService,
    clock: ManualClock,
    emulator: EmulatorServer,
    subscribe: Subscribe,
) -> None:
    """One member per fault, so one billing run per month makes every case's charge; the cases
    then run one after another, each with its faults scripted just before its submit."""
    cards: dict[str, str] = {}
    subscriptions: dict[str, uuid.UUID] = {}
    for case in CASES:
        subscriptions[case.name] = subscribe(external_id=f"m-{case.name}")
        cards[case.name] = str(emulator.state.payments()[-1]["payment_method_id"])
    for run in range(RUNS):
        period = date(FIRST_MONTH.year + (FIRST_MONTH.month - 1 + run) // 12,
                      (FIRST_MONTH.month - 1 + run) % 12 + 1, 1)  # fmt: skip
        clock.set(
            max(clock.now(), clock.now().replace(year=period.year, month=period.month, day=5))
        )
        assert container.billing.run(period).charges_created == len(CASES)
        for case in CASES:
            with container.sessions() as session:
                charge_id, attempt_id = session.execute(
                    select(Charge.id, ChargeAttempt.id)
                    .join(ChargeAttempt, ChargeAttempt.charge_id == Charge.id)
                    .where(
                        Charge.period_month == period,
                        Charge.subscription_id == subscriptions[case.name],
                    )
                ).one()
            case.arrange(emulator, cards[case.name])
            service.submit(attempt_id)
            if case.wait_for_server_seconds:
                # The emulator finishes what the client gave up on before emulated time moves.
                time.sleep(case.wait_for_server_seconds)
            if case.resolver_late_hours:
                clock.advance(timedelta(hours=case.resolver_late_hours))
            drive_to_terminal(service, container, clock, emulator, attempt_id, case)
            emulator.state.clear_faults()
            check_run(container, emulator, charge_id, case)
    check_no_late_replays(emulator)


def test_recheck_honours_the_gateway_hint_with_jitter() -> None:
    rng = random.Random(1)
    hinted = [recheck_delay(0, 600, rng) for _ in range(200)]
    assert min(hinted) >= timedelta(seconds=600)
    assert max(hinted) <= timedelta(seconds=600 * (1 + CHECK_JITTER_FRACTION))
    assert len(set(hinted)) > 100  # spread, not one instant for everyone
    # A hint shorter than the backoff does not make the check sooner than the backoff.
    assert recheck_delay(3, 1.8, rng) >= next_check_delay(3)
    assert recheck_delay(0, None, random.Random(7)) == recheck_delay(0, None, random.Random(7))


def test_the_adapter_lists_payments_page_by_page(
    emulator: EmulatorServer, clock: ManualClock
) -> None:
    body = {
        "amount": {"value": "1.00", "currency": "RUB"},
        "capture": True,
        "payment_method_data": {"type": "bank_card"},
        "confirmation": {"type": "redirect", "return_url": "https://example.org/r"},
    }
    old = emulator.state.create_payment(SHOP_ID, body | {"metadata": {"n": "old"}})
    clock.advance(timedelta(hours=1))
    since = clock.now()
    for n in range(130):
        emulator.state.create_payment(SHOP_ID, body | {"metadata": {"n": str(n)}})
        clock.advance(timedelta(seconds=1))
    gateway = YooKassaGateway(shop_id=SHOP_ID, secret_key=SECRET_KEY, api_url=emulator.api_url)
    try:
        listed = list(gateway.list_payments(created_from=since))
        window = gateway.list_payments(
            created_from=since, created_until=since + timedelta(seconds=10)
        )
        assert [p.metadata["n"] for p in window] == [str(n) for n in range(10, -1, -1)]
    finally:
        gateway.close()
    assert [p.metadata["n"] for p in listed] == [str(n) for n in reversed(range(130))]
    assert old["id"] not in {p.id for p in listed}
    pages = [r for r in emulator.state.requests() if r["method"] == "GET"]
    assert len(pages) == 3
