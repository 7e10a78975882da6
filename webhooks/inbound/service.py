"""Gateway notifications: store fast, act later, and trust nothing the body says.

`admit` refuses senders outside the gateway's networks before anything is read or stored.
`receive` only validates, stores the raw notification once (duplicates are dropped by a unique
index) and asks for processing. `process` treats the notification as a hint: it re-reads the
payment from the gateway and records what the gateway says.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.db import transaction
from core.queue import TaskQueue
from core.text import storable_json
from payments.charges import repository as charges_repository
from payments.charges.scheduling import META_ATTEMPT
from payments.charges.service import ChargeService
from payments.refunds.service import META_REFUND, RefundService
from payments.standby.enrollment import StandbyEnrollment
from webhooks.inbound import repository
from webhooks.inbound.errors import (
    ForbiddenSender,
    InvalidNotification,
    UnknownInboxItem,
    UnknownPayment,
)
from webhooks.inbound.models import InboxItem
from webhooks.inbound.policy import Counter, InboundPolicy

log = structlog.get_logger("webhooks.inbound")

SOURCE_YOOKASSA = "yookassa"
TASK_PROCESS = "webhooks.process_inbox_item"
PAYMENT_EVENTS = frozenset({"payment.succeeded", "payment.canceled", "payment.waiting_for_capture"})
# YooKassa notifies only this about refunds (no refund.canceled): the sweeper polls the rest.
REFUND_EVENTS = frozenset({"refund.succeeded"})
PAYMENT_METHOD_EVENTS = frozenset({"payment_method.active"})
# Events YooKassa sends that Vznos will act on but does not yet: stored and marked processed,
# with a log line saying so, so nobody mistakes them for handled.
NOT_YET_HANDLED_EVENTS: frozenset[str] = frozenset()
RETRY_UNPROCESSED_AFTER = timedelta(minutes=1)


@dataclass(frozen=True)
class Received:
    inbox_id: uuid.UUID | None  # None: a duplicate of one already stored
    event: str


@dataclass(frozen=True)
class InboxSummary:
    id: uuid.UUID
    received_at: datetime
    event: str
    object_id: str
    attempts: int
    processed_at: datetime | None
    last_error: str | None


def _summary(item: InboxItem) -> InboxSummary:
    return InboxSummary(
        id=item.id,
        received_at=item.received_at,
        event=item.event,
        object_id=item.object_id,
        attempts=item.attempts,
        processed_at=item.processed_at,
        last_error=item.last_error,
    )


def parse_notification(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
        payload = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidNotification("the body is not UTF-8 JSON", field="body") from exc
    if not isinstance(payload, dict) or payload.get("type") != "notification":
        raise InvalidNotification('"type" must be "notification"', field="type")
    event = payload.get("event")
    if not isinstance(event, str) or not event or len(event) > 64 or "\x00" in event:
        raise InvalidNotification('"event" must be a notification event name', field="event")
    obj = payload.get("object")
    if not isinstance(obj, dict):
        raise InvalidNotification('"object" must be an object', field="object")
    object_id = obj.get("id")
    if not isinstance(object_id, str) or not 0 < len(object_id) <= 64 or "\x00" in object_id:
        raise InvalidNotification('"object.id" must be a gateway object id', field="object.id")
    if not storable_json(payload):
        raise InvalidNotification("the body holds characters that cannot be stored", field="body")
    return payload


def _named_attempt(obj: dict[str, Any]) -> uuid.UUID | None:
    """The attempt id our create put in the payment's metadata, if it is one."""
    metadata = obj.get("metadata")
    named = metadata.get(META_ATTEMPT) if isinstance(metadata, dict) else None
    if not isinstance(named, str):
        return None
    try:
        return uuid.UUID(named)
    except ValueError:
        return None


def _made_by_vznos(session: Session, obj: dict[str, Any]) -> bool:
    named = _named_attempt(obj)
    attempt_id = charges_repository.attempt_for_gateway_payment(
        session, obj["id"], str(named) if named else None
    )
    return attempt_id is not None


def without_card_token(payload: dict[str, Any]) -> dict[str, Any]:
    """The notification as stored: a saved card's token is a credential to charge it, and the
    worker re-reads the payment from the API anyway, so it is not kept in plaintext here."""
    obj = payload.get("object")
    method = obj.get("payment_method") if isinstance(obj, dict) else None
    if not isinstance(obj, dict) or not isinstance(method, dict) or "id" not in method:
        return payload
    kept = {k: v for k, v in method.items() if k != "id"}
    return {**payload, "object": {**obj, "payment_method": kept}}


class InboxService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        queue: TaskQueue,
        charges: ChargeService,
        refunds: RefundService,
        standby: StandbyEnrollment,
        default_shop_id: str,
        policy: InboundPolicy | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._queue = queue
        self._charges = charges
        self._refunds = refunds
        self._standby = standby
        self._default_shop_id = default_shop_id
        # Without a policy, only the gateway's published networks are believed: fail closed.
        self.policy = policy or InboundPolicy()
        self.forbidden_senders = Counter()
        if self.policy.from_anywhere:
            log.warning(
                "webhook.sender_check_disabled",
                message="VZNOS_YOOKASSA_NOTIFICATIONS_FROM_ANYWHERE is on: anyone can post "
                "notifications. Never in production.",
            )

    def admit(self, peer: str | None, forwarded_for: Sequence[str]) -> None:
        """Refuse a notification not sent from the gateway's networks. Nothing is stored for a
        refused sender (a flood of forgeries must not fill the database), only counted."""
        verdict = self.policy.judge_sender(peer, forwarded_for)
        if verdict.allowed:
            return
        self.forbidden_senders.increment()
        log.warning(
            "webhook.forbidden_sender",
            address=str(verdict.address) if verdict.address else None,
            peer=peer,
        )
        raise ForbiddenSender("notifications are accepted only from the payment gateway")

    def receive(self, body: bytes) -> Received:
        payload = parse_notification(body)
        event: str = payload["event"]
        obj: dict[str, Any] = payload["object"]
        if (
            event in PAYMENT_METHOD_EVENTS
            and self._standby.binding_for_gateway_method(obj["id"]) is None
        ):
            # Unknown until our create's reply is recorded: YooKassa re-sends, and the binding
            # sweeper settles it by asking the gateway meanwhile.
            raise UnknownPayment(
                f"no payment method {obj['id']!r} was requested by Vznos", field="object.id"
            )
        recipient = obj.get("recipient")
        shop_id = self._default_shop_id
        if isinstance(recipient, dict) and isinstance(recipient.get("account_id"), str):
            shop_id = recipient["account_id"][:64]
        payment_event = event in PAYMENT_EVENTS
        with transaction(self._sessions) as session:
            inbox_id = repository.store(
                session,
                source=SOURCE_YOOKASSA,
                shop_id=shop_id,
                event=event,
                object_id=obj["id"],
                payload=without_card_token(payload),
                received_at=self._clock.now(),
                payment_event=payment_event,
                named_attempt=_named_attempt(obj) if payment_event else None,
            )
            if inbox_id is None and payment_event and not _made_by_vznos(session, obj):
                raise UnknownPayment(
                    f"no payment {obj['id']!r} was made by Vznos", field="object.id"
                )
        if inbox_id is None:
            log.info("webhook.duplicate_dropped", gateway_event=event)
            return Received(None, event)
        log.info("webhook.stored", inbox_id=str(inbox_id), gateway_event=event)
        self._queue.enqueue(TASK_PROCESS, inbox_id=str(inbox_id))
        return Received(inbox_id, event)

    def process(self, inbox_id: uuid.UUID) -> None:
        self._process(inbox_id, again=False)

    def reprocess(self, inbox_id: uuid.UUID) -> InboxSummary:
        """An operator re-runs one item now, processed or not. Safe to repeat: the gateway is
        asked again and only forward transitions are recorded."""
        self._process(inbox_id, again=True)
        with self._sessions() as session:
            item = session.get(InboxItem, inbox_id)
            if item is None:
                raise UnknownInboxItem(f"no inbox item {inbox_id}", field="id")
            return _summary(item)

    def list_items(self, *, unprocessed_only: bool = False, limit: int = 50) -> list[InboxSummary]:
        """The newest items first, for an operator."""
        query = select(InboxItem).order_by(InboxItem.received_at.desc(), InboxItem.id).limit(limit)
        if unprocessed_only:
            query = query.where(InboxItem.processed_at.is_(None))
        with self._sessions() as session:
            return [_summary(item) for item in session.scalars(query)]

    def _process(self, inbox_id: uuid.UUID, *, again: bool) -> None:
        with self._sessions() as session:
            item = session.get(InboxItem, inbox_id)
            if item is None:
                if again:
                    raise UnknownInboxItem(f"no inbox item {inbox_id}", field="id")
                return
            if item.processed_at is not None and not again:
                return
            event, payload = item.event, dict(item.payload)
        done = True
        if event in PAYMENT_EVENTS:
            obj = payload["object"]
            metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
            named = metadata.get(META_ATTEMPT) if metadata else None
            attempt_id = self._charges.attempt_for_gateway_payment(
                obj["id"], named if isinstance(named, str) else None
            )
            if attempt_id is not None:
                done = self._charges.refresh(attempt_id, obj["id"])
        elif event in REFUND_EVENTS:
            refund_id = self._refund_of(payload["object"])
            if refund_id is not None:
                done = self._refunds.refresh(refund_id, payload["object"]["id"])
            else:
                # Made outside Vznos (e.g. in the shop's dashboard): nothing of ours to settle;
                # reconciliation of the gateway's lists is where it gets booked.
                log.warning(
                    "webhook.unknown_refund",
                    inbox_id=str(inbox_id),
                    object_id=payload["object"]["id"],
                )
        elif event in PAYMENT_METHOD_EVENTS:
            method_id = payload["object"]["id"]
            binding_id = self._standby.binding_for_gateway_method(method_id)
            if binding_id is not None:
                done = self._standby.refresh(binding_id, method_id)
        elif event in NOT_YET_HANDLED_EVENTS:
            log.warning(
                "webhook.no_handler_yet",
                gateway_event=event,
                inbox_id=str(inbox_id),
                object_id=payload["object"]["id"],
            )
        else:
            log.info("webhook.ignored", gateway_event=event, inbox_id=str(inbox_id))
        with transaction(self._sessions) as session:
            item = session.get(InboxItem, inbox_id, with_for_update=True)
            if item is None or (item.processed_at is not None and not again):
                return
            item.attempts += 1
            if done:
                item.processed_at = item.processed_at or self._clock.now()
                item.last_error = None
            else:
                item.last_error = "gateway unavailable; will retry"

    def _refund_of(self, obj: dict[str, Any]) -> uuid.UUID | None:
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        named = metadata.get(META_REFUND) if metadata else None
        return self._refunds.refund_for_gateway_refund(
            obj["id"], named if isinstance(named, str) else None
        )

    def sweep(self, limit: int = 500) -> int:
        """Re-drive notifications stored but not applied (a lost message, a dead worker)."""
        cutoff = self._clock.now() - RETRY_UNPROCESSED_AFTER
        with self._sessions() as session:
            ids = list(
                session.scalars(
                    select(InboxItem.id)
                    .where(InboxItem.processed_at.is_(None), InboxItem.received_at <= cutoff)
                    .order_by(InboxItem.received_at)
                    .limit(limit)
                )
            )
        for inbox_id in ids:
            self._queue.enqueue(TASK_PROCESS, inbox_id=str(inbox_id))
        return len(ids)
