"""Refunding a card payment: persist the refund and its key, call the gateway, record what it
says, and resolve the unknown by asking, never by refunding again.

1. `open` (one transaction, the charge row locked): check that the payment succeeded and that
   the amount fits in what is left (paid minus every refund not canceled, pending included),
   and commit a refund row whose own id is its Idempotence-Key.
2. `submit`: move it `created → submitting` and commit; call the gateway outside any
   transaction; record the outcome in a new transaction.
3. `resolve`: GET the refund by its gateway id, or replay the same request with the same key
   while the gateway still honours it, or (after that) find it in the payment's refund list by
   the id it carries in metadata. The sweeper re-drives open refunds, since YooKassa notifies
   `refund.succeeded` only.
4. `record`: monotonic; a confirmed refund posts its reversing ledger entry and emits
   `payment.refunded` in the same transaction, exactly once.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.clock import Clock
from core.db import transaction
from core.money import MoneyOut, format_kopecks
from core.outbox import EventType, emit
from core.periods import DEFAULT_TIMEZONE, format_period
from core.queue import TaskQueue
from ledger.service import post_card_refund
from members.models import Member, Organization
from members.service import Principal
from payments.charges.attempts import next_check_delay, parse_gateway_time
from payments.charges.models import Charge
from payments.charges.states import ChargeStatus
from payments.gateway.port import (
    GatewayDirectory,
    GatewayRefund,
    GatewayRejected,
    GatewayUnknownOutcome,
)
from payments.refunds import repository
from payments.refunds.errors import (
    PaymentNotFound,
    PaymentNotRefundable,
    RefundExceedsPayment,
    RefundKeyReused,
    RefundNotFound,
)
from payments.refunds.models import Refund
from payments.refunds.schemas import RefundCreate, RefundList, RefundOut
from payments.refunds.states import (
    REFUND_TRANSITIONS,
    TERMINAL_REFUND_STATUSES,
    RefundStatus,
)

log = structlog.get_logger("payments.refunds")

TASK_SUBMIT_REFUND = "payments.submit_refund"
TASK_RESOLVE_REFUND = "payments.resolve_refund"
META_REFUND = "vznos_refund_id"
META_CHARGE = "vznos_charge_id"

_GATEWAY_STATUS = {
    "pending": RefundStatus.PENDING,
    "succeeded": RefundStatus.SUCCEEDED,
    "canceled": RefundStatus.CANCELED,
}


def refund_description(charge: Charge) -> str:
    # Neutral on purpose, like the payment's: the member's bank shows it; the reason stays here.
    return f"Возврат взноса за {charge.period_month.month:02d}.{charge.period_month.year}"


def refund_body(
    refund_id: uuid.UUID, charge: Charge, payment_id: str, kopecks: int
) -> dict[str, Any]:
    return {
        "payment_id": payment_id,
        "amount": {"value": format_kopecks(kopecks), "currency": charge.currency},
        "description": refund_description(charge),
        "metadata": {META_REFUND: str(refund_id), META_CHARGE: str(charge.id)},
    }


def refund_out(refund: Refund) -> RefundOut:
    return RefundOut(
        id=refund.id,
        payment_id=refund.charge_id,
        status=refund.status,
        amount=MoneyOut.of(refund.amount_kopecks, refund.currency),
        reason=refund.reason,
        gateway_refund_id=refund.gateway_refund_id,
        cancellation_reason=refund.cancellation_reason,
        created_at=refund.created_at,
        settled_at=refund.settled_at,
    )


@dataclass(frozen=True)
class RefundResult:
    """What a caller of `refund_charge` learns: the refund and where it stands now."""

    refund_id: uuid.UUID
    status: RefundStatus
    amount_kopecks: int
    created: bool  # False: the same client key had made this refund before


class RefundMismatch(Exception):
    """The gateway's refund does not belong to this row: never apply it."""


class RefundService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        gateways: GatewayDirectory,
        queue: TaskQueue,
        key_replay_limit: timedelta = timedelta(hours=23),
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._gateways = gateways
        self._queue = queue
        self._key_replay_limit = key_replay_limit

    # -- use cases --------------------------------------------------------------------------

    def request(
        self,
        principal: Principal,
        payment_id: uuid.UUID,
        data: RefundCreate,
        *,
        client_key: str | None = None,
    ) -> RefundOut:
        """A refund asked for over the API by the CRM or a treasurer."""
        result = self._refund(
            payment_id,
            amount_kopecks=data.amount.kopecks if data.amount else None,
            currency=data.amount.currency if data.amount else None,
            reason=data.reason,
            requested_by=(
                f"treasurer:{principal.treasurer_id}"
                if principal.treasurer_id
                else f"api_key:{principal.api_key_id}"
            ),
            client_key=client_key,
            visible=principal.can_see,
        )
        with self._sessions() as session:
            refund = session.get(Refund, result.refund_id)
            assert refund is not None
            return refund_out(refund)

    def refund_charge(
        self,
        charge_id: uuid.UUID,
        *,
        amount_kopecks: int | None,
        reason: str,
        requested_by: str,
        client_key: str | None = None,
    ) -> RefundResult:
        """Refund (part of) a succeeded card charge, for other code (e.g. an overpayment the
        late payroll money covered). `amount_kopecks=None` refunds all that is left. Pass a
        `client_key` to make a retry of the same request return the same refund."""
        return self._refund(
            charge_id,
            amount_kopecks=amount_kopecks,
            currency=None,
            reason=reason,
            requested_by=requested_by,
            client_key=client_key,
            visible=None,
        )

    def list_for_payment(self, principal: Principal, payment_id: uuid.UUID) -> RefundList:
        with self._sessions() as session:
            _visible_charge(session, payment_id, principal.can_see)
            return RefundList(
                data=[refund_out(r) for r in repository.refunds_of(session, payment_id)]
            )

    def get(self, principal: Principal, payment_id: uuid.UUID, refund_id: uuid.UUID) -> RefundOut:
        with self._sessions() as session:
            _visible_charge(session, payment_id, principal.can_see)
            refund = session.get(Refund, refund_id)
            if refund is None or refund.charge_id != payment_id:
                raise RefundNotFound(f"no refund {refund_id}", field="refund_id")
            return refund_out(refund)

    def _refund(
        self,
        charge_id: uuid.UUID,
        *,
        amount_kopecks: int | None,
        currency: str | None,
        reason: str,
        requested_by: str,
        client_key: str | None,
        visible: Callable[[uuid.UUID], bool] | None,
    ) -> RefundResult:
        now = self._clock.now()
        request_hash = _request_hash(amount_kopecks, currency, reason)
        with transaction(self._sessions) as session:
            # The charge row lock serialises refunds of one payment: two concurrent requests
            # cannot both fit in what is left.
            charge = _visible_charge(session, charge_id, visible, for_update=True)
            if client_key is not None:
                earlier = repository.refund_by_client_key(session, charge.id, client_key)
                if earlier is not None:
                    if earlier.client_request_hash != request_hash:
                        raise RefundKeyReused(
                            "this Idempotency-Key made a different refund of this payment",
                            field="Idempotency-Key",
                            extra={"refund_id": str(earlier.id)},
                        )
                    return RefundResult(
                        earlier.id, RefundStatus(earlier.status), earlier.amount_kopecks, False
                    )
            attempt = repository.succeeded_attempt(session, charge.id)
            if charge.status != ChargeStatus.SUCCEEDED or attempt is None:
                raise PaymentNotRefundable(
                    f"payment {charge.id} is {charge.status}; only a succeeded payment can be "
                    "refunded",
                    field="payment_id",
                )
            assert attempt.gateway_payment_id is not None
            if currency is not None and currency != charge.currency:
                raise RefundExceedsPayment(
                    f"the payment is in {charge.currency}", field="amount.currency"
                )
            left = charge.amount_kopecks - repository.committed_kopecks(session, charge.id)
            kopecks = left if amount_kopecks is None else amount_kopecks
            if kopecks <= 0 or kopecks > left:
                raise RefundExceedsPayment(
                    f"at most {format_kopecks(max(left, 0))} {charge.currency} of this payment "
                    "can still be refunded (paid minus refunds made or under way)",
                    field="amount",
                    extra={"refundable": MoneyOut.of(max(left, 0), charge.currency).model_dump()},
                )
            refund_id = uuid.uuid4()
            session.add(
                Refund(
                    id=refund_id,
                    charge_id=charge.id,
                    attempt_id=attempt.id,
                    member_id=charge.member_id,
                    organization_id=charge.organization_id,
                    shop_id=attempt.shop_id,
                    gateway_payment_id=attempt.gateway_payment_id,
                    amount_kopecks=kopecks,
                    currency=charge.currency,
                    reason=reason[:500],
                    status=RefundStatus.CREATED,
                    request_body=refund_body(
                        refund_id, charge, attempt.gateway_payment_id, kopecks
                    ),
                    requested_by=requested_by[:200],
                    client_key=client_key,
                    client_request_hash=request_hash if client_key is not None else None,
                    created_at=now,
                    next_check_at=now + next_check_delay(0),
                    checks=0,
                )
            )
            audit.record(
                session,
                "refund.requested",
                at=now,
                organization_id=charge.organization_id,
                subject_type="refund",
                subject_id=refund_id,
                details={"payment_id": str(charge.id), "amount_kopecks": kopecks},
            )
        log.info(
            "refund.requested",
            refund_id=str(refund_id),
            charge_id=str(charge_id),
            amount_kopecks=kopecks,
        )
        self.submit(refund_id)
        with self._sessions() as session:
            refund = session.get(Refund, refund_id)
            assert refund is not None
            return RefundResult(refund_id, RefundStatus(refund.status), kopecks, True)

    # -- submit -----------------------------------------------------------------------------

    def submit(self, refund_id: uuid.UUID) -> None:
        """Send a created refund to the gateway once. Anything else is the resolver's job."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            refund = repository.refund_for_update(session, refund_id)
            if refund is None or refund.status != RefundStatus.CREATED:
                return
            refund.status = RefundStatus.SUBMITTING
            refund.submitted_at = now
            refund.next_check_at = now + next_check_delay(0)
            shop_id, body = refund.shop_id, dict(refund.request_body)
        log.info("refund.submitting", refund_id=str(refund_id))
        gateway = self._gateways.for_shop(shop_id)
        try:
            result = gateway.create_refund(str(refund_id), body)
        except GatewayUnknownOutcome as exc:
            self._note_unknown(refund_id, str(exc), exc.retry_after_seconds)
            return
        except GatewayRejected as exc:
            self._record_rejection(refund_id, exc)
            return
        self.record(refund_id, result)

    # -- resolve ----------------------------------------------------------------------------

    def resolve(self, refund_id: uuid.UUID) -> None:
        """Settle a refund whose outcome we do not know, by asking the gateway only."""
        with self._sessions() as session:
            refund = session.get(Refund, refund_id)
            if refund is None or refund.status in TERMINAL_REFUND_STATUSES:
                return
            status = RefundStatus(refund.status)
            gateway_refund_id = refund.gateway_refund_id
            shop_id, body = refund.shop_id, dict(refund.request_body)
            payment_id = refund.gateway_payment_id
            first_sent = refund.submitted_at or refund.created_at
        if status == RefundStatus.CREATED:
            self.submit(refund_id)
            return
        gateway = self._gateways.for_shop(shop_id)
        try:
            if gateway_refund_id is not None:
                result = gateway.get_refund(gateway_refund_id)
            elif self._clock.now() - first_sent < self._key_replay_limit:
                # The reply was lost: the same key and body return the refund it made, if any.
                result = gateway.create_refund(str(refund_id), body)
            else:
                found = [
                    r
                    for r in gateway.list_refunds(payment_id)
                    if r.metadata.get(META_REFUND) == str(refund_id)
                ]
                if not found:
                    # The key has expired and the payment's refunds hold none of ours: the
                    # gateway never made it. Nothing can create it now, so it is over.
                    self._record_not_made(refund_id)
                    return
                result = found[0]
        except GatewayUnknownOutcome as exc:
            self._note_unknown(refund_id, str(exc), exc.retry_after_seconds)
            return
        except GatewayRejected as exc:
            if gateway_refund_id is None:
                self._record_rejection(refund_id, exc)
            else:
                self._note_unknown(refund_id, str(exc), None)
            return
        self.record(refund_id, result)

    def refresh(self, refund_id: uuid.UUID, gateway_refund_id: str) -> bool:
        """Re-read a refund a notification told us about and record what the gateway says.
        Returns False when the gateway could not answer (try again later)."""
        with self._sessions() as session:
            refund = session.get(Refund, refund_id)
            if refund is None or refund.status in TERMINAL_REFUND_STATUSES:
                return True
            shop_id = refund.shop_id
        try:
            result = self._gateways.for_shop(shop_id).get_refund(gateway_refund_id)
        except GatewayUnknownOutcome as exc:
            log.warning("refund.refresh_failed", refund_id=str(refund_id), error=str(exc))
            return False
        except GatewayRejected as exc:
            log.warning("refund.refresh_rejected", refund_id=str(refund_id), code=exc.code)
            return True
        self.record(refund_id, result)
        return True

    def refund_for_gateway_refund(
        self, gateway_refund_id: str, named_refund_id: str | None
    ) -> uuid.UUID | None:
        """Which refund a gateway refund is: by its id, or by the id it carries in metadata
        (the reply that gave us the gateway id may have been lost)."""
        with self._sessions() as session:
            refund = repository.refund_by_gateway_id(session, gateway_refund_id)
            if refund is not None:
                return refund.id
            if named_refund_id:
                try:
                    candidate = uuid.UUID(named_refund_id)
                except ValueError:
                    return None
                found = session.get(Refund, candidate)
                if found is not None and found.gateway_refund_id in (None, gateway_refund_id):
                    return found.id
        return None

    # -- record -----------------------------------------------------------------------------

    def record(self, refund_id: uuid.UUID, result: GatewayRefund) -> None:
        now = self._clock.now()
        try:
            with transaction(self._sessions) as session:
                refund = repository.refund_for_update(session, refund_id)
                if refund is None:
                    return
                self._apply(session, refund, result, now)
        except RefundMismatch as exc:
            log.error("refund.mismatch", refund_id=str(refund_id), error=str(exc))

    def _apply(
        self, session: Session, refund: Refund, result: GatewayRefund, now: datetime
    ) -> None:
        named = result.metadata.get(META_REFUND)
        if named is not None and named != str(refund.id):
            raise RefundMismatch(f"gateway refund {result.id} belongs to refund {named}")
        if refund.gateway_refund_id not in (None, result.id):
            raise RefundMismatch(f"refund has {refund.gateway_refund_id}, not {result.id}")
        if result.payment_id != refund.gateway_payment_id:
            raise RefundMismatch(f"gateway refund {result.id} is of another payment")
        if result.amount_kopecks != refund.amount_kopecks or result.currency != refund.currency:
            raise RefundMismatch(f"gateway refund {result.id} amount differs")
        refund.gateway_refund_id = result.id
        target = _GATEWAY_STATUS.get(result.status)
        current = RefundStatus(refund.status)
        if target is None:
            log.warning("refund.unknown_gateway_status", status=result.status)
            return
        if target == current:
            return
        if target not in REFUND_TRANSITIONS[current]:
            # Monotonic: a stale status read after a newer one changes nothing.
            log.info("refund.stale_status_ignored", current=current, seen=target)
            return
        refund.status = target
        refund.last_error = None
        if target == RefundStatus.PENDING:
            refund.next_check_at = now + next_check_delay(refund.checks)
            return
        refund.settled_at = now
        if target == RefundStatus.CANCELED:
            refund.cancellation_party = result.cancellation_party
            refund.cancellation_reason = (result.cancellation_reason or "canceled")[:64]
            log.info("refund.canceled", refund_id=str(refund.id), reason=result.cancellation_reason)
            return
        self._succeeded(session, refund, result, now)

    def _succeeded(
        self, session: Session, refund: Refund, result: GatewayRefund, now: datetime
    ) -> None:
        # The charge row serialises the confirmations of one payment's refunds, so each
        # knows exactly what the earlier ones gave back.
        charge = session.get(Charge, refund.charge_id, with_for_update=True)
        org = session.get(Organization, refund.organization_id)
        member = session.get(Member, refund.member_id)
        assert charge is not None
        occurred_at = parse_gateway_time(result.raw.get("created_at")) or now
        refunded_before = sum(
            r.amount_kopecks
            for r in repository.refunds_of(session, charge.id)
            if r.status == RefundStatus.SUCCEEDED and r.id != refund.id
        )
        posted = post_card_refund(
            session,
            refund_id=str(refund.id),
            gateway_payment_id=refund.gateway_payment_id,
            member_id=refund.member_id,
            organization_id=refund.organization_id,
            amount_kopecks=refund.amount_kopecks,
            occurred_at=occurred_at,
            recorded_at=now,
            timezone=org.timezone if org is not None else DEFAULT_TIMEZONE,
            created_by=refund.requested_by,
            refunded_before_kopecks=refunded_before,
        )
        refunded_total = refunded_before + refund.amount_kopecks
        emit(
            session,
            type=EventType.PAYMENT_REFUNDED,
            organization_id=refund.organization_id,
            occurred_at=occurred_at,
            recorded_at=now,
            payload={
                "charge_id": str(charge.id),
                "subscription_id": str(charge.subscription_id),
                "member_id": str(charge.member_id),
                "member_external_id": member.external_id if member else None,
                "period": format_period(charge.period_month),
                "amount": MoneyOut.of(charge.amount_kopecks, charge.currency).model_dump(),
                "gateway_payment_id": refund.gateway_payment_id,
                "refund_id": str(refund.id),
                "refunded": MoneyOut.of(refund.amount_kopecks, refund.currency).model_dump(),
                "refunded_total": MoneyOut.of(refunded_total, refund.currency).model_dump(),
            },
        )
        log.info(
            "refund.succeeded",
            refund_id=str(refund.id),
            charge_id=str(charge.id),
            gateway_refund_id=result.id,
            ledger_entry_id=str(posted.entry_id),
        )

    def _record_rejection(self, refund_id: uuid.UUID, exc: GatewayRejected) -> None:
        """A definite 4xx to a create: no refund exists at the gateway; this one is over."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            refund = repository.refund_for_update(session, refund_id)
            if refund is None or refund.status != RefundStatus.SUBMITTING:
                return
            refund.status = RefundStatus.CANCELED
            refund.settled_at = now
            refund.cancellation_party = "merchant"
            refund.cancellation_reason = f"rejected_{exc.status}"
            refund.last_error = str(exc)[:500]
        log.error("refund.rejected", refund_id=str(refund_id), code=exc.code)

    def _record_not_made(self, refund_id: uuid.UUID) -> None:
        now = self._clock.now()
        with transaction(self._sessions) as session:
            refund = repository.refund_for_update(session, refund_id)
            if refund is None or refund.status != RefundStatus.SUBMITTING:
                return
            refund.status = RefundStatus.CANCELED
            refund.settled_at = now
            refund.cancellation_party = "merchant"
            refund.cancellation_reason = "not_made"
            refund.last_error = "the gateway holds no refund with this key after the key expired"
        log.error("refund.not_made", refund_id=str(refund_id))

    def _note_unknown(
        self, refund_id: uuid.UUID, error: str, retry_after_seconds: float | None
    ) -> None:
        now = self._clock.now()
        with transaction(self._sessions) as session:
            refund = repository.refund_for_update(session, refund_id)
            if refund is None or refund.status in TERMINAL_REFUND_STATUSES:
                return
            refund.last_error = error[:500]
            delay = next_check_delay(refund.checks)
            if retry_after_seconds is not None:
                delay = max(delay, timedelta(seconds=retry_after_seconds))
            refund.next_check_at = now + delay
        log.warning("refund.outcome_unknown", refund_id=str(refund_id), error=error)

    # -- sweep ------------------------------------------------------------------------------

    def sweep(self, limit: int = 500) -> int:
        """Re-drive every open refund whose check is due: lost messages, dead workers, and the
        pending refunds YooKassa never notifies about. Returns how many were re-driven."""
        now = self._clock.now()
        work: list[tuple[str, uuid.UUID]] = []
        with transaction(self._sessions) as session:
            for refund in repository.claim_due_refunds(session, now, limit):
                refund.checks += 1
                refund.next_check_at = now + next_check_delay(refund.checks)
                task = (
                    TASK_SUBMIT_REFUND
                    if refund.status == RefundStatus.CREATED
                    else TASK_RESOLVE_REFUND
                )
                work.append((task, refund.id))
        for task, refund_id in work:
            self._queue.enqueue(task, refund_id=str(refund_id))
        if work:
            log.info("refunds.swept", count=len(work))
        return len(work)


def _visible_charge(
    session: Session,
    charge_id: uuid.UUID,
    visible: Callable[[uuid.UUID], bool] | None,
    *,
    for_update: bool = False,
) -> Charge:
    charge = session.get(Charge, charge_id, with_for_update=for_update)
    if charge is None or (visible is not None and not visible(charge.organization_id)):
        raise PaymentNotFound(f"no payment {charge_id}", field="payment_id")
    return charge


def _request_hash(amount_kopecks: int | None, currency: str | None, reason: str) -> str:
    body = {"amount": amount_kopecks, "currency": currency, "reason": reason}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
