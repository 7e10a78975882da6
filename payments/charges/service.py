"""Charging a card: submit an attempt, record what the gateway says, resolve the unknown.

What an attempt sends and when it is looked at again is in `attempts.py`; what a gateway answer
means for the charge, the subscription and the ledger is in `outcomes.py`; this module holds the
conversation with the gateway.

The money path reads plainly (see the house style):
1. `submit`: move the attempt `created → submitting` and commit; call the gateway with the
   attempt's own id as the Idempotence-Key, outside any transaction; record the outcome in a new
   transaction.
2. `resolve`: only asks the gateway (GET by payment id), or replays the very same request with
   the same key while the gateway still honours it. It never creates a new payment.
3. `record`: applies a gateway payment monotonically: a stale `pending` after `succeeded`
   changes nothing; a success posts to the ledger exactly once (keyed by the gateway payment).
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.db import transaction
from core.faults import FaultPoints
from core.queue import TaskQueue
from members.pii import MemberVault
from payments.charges import repository

# Re-exported: other layers and the tests name these through the service.
from payments.charges.attempts import CHECK_JITTER_FRACTION as CHECK_JITTER_FRACTION
from payments.charges.attempts import (
    KEY_LIFETIME,
    LIST_SEARCH_SLACK,
    CardTokenUnreadable,
)
from payments.charges.attempts import NOT_CREATED_REASON as NOT_CREATED_REASON
from payments.charges.attempts import card_token as card_token
from payments.charges.attempts import next_check_delay as next_check_delay
from payments.charges.attempts import recheck_delay as recheck_delay
from payments.charges.attempts import with_card_token as with_card_token
from payments.charges.models import Charge, ChargeAttempt
from payments.charges.outcomes import PaymentMismatch, apply_payment, decline, fail_charge
from payments.charges.scheduling import META_ATTEMPT as META_ATTEMPT
from payments.charges.scheduling import META_CHARGE as META_CHARGE
from payments.charges.scheduling import META_SUBSCRIPTION as META_SUBSCRIPTION
from payments.charges.states import (
    TERMINAL_ATTEMPT_STATUSES,
    AttemptStatus,
)
from payments.gateway.port import (
    Gateway,
    GatewayDirectory,
    GatewayPayment,
    GatewayRejected,
    GatewayUnknownOutcome,
)
from payments.retries.policy import Action
from payments.subscriptions.models import Subscription

log = structlog.get_logger("payments.charges")

TASK_SUBMIT = "payments.submit_attempt"
TASK_RESOLVE = "payments.resolve_attempt"


class ChargeService:
    # Kept on the class for callers that decide a charge outside a gateway answer.
    fail_charge = staticmethod(fail_charge)

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        gateways: GatewayDirectory,
        queue: TaskQueue,
        faults: FaultPoints,
        vault: MemberVault,
        key_replay_limit: timedelta = timedelta(hours=23),
        rng: random.Random | None = None,
    ) -> None:
        self._vault = vault
        self._sessions = sessions
        self._clock = clock
        self._gateways = gateways
        self._queue = queue
        self._faults = faults
        self._key_replay_limit = key_replay_limit
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy

    # -- submit ---------------------------------------------------------------------------

    def submit(self, attempt_id: uuid.UUID) -> None:
        """Send a created attempt to the gateway once. Anything else is the resolver's job."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            attempt = repository.attempt_for_update(session, attempt_id)
            if attempt is None or attempt.status != AttemptStatus.CREATED:
                return
            attempt.status = AttemptStatus.SUBMITTING
            attempt.submitted_at = now
            attempt.next_check_at = now + next_check_delay(0)
            shop_id = attempt.shop_id
            try:
                body = with_card_token(session, self._vault, attempt)
            except CardTokenUnreadable:
                body = None
        if body is None:
            # Nothing was sent: the card's member was erased, so the attempt is over.
            self._record_rejection(
                attempt_id,
                GatewayRejected(
                    "the saved card's token was destroyed with its member's data",
                    status=410,
                    code="card_token_destroyed",
                    parameter=None,
                ),
            )
            return
        log.info("charge_attempt.submitting", attempt_id=str(attempt_id))
        self._send(attempt_id, shop_id, body)

    def _send(self, attempt_id: uuid.UUID, shop_id: str, body: dict[str, Any]) -> None:
        gateway = self._gateways.for_shop(shop_id)
        try:
            self._faults.hit("gateway.before_send")
            payment = gateway.create_payment(str(attempt_id), body)
        except GatewayUnknownOutcome as exc:
            self._note_unknown(attempt_id, str(exc), exc.retry_after_seconds)
            return
        except GatewayRejected as exc:
            self._record_rejection(attempt_id, exc)
            return
        self._faults.hit("charge.after_reply_before_commit")
        self.record(attempt_id, payment)

    # -- resolve --------------------------------------------------------------------------

    def resolve(self, attempt_id: uuid.UUID) -> None:
        """Settle an attempt whose outcome we do not know, by asking the gateway only."""
        with self._sessions() as session:
            attempt = session.get(ChargeAttempt, attempt_id)
            if attempt is None or attempt.status in TERMINAL_ATTEMPT_STATUSES:
                return
            status = AttemptStatus(attempt.status)
            payment_id = attempt.gateway_payment_id
            shop_id = attempt.shop_id
            try:
                body: dict[str, Any] | None = with_card_token(session, self._vault, attempt)
            except CardTokenUnreadable:
                body = None
            first_sent = attempt.submitted_at or attempt.created_at
        if status == AttemptStatus.CREATED:
            self.submit(attempt_id)
            return
        gateway = self._gateways.for_shop(shop_id)
        key_age = self._clock.now() - first_sent
        try:
            if payment_id is not None:
                payment = gateway.get_payment(payment_id)
            elif body is not None and key_age < self._key_replay_limit:
                # The reply was lost: the same key and body return the payment it created, if any.
                payment = gateway.create_payment(str(attempt_id), body)
            else:
                # Too old to replay: a replay near or past the gateway's 24 h would be processed
                # as a new request and could charge a second time. Look for it instead.
                found = self._find_in_gateway_list(gateway, attempt_id, first_sent)
                if found is None:
                    self._not_found_in_list(attempt_id, key_age)
                    return
                payment = found
        except GatewayUnknownOutcome as exc:
            self._note_unknown(attempt_id, str(exc), exc.retry_after_seconds)
            return
        except GatewayRejected as exc:
            if payment_id is None and key_age < self._key_replay_limit:
                self._record_rejection(attempt_id, exc)
            else:
                self._note_unknown(attempt_id, str(exc), None)
            return
        self._faults.hit("charge.after_reply_before_commit")
        self.record(attempt_id, payment)

    @staticmethod
    def _find_in_gateway_list(
        gateway: Gateway, attempt_id: uuid.UUID, first_sent: datetime
    ) -> GatewayPayment | None:
        """Every create of this attempt carried its id in metadata and went out between
        `first_sent` and the replay limit (23 h later, plus a request's timeout), so that is the
        window; YooKassa lists by time window only, so the metadata match is ours."""
        wanted = str(attempt_id)
        for payment in gateway.list_payments(
            created_from=first_sent - LIST_SEARCH_SLACK,
            created_until=first_sent + KEY_LIFETIME + LIST_SEARCH_SLACK,
        ):
            if payment.metadata.get(META_ATTEMPT) == wanted:
                return payment
        return None

    def _not_found_in_list(self, attempt_id: uuid.UUID, key_age: timedelta) -> None:
        if key_age < KEY_LIFETIME:
            # Not there yet, but the gateway may still honour the key: look again once the
            # key is dead, never replay.
            self._note_unknown(
                attempt_id,
                "no gateway payment id; not in the gateway's list yet; waiting for key expiry",
                (KEY_LIFETIME - key_age).total_seconds(),
            )
            return
        self._record_never_created(attempt_id)

    def _record_never_created(self, attempt_id: uuid.UUID) -> None:
        """The attempt made no payment at the gateway: cancel it, so that a new attempt (new
        key) may be made.

        Why this is safe: every create for this attempt carried its key and its id in metadata.
        The resolver replays only while the key is younger than 23 h, and each request ends
        within the client's read timeout (seconds), so the last request that could have created
        a payment ended well before now. The key itself is older than the gateway's 24 h, so
        nothing the gateway still holds can become a payment under it. A payment it did create
        would be in the list searched just now (created after `first_sent`, matched by
        metadata). None is: nothing was charged, and nothing can be charged later under this
        key. (A gateway that broke its own 24 h promise would be caught by reconciliation,
        which posts unknown gateway payments to suspense, G11.)"""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            attempt = repository.attempt_for_update(session, attempt_id)
            if (
                attempt is None
                or attempt.status != AttemptStatus.SUBMITTING
                or attempt.gateway_payment_id is not None
            ):
                return
            charge = session.get(Charge, attempt.charge_id, with_for_update=True)
            subscription = session.get(Subscription, charge.subscription_id) if charge else None
            assert charge is not None and subscription is not None
            attempt.status = AttemptStatus.CANCELED
            attempt.settled_at = now
            attempt.cancellation_party = "merchant"
            attempt.cancellation_reason = NOT_CREATED_REASON
            attempt.last_error = "never created at the gateway (key expired, not in its list)"
            decline(attempt, charge, subscription, NOT_CREATED_REASON, now)
        log.warning("charge_attempt.never_created", attempt_id=str(attempt_id))

    def refresh(self, attempt_id: uuid.UUID, payment_id: str) -> bool:
        """Re-read a payment a notification told us about and record what the gateway says.
        Returns False when the gateway could not answer (try again later)."""
        with self._sessions() as session:
            attempt = session.get(ChargeAttempt, attempt_id)
            if attempt is None or attempt.status in TERMINAL_ATTEMPT_STATUSES:
                return True
            shop_id = attempt.shop_id
        try:
            payment = self._gateways.for_shop(shop_id).get_payment(payment_id)
        except GatewayUnknownOutcome as exc:
            log.warning("charge_attempt.refresh_failed", attempt_id=str(attempt_id), error=str(exc))
            return False
        except GatewayRejected as exc:
            log.warning(
                "charge_attempt.refresh_rejected", attempt_id=str(attempt_id), code=exc.code
            )
            return True
        self.record(attempt_id, payment)
        return True

    # -- record ---------------------------------------------------------------------------

    def record(self, attempt_id: uuid.UUID, payment: GatewayPayment) -> None:
        now = self._clock.now()
        try:
            with transaction(self._sessions) as session:
                attempt = repository.attempt_for_update(session, attempt_id)
                if attempt is None:
                    return
                apply_payment(session, self._vault, attempt, payment, now)
        except PaymentMismatch as exc:
            log.error("charge_attempt.payment_mismatch", attempt_id=str(attempt_id), error=str(exc))

    def _record_rejection(self, attempt_id: uuid.UUID, exc: GatewayRejected) -> None:
        """A definite 4xx to a create: nothing exists at the gateway, the attempt is over."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            attempt = repository.attempt_for_update(session, attempt_id)
            if attempt is None or attempt.status != AttemptStatus.SUBMITTING:
                return
            charge = session.get(Charge, attempt.charge_id, with_for_update=True)
            subscription = session.get(Subscription, charge.subscription_id) if charge else None
            assert charge is not None and subscription is not None
            attempt.status = AttemptStatus.CANCELED
            attempt.settled_at = now
            attempt.cancellation_party = "merchant"
            attempt.cancellation_reason = f"rejected_{exc.status}"
            attempt.last_error = str(exc)[:500]
            attempt.decision = Action.STOP
            fail_charge(charge, subscription, f"gateway_rejected:{exc.code}", now)
        log.error("charge_attempt.rejected", attempt_id=str(attempt_id), code=exc.code)

    def _note_unknown(
        self, attempt_id: uuid.UUID, error: str, retry_after_seconds: float | None
    ) -> None:
        now = self._clock.now()
        with transaction(self._sessions) as session:
            attempt = repository.attempt_for_update(session, attempt_id)
            if attempt is None or attempt.status in TERMINAL_ATTEMPT_STATUSES:
                return
            attempt.last_error = error[:500]
            attempt.next_check_at = now + recheck_delay(
                attempt.checks, retry_after_seconds, self._rng
            )
        log.warning("charge_attempt.outcome_unknown", attempt_id=str(attempt_id), error=error)

    # -- sweep ----------------------------------------------------------------------------

    def sweep(self, limit: int = 500) -> int:
        """Re-drive every open attempt whose check is due: the correctness path when a message
        was lost or a worker died. Returns how many were re-driven."""
        now = self._clock.now()
        work: list[tuple[str, uuid.UUID]] = []
        with transaction(self._sessions) as session:
            for attempt in repository.claim_due_attempts(session, now, limit):
                attempt.checks += 1
                attempt.next_check_at = now + next_check_delay(attempt.checks)
                task = TASK_SUBMIT if attempt.status == AttemptStatus.CREATED else TASK_RESOLVE
                work.append((task, attempt.id))
        for task, attempt_id in work:
            self._queue.enqueue(task, attempt_id=str(attempt_id))
        if work:
            log.info("charge_attempts.swept", count=len(work))
        return len(work)

    # -- lookups for other layers -----------------------------------------------------------

    def attempt_for_gateway_payment(
        self, payment_id: str, named_attempt_id: str | None
    ) -> uuid.UUID | None:
        """Which attempt a gateway payment belongs to: by its id, or by the attempt id it carries
        in metadata (the reply that gave us the id may have been lost)."""
        with self._sessions() as session:
            return repository.attempt_for_gateway_payment(session, payment_id, named_attempt_id)
