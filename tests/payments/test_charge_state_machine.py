"""T01 on the real thing: a hypothesis state machine over subscriptions, monthly charges,
attempts, scripted gateway outcomes and faults, duplicate and reordered notifications, resolver
and sweeper runs, clock moves past 24 h and crashes at named fault points, on real PostgreSQL
and the emulator over loopback HTTP.

After every step: no charge was paid twice at the gateway (the emulator's record is the truth)
and no succeeded gateway payment is lost (it is in the ledger, or its attempt is still open and
will be resolved). After healing (faults off, pending payments finished, sweeps until quiet):
every attempt is terminal and every succeeded payment is in the ledger exactly once.

Examples: VZNOS_MODEL_EXAMPLES (default 6), steps: VZNOS_MODEL_STEPS (default 25)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import Counter
from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, text

from core.clock import ManualClock
from core.faults import FaultPoints, SimulatedCrash
from payments.charges.models import ChargeAttempt
from payments.charges.repository import OPEN_ATTEMPT_STATUSES
from payments.charges.service import (
    META_ATTEMPT,
    META_CHARGE,
    TASK_RESOLVE,
    TASK_SUBMIT,
    ChargeService,
)
from payments.gateway.emulator import EmulatorServer, Fault
from tests.conftest import Subscribe
from vznos.container import Container

EXAMPLES = int(os.environ.get("VZNOS_MODEL_EXAMPLES", "6"))
STEPS = int(os.environ.get("VZNOS_MODEL_STEPS", "25"))
PERIODS = [date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1)]
OUTCOMES = ["succeeded", "pending", "insufficient_funds", "card_expired", "permission_revoked"]
GATEWAY_FAULTS: list[dict[str, Any]] = [
    {"kind": "error_before"},
    {"kind": "error_after"},
    {"kind": "drop_before"},
    {"kind": "drop_after"},
    {"kind": "error_before", "status": 429, "retry_after_seconds": 120},
    {"kind": "error_before", "status": 202},
    {"kind": "error_after", "status": 202},
]
CRASH_POINTS = ["charge.after_reply_before_commit", "gateway.before_send"]


class RecordingQueue:
    """What the sweeper asks for, run by the machine's own rules (a worker that can be late)."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, str]] = []

    def enqueue(self, task: str, *, delay_seconds: float | None = None, **ids: str) -> None:
        self.tasks.append((task, ids["attempt_id"]))


def test_charges_survive_every_interleaving(
    container: Container,
    clock: ManualClock,
    emulator: EmulatorServer,
    faults: FaultPoints,
    subscribe: Subscribe,
) -> None:
    queue = RecordingQueue()
    service = ChargeService(
        sessions=container.sessions,
        clock=clock,
        gateways=container.gateways,
        queue=queue,
        faults=faults,
        vault=container.vault,
    )
    example = iter(range(1_000_000))

    class ChargeMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.cards: list[str] = []
            self.attempts: list[uuid.UUID] = []
            self.prefix = f"x{next(example)}"

        # -- the world ---------------------------------------------------------------------

        @initialize(count=st.integers(1, 3))
        def members(self, count: int) -> None:
            for n in range(count):
                self._subscribe(n)

        def _subscribe(self, n: int) -> None:
            subscribe(external_id=f"{self.prefix}-m{n}")
            card = emulator.state.payments()[-1]["payment_method_id"]
            self.cards.append(str(card))

        @rule(period=st.sampled_from(PERIODS))
        def billing_run(self, period: date) -> None:
            container.billing.run(period)
            with container.sessions() as session:
                known = set(self.attempts)
                for attempt_id in session.scalars(
                    select(ChargeAttempt.id).order_by(ChargeAttempt.created_at)
                ):
                    if attempt_id not in known:
                        self.attempts.append(attempt_id)

        @rule(card=st.integers(0, 2), outcomes=st.lists(st.sampled_from(OUTCOMES), max_size=3))
        def script_card(self, card: int, outcomes: list[str]) -> None:
            emulator.state.script_outcomes(self.cards[card % len(self.cards)], outcomes)

        @rule(spec=st.sampled_from(GATEWAY_FAULTS), path=st.sampled_from(["POST", "GET"]))
        def gateway_fault(self, spec: dict[str, Any], path: str) -> None:
            emulator.state.inject_fault(Fault(path, "/v3/payments", **spec))

        @rule(point=st.sampled_from(CRASH_POINTS))
        def arm_crash(self, point: str) -> None:
            faults.arm(point)

        @rule(hours=st.sampled_from([0.05, 1, 6, 23.5, 25]))
        def clock_moves(self, hours: float) -> None:
            clock.advance(timedelta(hours=hours))

        # Draws never depend on what exists (indexes, not choices from live lists), so
        # hypothesis can replay and shrink a failing run.
        @rule(index=st.integers(0, 100), outcome=st.sampled_from(["succeeded", "general_decline"]))
        def gateway_finishes_a_pending_payment(self, index: int, outcome: str) -> None:
            pending = [p for p in emulator.state.payments() if p["status"] == "pending"]
            if pending:
                payment = pending[index % len(pending)]
                if payment["object"].get("confirmation"):
                    return  # a first payment waits for the member, not the network
                emulator.state.settle_payment(str(payment["id"]), outcome)

        # -- our side ----------------------------------------------------------------------

        def _pick(self, index: int, *, open_only: bool) -> uuid.UUID:
            """Mostly an open attempt (where the work is), sometimes any (a late message)."""
            chosen = self.attempts
            if open_only:
                with container.sessions() as session:
                    open_now = set(
                        session.scalars(
                            select(ChargeAttempt.id).where(
                                ChargeAttempt.status.in_(OPEN_ATTEMPT_STATUSES)
                            )
                        )
                    )
                chosen = [a for a in self.attempts if a in open_now] or self.attempts
            return chosen[index % len(chosen)]

        @precondition(lambda self: bool(self.attempts))
        @rule(index=st.integers(0, 100), open_only=st.booleans())
        def worker_submits(self, index: int, open_only: bool) -> None:
            self._safely(service.submit, self._pick(index, open_only=open_only))

        @precondition(lambda self: bool(self.attempts))
        @rule(
            index=st.integers(0, 100),
            open_only=st.booleans(),
            spec=st.sampled_from(GATEWAY_FAULTS),
        )
        def worker_submits_into_a_fault(
            self, index: int, open_only: bool, spec: dict[str, Any]
        ) -> None:
            emulator.state.inject_fault(Fault("POST", "/v3/payments", **spec))
            self._safely(service.submit, self._pick(index, open_only=open_only))
            emulator.state.clear_faults()

        @precondition(lambda self: bool(self.attempts))
        @rule(index=st.integers(0, 100), open_only=st.booleans())
        def resolver_runs(self, index: int, open_only: bool) -> None:
            self._safely(service.resolve, self._pick(index, open_only=open_only))

        @rule()
        def sweeper_runs(self) -> None:
            service.sweep()

        @precondition(lambda self: bool(queue.tasks))
        @rule(take=st.integers(1, 5))
        def worker_runs_queued(self, take: int) -> None:
            for task, attempt_id in queue.tasks[:take]:
                handler = service.submit if task == TASK_SUBMIT else service.resolve
                assert task in (TASK_SUBMIT, TASK_RESOLVE)
                self._safely(handler, uuid.UUID(attempt_id))
            del queue.tasks[:take]

        @rule(index=st.integers(0, 100), copies=st.integers(1, 3))
        def notification_arrives(self, index: int, copies: int) -> None:
            """Duplicated (copies) and reordered (any payment, old or new) notifications; as the
            inbox does, each is only a hint to re-read the payment."""
            made = [p for p in emulator.state.payments() if META_ATTEMPT in p["metadata"]]
            if not made:
                return
            payment = made[index % len(made)]
            attempt_id = service.attempt_for_gateway_payment(
                str(payment["id"]), payment["metadata"][META_ATTEMPT]
            )
            for _ in range(copies):
                if attempt_id is not None:
                    self._safely(lambda a: service.refresh(a, str(payment["id"])), attempt_id)

        @staticmethod
        def _safely(action: Any, attempt_id: uuid.UUID) -> None:
            # A crash: the process died here; the database and the sweeper carry on.
            with contextlib.suppress(SimulatedCrash):
                action(attempt_id)

        # -- what must always hold -----------------------------------------------------------

        @invariant()
        def nobody_pays_twice_and_nothing_is_lost(self) -> None:
            check(container, emulator, healed=False)

        def teardown(self) -> None:
            heal(container, clock, emulator, faults, service, queue)
            check(container, emulator, healed=True)

    run_state_machine_as_test(
        ChargeMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def heal(
    container: Container,
    clock: ManualClock,
    emulator: EmulatorServer,
    faults: FaultPoints,
    service: ChargeService,
    queue: RecordingQueue,
) -> None:
    """Faults off, the network finishes what it holds, sweeps until quiet (bounded)."""
    faults.disarm_all()
    emulator.state.clear_faults()
    queue.tasks.clear()
    for _ in range(60):
        for payment in emulator.state.payments():
            if payment["status"] == "pending" and not payment["object"].get("confirmation"):
                emulator.state.settle_payment(str(payment["id"]), "succeeded")
        with container.sessions() as session:
            open_attempts = session.scalars(
                select(ChargeAttempt).where(ChargeAttempt.status.in_(OPEN_ATTEMPT_STATUSES))
            ).all()
        open_autopay = [a for a in open_attempts if a.payment_method_id is not None]
        if not open_autopay:
            return
        clock.set(max([clock.now(), *(a.next_check_at for a in open_autopay)]))
        service.sweep()
        for task, attempt_id in queue.tasks:
            (service.submit if task == TASK_SUBMIT else service.resolve)(uuid.UUID(attempt_id))
        queue.tasks.clear()
    raise AssertionError("not quiet after 60 sweeps")


def check(container: Container, emulator: EmulatorServer, *, healed: bool) -> None:
    made = emulator.state.payments()
    succeeded = [p for p in made if p["status"] == "succeeded"]
    # Nobody pays twice: at most one succeeded gateway payment per charge (= member and month).
    per_charge = Counter(p["metadata"].get(META_CHARGE) for p in succeeded)
    assert all(n == 1 for n in per_charge.values()), per_charge
    # One key, one payment: a key was never used to make a second payment.
    per_key = Counter(p["idempotence_key"] for p in made)
    assert all(n == 1 for n in per_key.values()), per_key
    with container.engine.connect() as connection:
        posted = set(
            connection.scalars(
                text(
                    "SELECT ep.gateway_payment_id FROM charge_attempts ep "
                    "JOIN ledger_entries le ON le.source_id = ep.charge_id::text "
                    "AND le.kind = 'payment' WHERE ep.status = 'succeeded'"
                )
            )
        )
        attempts = {
            str(row.id): row
            for row in connection.execute(
                text("SELECT id, status, charge_id, gateway_payment_id FROM charge_attempts")
            )
        }
        open_ids = {k for k, a in attempts.items() if a.status in OPEN_ATTEMPT_STATUSES}
        entries_per_charge = Counter(
            connection.scalars(text("SELECT source_id FROM ledger_entries WHERE kind='payment'"))
        )
    assert all(n == 1 for n in entries_per_charge.values()), entries_per_charge
    for payment in succeeded:
        attempt_id = payment["metadata"][META_ATTEMPT]
        in_ledger = payment["id"] in posted
        # Never lost: posted, or its attempt is still open and the resolver will find it.
        assert in_ledger or (not healed and attempt_id in open_ids), (payment["id"], attempt_id)
    # A charge has at most one open attempt, and a canceled one never hides a success.
    for attempt in attempts.values():
        if attempt.status == "canceled" and attempt.gateway_payment_id:
            assert attempt.gateway_payment_id not in {p["id"] for p in succeeded}
    if healed:
        assert not open_ids, open_ids
