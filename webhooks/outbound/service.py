"""Use cases of the CRM's webhook endpoints: register, read, rotate, disable, delete, read the
delivery log, redeliver one event and replay a period. Everything is scoped to the caller's
subtree; anything outside it is not found, like anything unknown."""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.crypto import KeyRing
from core.db import transaction
from core.outbox import Event, EventType
from core.pagination import after, in_window, take_page
from core.ssrf import UrlGuard
from members.repository import subtree_ids
from members.service import Principal
from webhooks.outbound import repository
from webhooks.outbound.delivery import OutboundDeliveries, disable_endpoint
from webhooks.outbound.errors import (
    DeliveryNotFound,
    EventNotFound,
    WebhookEndpointDisabled,
    WebhookEndpointNotFound,
)
from webhooks.outbound.models import PREVIOUS_SECRET, SECRET, WebhookDelivery, WebhookEndpoint
from webhooks.outbound.schemas import (
    AttemptOut,
    DeliveryOut,
    DeliveryPage,
    Queued,
    ReplayQueued,
    SecretRotated,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointOut,
)
from webhooks.outbound.states import (
    DeliveryStatus,
    DisabledReason,
    EndpointStatus,
    endpoint_transition,
)

log = structlog.get_logger("webhooks.outbound")

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format prefix, not a secret
SECRET_BYTES = 32  # Standard Webhooks: 24 to 64 random bytes
MAX_REPLAY_EVENTS = 10_000


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def endpoint_out(endpoint: WebhookEndpoint) -> WebhookEndpointOut:
    return WebhookEndpointOut(
        id=endpoint.id,
        organization_id=endpoint.organization_id,
        url=endpoint.url,
        description=endpoint.description,
        event_types=[EventType(t) for t in endpoint.event_types],
        status=EndpointStatus(endpoint.status),
        disabled_reason=DisabledReason(endpoint.disabled_reason)
        if endpoint.disabled_reason
        else None,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


class WebhookEndpointService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        guard: UrlGuard,
        deliveries: OutboundDeliveries,
        keyring: KeyRing,
        secret_overlap: timedelta = timedelta(hours=24),
    ) -> None:
        self._keyring = keyring
        self._sessions = sessions
        self._clock = clock
        self._guard = guard
        self._deliveries = deliveries
        self._secret_overlap = secret_overlap

    def create(self, principal: Principal, data: WebhookEndpointCreate) -> WebhookEndpointCreated:
        """Register an endpoint for the caller's organisation (and so its whole subtree). The
        secret is returned here once and never again."""
        # The DNS lookup happens before the transaction: no network call while holding one.
        self._guard.check_registration(data.url)
        now = self._clock.now()
        secret = new_secret()
        endpoint_id = uuid.uuid4()
        with transaction(self._sessions) as session:
            endpoint = WebhookEndpoint(
                id=endpoint_id,
                organization_id=principal.organization_id,
                url=data.url,
                description=data.description,
                event_types=list(dict.fromkeys(str(t) for t in data.event_types)),
                status=EndpointStatus.ACTIVE,
                disabled_reason=None,
                secret_sealed=self._keyring.seal(secret, SECRET.aad(endpoint_id)),
                previous_secret_sealed=None,
                previous_secret_expires_at=None,
                failing_since=None,
                created_at=now,
                updated_at=now,
            )
            session.add(endpoint)
            session.flush()
            out = endpoint_out(endpoint)
        log.info("webhook_endpoint.created", endpoint_id=str(out.id))
        return WebhookEndpointCreated(**out.model_dump(), secret=secret)

    def list(self, principal: Principal) -> list[WebhookEndpointOut]:
        with self._sessions() as session:
            endpoints = session.scalars(
                select(WebhookEndpoint)
                .where(
                    WebhookEndpoint.organization_id.in_(principal.scope),
                    WebhookEndpoint.status != EndpointStatus.DELETED,
                )
                .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
            )
            return [endpoint_out(e) for e in endpoints]

    def get(self, principal: Principal, endpoint_id: uuid.UUID) -> WebhookEndpointOut:
        with self._sessions() as session:
            return endpoint_out(_visible(session, principal, endpoint_id))

    def rotate_secret(self, principal: Principal, endpoint_id: uuid.UUID) -> SecretRotated:
        """A new secret, shown once. The current one keeps signing alongside it for the overlap
        period; a second rotation inside that period retires the oldest secret at once."""
        now = self._clock.now()
        secret = new_secret()
        with transaction(self._sessions) as session:
            endpoint = _visible(session, principal, endpoint_id, for_update=True)
            current = self._keyring.open(endpoint.secret_sealed, SECRET.aad(endpoint.id))
            endpoint.previous_secret_sealed = self._keyring.seal(
                current, PREVIOUS_SECRET.aad(endpoint.id)
            )
            endpoint.previous_secret_expires_at = now + self._secret_overlap
            endpoint.secret_sealed = self._keyring.seal(secret, SECRET.aad(endpoint.id))
            endpoint.updated_at = now
        log.info("webhook_endpoint.secret_rotated", endpoint_id=str(endpoint_id))
        return SecretRotated(
            endpoint_id=endpoint_id,
            secret=secret,
            previous_secret_expires_at=now + self._secret_overlap,
        )

    def disable(self, principal: Principal, endpoint_id: uuid.UUID) -> WebhookEndpointOut:
        now = self._clock.now()
        with transaction(self._sessions) as session:
            endpoint = _visible(session, principal, endpoint_id, for_update=True)
            if endpoint.status == EndpointStatus.ACTIVE:
                disable_endpoint(session, endpoint, DisabledReason.BY_CRM, now)
            out = endpoint_out(endpoint)
        log.info("webhook_endpoint.disabled", endpoint_id=str(endpoint_id), reason="by_crm")
        return out

    def enable(self, principal: Principal, endpoint_id: uuid.UUID) -> WebhookEndpointOut:
        """Turn a disabled endpoint back on. Its URL is vetted again: DNS may have moved."""
        with self._sessions() as session:
            url = _visible(session, principal, endpoint_id).url
        self._guard.check_registration(url)
        now = self._clock.now()
        with transaction(self._sessions) as session:
            endpoint = _visible(session, principal, endpoint_id, for_update=True)
            if endpoint.status == EndpointStatus.DISABLED:
                endpoint.status = endpoint_transition(
                    EndpointStatus(endpoint.status), EndpointStatus.ACTIVE
                )
                endpoint.disabled_reason = None
                endpoint.failing_since = None
                endpoint.updated_at = now
            out = endpoint_out(endpoint)
        log.info("webhook_endpoint.enabled", endpoint_id=str(endpoint_id))
        return out

    def delete(self, principal: Principal, endpoint_id: uuid.UUID) -> None:
        """Stop and hide the endpoint. Its rows stay for the delivery history."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            endpoint = _visible(session, principal, endpoint_id, for_update=True)
            endpoint.status = endpoint_transition(
                EndpointStatus(endpoint.status), EndpointStatus.DELETED
            )
            endpoint.updated_at = now
            repository.cancel_pending(session, endpoint.id, now)
        log.info("webhook_endpoint.deleted", endpoint_id=str(endpoint_id))

    def deliveries(
        self,
        principal: Principal,
        endpoint_id: uuid.UUID,
        *,
        starting_after: uuid.UUID | None,
        limit: int,
        status: DeliveryStatus | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
    ) -> DeliveryPage:
        """The delivery log, newest first, with every attempt of each delivery."""
        with self._sessions() as session:
            _visible(session, principal, endpoint_id)
            cursor: tuple[datetime, uuid.UUID] | None = None
            if starting_after is not None:
                found = session.get(WebhookDelivery, starting_after)
                if found is None or found.endpoint_id != endpoint_id:
                    raise DeliveryNotFound(
                        f"no delivery {starting_after} for this endpoint", field="starting_after"
                    )
                cursor = (found.created_at, found.id)
            query = select(WebhookDelivery, Event.type).join(
                Event, Event.id == WebhookDelivery.event_id
            )
            query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
            if status is not None:
                query = query.where(WebhookDelivery.status == status)
            query = in_window(query, WebhookDelivery.created_at, created_from, created_to)
            query = after(query, WebhookDelivery.created_at, WebhookDelivery.id, cursor)
            rows = [(d, t) for d, t in session.execute(query.limit(limit + 1))]
            page, has_more = take_page(rows, limit)
            attempts = repository.attempts_of(session, [d.id for d, _ in page])
            return DeliveryPage(
                data=[
                    DeliveryOut(
                        id=d.id,
                        event_id=d.event_id,
                        event_type=EventType(event_type),
                        endpoint_id=d.endpoint_id,
                        status=d.status,
                        attempts=d.attempts,
                        next_attempt_at=d.next_attempt_at,
                        created_at=d.created_at,
                        finished_at=d.finished_at,
                        attempt_log=[
                            AttemptOut(
                                attempt_no=a.attempt_no,
                                attempted_at=a.attempted_at,
                                duration_ms=a.duration_ms,
                                status_code=a.status_code,
                                outcome=a.outcome,
                                response_body=a.response_body,
                                retry_after_seconds=a.retry_after_seconds,
                            )
                            for a in attempts[d.id]
                        ],
                    )
                    for d, event_type in page
                ],
                has_more=has_more,
            )

    def redeliver(self, principal: Principal, event_id: uuid.UUID) -> Queued:
        """Send one event again, from the top of the schedule and with the same `webhook-id`, to
        every active endpoint of the caller's subtree that hears it."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            event = session.get(Event, event_id)
            if event is None or not principal.can_see(event.organization_id):
                raise EventNotFound(f"no event {event_id}", field="event_id")
            delivery_ids = [
                repository.restart_delivery(session, event.id, endpoint.id, now)
                for endpoint in repository.endpoints_hearing(session, event.organization_id)
                if principal.can_see(endpoint.organization_id)
                and repository.wants(endpoint, event.type)
            ]
        self._deliveries.enqueue(delivery_ids)
        log.info("webhook_event.redelivered", event_id=str(event_id), count=len(delivery_ids))
        return Queued(queued=len(delivery_ids), delivery_ids=delivery_ids)

    def replay(self, principal: Principal, endpoint_id: uuid.UUID, since: datetime) -> ReplayQueued:
        """Re-send every event the endpoint hears that was recorded since `since`, oldest
        first, for a CRM that was down. Capped per call; `next_since` continues."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            endpoint = _visible(session, principal, endpoint_id)
            if endpoint.status != EndpointStatus.ACTIVE:
                raise WebhookEndpointDisabled(
                    "enable the endpoint before replaying to it", field="endpoint_id"
                )
            subtree = subtree_ids(session, endpoint.organization_id)
            query = (
                select(Event)
                .where(Event.organization_id.in_(subtree), Event.recorded_at >= since)
                .order_by(Event.sequence)
                .limit(MAX_REPLAY_EVENTS + 1)
            )
            if endpoint.event_types:
                query = query.where(Event.type.in_(endpoint.event_types))
            events = list(session.scalars(query))
            capped = len(events) > MAX_REPLAY_EVENTS
            events = events[:MAX_REPLAY_EVENTS]
            delivery_ids = [
                repository.restart_delivery(session, event.id, endpoint.id, now) for event in events
            ]
            next_since = events[-1].recorded_at if capped else None
        self._deliveries.enqueue(delivery_ids)
        log.info("webhook_endpoint.replayed", endpoint_id=str(endpoint_id), count=len(events))
        return ReplayQueued(queued=len(delivery_ids), next_since=next_since)


def _visible(
    session: Session, principal: Principal, endpoint_id: uuid.UUID, *, for_update: bool = False
) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id, with_for_update=for_update)
    if (
        endpoint is None
        or endpoint.status == EndpointStatus.DELETED
        or not principal.can_see(endpoint.organization_id)
    ):
        raise WebhookEndpointNotFound(f"no webhook endpoint {endpoint_id}", field="endpoint_id")
    return endpoint
