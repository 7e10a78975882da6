"""Fan events out to CRM endpoints and deliver each one at least once.

1. `relay` turns new outbox events into one delivery per matching endpoint (a unique
   constraint makes a second run harmless), commits, and queues them.
2. `deliver` claims a due delivery and commits; the HTTP call happens outside any transaction;
   the outcome is recorded in a new transaction, which schedules the next try.
3. `sweep` re-queues whatever the database says is due: the queue is only a hint.

Retries follow Standard Webhooks' schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
14 h, 20 h, 24 h: about three days) plus up to 10 % jitter, and never sooner than the
endpoint's `Retry-After`. A 410 disables the endpoint. An endpoint with no success for
`disable_after` (5 days by default) while still failing is disabled too, and a
`webhook_endpoint.disabled` event is recorded for its organisation.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.crypto import KeyRing
from core.db import transaction
from core.outbox import Event, EventType, emit
from core.queue import TaskQueue
from webhooks.outbound import repository
from webhooks.outbound.models import (
    PREVIOUS_SECRET,
    SECRET,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookEndpoint,
)
from webhooks.outbound.sender import Outcome, WebhookSender, envelope
from webhooks.outbound.states import (
    DeliveryStatus,
    DisabledReason,
    EndpointStatus,
    delivery_transition,
    endpoint_transition,
)

log = structlog.get_logger("webhooks.outbound")

TASK_DELIVER = "webhooks.deliver_event"

# Delay before attempt n (index n - 1), after the previous one failed.
RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
)
# A hostile or confused Retry-After must not park a delivery beyond the schedule's longest step.
MAX_RETRY_AFTER = timedelta(hours=24)
# While an attempt is in flight the sweeper leaves it alone; longer than any HTTP call can take
# (connect 5 s + read/write 15 s, and the actor's 60 s time limit).
IN_FLIGHT_LEASE = timedelta(minutes=2)
REQUEUE_AFTER = timedelta(minutes=1)


def retry_delay(attempts: int, retry_after_seconds: int | None, jitter: float) -> timedelta | None:
    """How long to wait after `attempts` failed attempts, or None when the schedule is over."""
    if attempts >= len(RETRY_SCHEDULE):
        return None
    delay = RETRY_SCHEDULE[attempts] * (1 + jitter)
    if retry_after_seconds is not None:
        delay = max(delay, min(timedelta(seconds=retry_after_seconds), MAX_RETRY_AFTER))
    return delay


def signing_secrets(endpoint: WebhookEndpoint, now: datetime, keyring: KeyRing) -> list[str]:
    secrets = [keyring.open(endpoint.secret_sealed, SECRET.aad(endpoint.id))]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_sealed and expires is not None and now < expires:
        secrets.append(
            keyring.open(endpoint.previous_secret_sealed, PREVIOUS_SECRET.aad(endpoint.id))
        )
    return secrets


class OutboundDeliveries:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        queue: TaskQueue,
        sender: WebhookSender,
        keyring: KeyRing,
        disable_after: timedelta = timedelta(days=5),
        jitter_ratio: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._queue = queue
        self._sender = sender
        self._keyring = keyring
        self._disable_after = disable_after
        self._jitter_ratio = jitter_ratio
        # Jitter spreads retries of a recovering CRM; not a secret, so not `secrets`.
        self._rng = rng or random.Random()  # noqa: S311

    # -- relay ----------------------------------------------------------------------------

    def relay(self, limit: int = 500) -> int:
        """Fan new events out to the endpoints that hear them. Returns how many deliveries."""
        now = self._clock.now()
        created: list[uuid.UUID] = []
        with transaction(self._sessions) as session:
            events = repository.unrelayed_events(session, limit)
            hearing: dict[uuid.UUID, list[WebhookEndpoint]] = {}
            for event in events:
                if event.organization_id not in hearing:
                    hearing[event.organization_id] = repository.endpoints_hearing(
                        session, event.organization_id
                    )
                for endpoint in hearing[event.organization_id]:
                    if repository.wants(endpoint, event.type):
                        delivery_id = repository.add_delivery(session, event.id, endpoint.id, now)
                        if delivery_id is not None:
                            created.append(delivery_id)
                event.relayed_at = now
        self.enqueue(created)
        if events:
            log.info("webhook_events.relayed", events=len(events), deliveries=len(created))
        return len(created)

    def enqueue(self, delivery_ids: list[uuid.UUID]) -> None:
        for delivery_id in delivery_ids:
            self._queue.enqueue(TASK_DELIVER, delivery_id=str(delivery_id))

    # -- sweep ----------------------------------------------------------------------------

    def sweep(self, limit: int = 500) -> int:
        """Relay new events and re-queue every due delivery. Returns how many were queued."""
        self.relay(limit)
        now = self._clock.now()
        with transaction(self._sessions) as session:
            due = repository.claim_due(session, now, now - REQUEUE_AFTER, limit)
        self.enqueue(due)
        if due:
            log.info("webhook_deliveries.swept", count=len(due))
        return len(due)

    # -- deliver --------------------------------------------------------------------------

    def deliver(self, delivery_id: uuid.UUID) -> None:
        """One attempt, if the delivery is still pending and due; anything else is a no-op."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            # The delivery with its endpoint and event in one round trip; only the delivery
            # is locked, so deliveries to one endpoint do not queue behind each other.
            found = session.execute(
                select(WebhookDelivery, WebhookEndpoint, Event)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .join(Event, Event.id == WebhookDelivery.event_id)
                .where(WebhookDelivery.id == delivery_id)
                .with_for_update(of=WebhookDelivery, skip_locked=True)
            ).one_or_none()
            if found is None:
                return
            delivery, endpoint, event = found
            if delivery.status != DeliveryStatus.PENDING:
                return
            if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
                return
            if endpoint.status != EndpointStatus.ACTIVE:
                self._finish(delivery, DeliveryStatus.CANCELED, now)
                return
            delivery.attempts += 1
            delivery.next_attempt_at = now + IN_FLIGHT_LEASE
            delivery.updated_at = now
            attempt_no = delivery.attempts
            url = endpoint.url
            secrets = signing_secrets(endpoint, now, self._keyring)
            body = envelope(
                event_id=str(event.id),
                event_type=event.type,
                occurred_at=event.occurred_at,
                organization_id=str(event.organization_id),
                data=event.payload,
            )
            msg_id = str(event.id)
        outcome = self._sender.send(
            url=url, msg_id=msg_id, body=body, secrets=secrets, timestamp=now
        )
        self._record(delivery_id, attempt_no, outcome, attempted_at=now)

    def _record(
        self, delivery_id: uuid.UUID, attempt_no: int, outcome: Outcome, *, attempted_at: datetime
    ) -> None:
        now = self._clock.now()
        retry_in: timedelta | None = None
        with transaction(self._sessions) as session:
            delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
            assert delivery is not None
            session.add(
                WebhookDeliveryAttempt(
                    id=uuid.uuid4(),
                    delivery_id=delivery_id,
                    attempt_no=attempt_no,
                    attempted_at=attempted_at,
                    duration_ms=outcome.duration_ms,
                    status_code=outcome.status_code,
                    outcome=outcome.outcome,
                    response_body=outcome.response_body,
                    retry_after_seconds=outcome.retry_after_seconds,
                )
            )
            if delivery.status != DeliveryStatus.PENDING or delivery.attempts != attempt_no:
                return  # restarted or finished meanwhile: the log keeps the attempt, that's all
            if outcome.succeeded:
                # No lock on the endpoint for the common case: only a failing one is written.
                repository.clear_failing(session, delivery.endpoint_id)
                self._finish(delivery, DeliveryStatus.SUCCEEDED, now)
            else:
                endpoint = session.get(WebhookEndpoint, delivery.endpoint_id, with_for_update=True)
                assert endpoint is not None
                if outcome.outcome == "gone":
                    self._finish(delivery, DeliveryStatus.FAILED, now)
                    self._disable(session, endpoint, DisabledReason.GONE, now)
                else:
                    endpoint.failing_since = endpoint.failing_since or attempted_at
                    retry_in = self._after_failure(session, delivery, endpoint, outcome, now)
        log.info(
            "webhook_delivery.attempted",
            delivery_id=str(delivery_id),
            attempt_no=attempt_no,
            outcome=outcome.outcome,
            status_code=outcome.status_code,
            duration_ms=outcome.duration_ms,
        )
        if retry_in is not None:
            self._queue.enqueue(
                TASK_DELIVER,
                delay_seconds=retry_in.total_seconds(),
                delivery_id=str(delivery_id),
            )

    def _after_failure(
        self,
        session: Session,
        delivery: WebhookDelivery,
        endpoint: WebhookEndpoint,
        outcome: Outcome,
        now: datetime,
    ) -> timedelta | None:
        failing_since = endpoint.failing_since
        if (
            failing_since is not None
            and now - failing_since >= self._disable_after
            and endpoint.status == EndpointStatus.ACTIVE
        ):
            self._finish(delivery, DeliveryStatus.FAILED, now)
            self._disable(session, endpoint, DisabledReason.FAILING, now)
            return None
        jitter = self._rng.random() * self._jitter_ratio
        delay = retry_delay(delivery.attempts, outcome.retry_after_seconds, jitter)
        if delay is None:
            self._finish(delivery, DeliveryStatus.FAILED, now)
            log.warning("webhook_delivery.failed", delivery_id=str(delivery.id))
            return None
        delivery.next_attempt_at = now + delay
        delivery.enqueued_at = now
        delivery.updated_at = now
        return delay

    @staticmethod
    def _finish(delivery: WebhookDelivery, status: DeliveryStatus, now: datetime) -> None:
        delivery.status = delivery_transition(DeliveryStatus(delivery.status), status)
        delivery.next_attempt_at = None
        delivery.finished_at = now
        delivery.updated_at = now

    @staticmethod
    def _disable(
        session: Session, endpoint: WebhookEndpoint, reason: DisabledReason, now: datetime
    ) -> None:
        if endpoint.status != EndpointStatus.ACTIVE:
            return
        failing_since = endpoint.failing_since
        disable_endpoint(session, endpoint, reason, now)
        emit(
            session,
            type=EventType.WEBHOOK_ENDPOINT_DISABLED,
            organization_id=endpoint.organization_id,
            occurred_at=now,
            payload={
                "endpoint_id": str(endpoint.id),
                "reason": str(reason),
                "failing_since": failing_since.isoformat() if failing_since else None,
            },
        )
        log.warning("webhook_endpoint.disabled", endpoint_id=str(endpoint.id), reason=reason)


def disable_endpoint(
    session: Session, endpoint: WebhookEndpoint, reason: DisabledReason, now: datetime
) -> None:
    """Stop sending to an endpoint: its pending deliveries are canceled (replay resends)."""
    endpoint.status = endpoint_transition(EndpointStatus(endpoint.status), EndpointStatus.DISABLED)
    endpoint.disabled_reason = reason
    endpoint.updated_at = now
    repository.cancel_pending(session, endpoint.id, now)
