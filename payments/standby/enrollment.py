"""Enrolment in standby auto-pay: save a card with no payment.

The member consents to the standby terms; Vznos asks the gateway for a payment method
(`POST /payment_methods`) with the binding's own id as the Idempotence-Key, committed before the
call; the member confirms the card on the acquirer's page; the `payment_method.active`
notification (or the sweeper, asking the gateway) saves the card and the subscription becomes
`standby`. Nothing is charged. An unknown outcome is settled the way charges settle theirs: GET by
id, or the very same request with the same key while the gateway honours it, never a second
payment method.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.db import transaction
from core.periods import period_of
from core.queue import TaskQueue
from members.models import Organization
from members.pii import MemberVault
from members.service import Principal, visible_member
from payments.charges.attempts import next_check_delay
from payments.charges.outcomes import save_card
from payments.gateway.port import (
    GatewayDirectory,
    GatewayPaymentMethod,
    GatewayRejected,
    GatewayUnknownOutcome,
)
from payments.standby.models import CardBinding
from payments.standby.schemas import StandbyCreate
from payments.standby.states import (
    BINDING_TRANSITIONS,
    OPEN_BINDING_STATUSES,
    BindingStatus,
)
from payments.subscriptions.errors import AmountOutOfRange, LiveSubscriptionExists
from payments.subscriptions.models import Subscription
from payments.subscriptions.schemas import SubscriptionOut
from payments.subscriptions.service import (
    MAX_CARD_KOPECKS,
    MIN_CARD_KOPECKS,
    SubscriptionService,
)
from payments.subscriptions.states import (
    LIVE_STATUSES,
    Cause,
    SubscriptionMode,
    SubscriptionStatus,
    move,
    record_created,
)

log = structlog.get_logger("payments.standby")

TASK_BINDING_SUBMIT = "payments.submit_card_binding"
TASK_BINDING_RESOLVE = "payments.resolve_card_binding"

META_BINDING = "vznos_binding_id"
META_SUBSCRIPTION = "vznos_subscription_id"

_GATEWAY_STATUS = {
    "pending": BindingStatus.PENDING,
    "active": BindingStatus.ACTIVE,
    "inactive": BindingStatus.INACTIVE,
}


def binding_body(
    binding_id: uuid.UUID, subscription_id: uuid.UUID, return_url: str
) -> dict[str, Any]:
    return {
        "type": "bank_card",
        "confirmation": {"type": "redirect", "return_url": return_url},
        "metadata": {META_BINDING: str(binding_id), META_SUBSCRIPTION: str(subscription_id)},
    }


class StandbyEnrollment:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        gateways: GatewayDirectory,
        queue: TaskQueue,
        subscriptions: SubscriptionService,
        vault: MemberVault,
        key_replay_limit: timedelta = timedelta(hours=23),
    ) -> None:
        self._vault = vault
        self._sessions = sessions
        self._clock = clock
        self._gateways = gateways
        self._queue = queue
        self._subscriptions = subscriptions
        self._key_replay_limit = key_replay_limit

    def enroll(
        self, principal: Principal, external_id: str, data: StandbyCreate
    ) -> SubscriptionOut:
        """Create a standby subscription and ask the gateway to save a card for it. The
        binding's key is committed before the gateway hears of it."""
        amount = data.amount.kopecks
        if not MIN_CARD_KOPECKS <= amount <= MAX_CARD_KOPECKS:
            raise AmountOutOfRange(
                "a card payment must be between 1.00 and 350000.00 RUB", field="amount.value"
            )
        now = self._clock.now()
        try:
            with transaction(self._sessions) as session:
                member = visible_member(session, principal, external_id)
                live = session.scalar(
                    select(Subscription.id).where(
                        Subscription.member_id == member.id,
                        Subscription.status.in_(LIVE_STATUSES),
                    )
                )
                if live is not None:
                    raise LiveSubscriptionExists(
                        f"member {external_id!r} already has subscription {live}",
                        field="external_id",
                        extra={"subscription_id": str(live)},
                    )
                org = session.get(Organization, member.organization_id)
                assert org is not None
                subscription = Subscription(
                    id=uuid.uuid4(),
                    member_id=member.id,
                    organization_id=org.id,
                    status=SubscriptionStatus.PENDING_CONFIRMATION,
                    mode=SubscriptionMode.STANDBY,
                    amount_kopecks=amount,
                    currency=data.amount.currency,
                    billing_day=None,
                    start_period=period_of(now, org.timezone),
                    consent_version=data.consent.text_version,
                    consent_accepted_at=data.consent.accepted_at,
                    return_url=str(data.return_url),
                    created_at=now,
                    status_changed_at=now,
                )
                session.add(subscription)
                session.flush()
                record_created(subscription, now)
                binding_id = uuid.uuid4()
                session.add(
                    CardBinding(
                        id=binding_id,
                        subscription_id=subscription.id,
                        member_id=member.id,
                        status=BindingStatus.CREATED,
                        shop_id=self._gateways.shop_for_organization(org.id),
                        request_body=binding_body(
                            binding_id, subscription.id, str(data.return_url)
                        ),
                        created_at=now,
                        next_check_at=now + next_check_delay(0),
                        checks=0,
                    )
                )
                subscription_id = subscription.id
        except IntegrityError as exc:
            diag = getattr(exc.orig, "diag", None)
            if getattr(diag, "constraint_name", None) != "uq_subscriptions_one_live_per_member":
                raise
            raise LiveSubscriptionExists(
                f"member {external_id!r} already has a live subscription", field="external_id"
            ) from exc
        log.info("standby.enrolling", subscription_id=str(subscription_id))
        # The member waits for the confirmation URL; a lost answer is the sweeper's to resolve.
        self.submit(binding_id)
        return self._subscriptions.get(principal, subscription_id)

    # -- submit, resolve, record ------------------------------------------------------------

    def submit(self, binding_id: uuid.UUID) -> None:
        """Send a created binding to the gateway once. Anything else is the resolver's job."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            binding = session.get(CardBinding, binding_id, with_for_update=True)
            if binding is None or binding.status != BindingStatus.CREATED:
                return
            binding.status = BindingStatus.SUBMITTING
            binding.submitted_at = now
            binding.next_check_at = now + next_check_delay(0)
            shop_id, body = binding.shop_id, dict(binding.request_body)
        try:
            method = self._gateways.for_shop(shop_id).create_payment_method(str(binding_id), body)
        except GatewayUnknownOutcome as exc:
            self._note_unknown(binding_id, str(exc), exc.retry_after_seconds)
            return
        except GatewayRejected as exc:
            self._record_rejection(binding_id, exc)
            return
        self.record(binding_id, method)

    def resolve(self, binding_id: uuid.UUID) -> None:
        """Settle a binding whose outcome we do not know, by asking the gateway only."""
        with self._sessions() as session:
            binding = session.get(CardBinding, binding_id)
            if binding is None or binding.status not in OPEN_BINDING_STATUSES:
                return
            status = BindingStatus(binding.status)
            method_id = binding.gateway_method_id
            shop_id, body = binding.shop_id, dict(binding.request_body)
            first_sent = binding.submitted_at or binding.created_at
        if status == BindingStatus.CREATED:
            self.submit(binding_id)
            return
        gateway = self._gateways.for_shop(shop_id)
        try:
            if method_id is not None:
                method = gateway.get_payment_method(method_id)
            elif self._clock.now() - first_sent < self._key_replay_limit:
                # The reply was lost: the same key and body return the method it created, if any.
                method = gateway.create_payment_method(str(binding_id), body)
            else:
                self._note_unknown(
                    binding_id, "no payment method id and the key is too old to replay", None
                )
                log.error("card_binding.needs_attention", binding_id=str(binding_id))
                return
        except GatewayUnknownOutcome as exc:
            self._note_unknown(binding_id, str(exc), exc.retry_after_seconds)
            return
        except GatewayRejected as exc:
            if method_id is None:
                self._record_rejection(binding_id, exc)
            else:
                self._note_unknown(binding_id, str(exc), None)
            return
        self.record(binding_id, method)

    def refresh(self, binding_id: uuid.UUID, method_id: str) -> bool:
        """Re-read a payment method a notification told us about. False: try again later."""
        with self._sessions() as session:
            binding = session.get(CardBinding, binding_id)
            if binding is None or binding.status not in OPEN_BINDING_STATUSES:
                return True
            shop_id = binding.shop_id
        try:
            method = self._gateways.for_shop(shop_id).get_payment_method(method_id)
        except GatewayUnknownOutcome as exc:
            log.warning("card_binding.refresh_failed", binding_id=str(binding_id), error=str(exc))
            return False
        except GatewayRejected as exc:
            log.warning("card_binding.refresh_rejected", binding_id=str(binding_id), code=exc.code)
            return True
        self.record(binding_id, method)
        return True

    def record(self, binding_id: uuid.UUID, method: GatewayPaymentMethod) -> None:
        """Apply what the gateway says, monotonically: a stale `pending` after `active` is
        ignored; `active` saves the card and puts the subscription in standby, once."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            binding = session.get(CardBinding, binding_id, with_for_update=True)
            if binding is None:
                return
            if binding.gateway_method_id not in (None, method.id):
                log.error(
                    "card_binding.method_mismatch",
                    binding_id=str(binding_id),
                    gateway_method_id=method.id,
                )
                return
            binding.gateway_method_id = method.id
            target = _GATEWAY_STATUS.get(method.status)
            if target == BindingStatus.ACTIVE and not method.saved:
                target = None  # active but not saved is not a card we may charge
            current = BindingStatus(binding.status)
            if target is None:
                log.warning("card_binding.unknown_gateway_status", status=method.status)
                return
            if target == current:
                binding.confirmation_url = binding.confirmation_url or method.confirmation_url
                return
            if target not in BINDING_TRANSITIONS[current]:
                log.info("card_binding.stale_status_ignored", current=current, seen=target)
                return
            binding.status = target
            binding.last_error = None
            if target == BindingStatus.PENDING:
                binding.confirmation_url = method.confirmation_url
                return
            binding.settled_at = now
            subscription = session.get(Subscription, binding.subscription_id, with_for_update=True)
            assert subscription is not None
            if target == BindingStatus.ACTIVE:
                self._card_saved(session, self._vault, binding, subscription, method, now)
            else:
                self._not_saved(subscription, now)
                log.info("card_binding.inactive", binding_id=str(binding_id))

    @staticmethod
    def _card_saved(
        session: Session,
        vault: MemberVault,
        binding: CardBinding,
        subscription: Subscription,
        method: GatewayPaymentMethod,
        now: datetime,
    ) -> None:
        if subscription.status != SubscriptionStatus.PENDING_CONFIRMATION or method.card is None:
            # Canceled while the member was on the acquirer's page: keep nothing to charge.
            log.info("card_binding.saved_for_ended_subscription", binding_id=str(binding.id))
            return
        saved = save_card(
            session,
            vault,
            member_id=binding.member_id,
            shop_id=binding.shop_id,
            card=method.card,
            now=now,
        )
        subscription.payment_method_id = saved.id
        move(subscription, SubscriptionStatus.STANDBY, now, Cause.CARD_SAVED)
        log.info(
            "standby.card_saved",
            subscription_id=str(subscription.id),
            binding_id=str(binding.id),
        )

    @staticmethod
    def _not_saved(subscription: Subscription, now: datetime) -> None:
        if subscription.status == SubscriptionStatus.PENDING_CONFIRMATION:
            move(subscription, SubscriptionStatus.CANCELED, now, Cause.CARD_NOT_SAVED)

    def _record_rejection(self, binding_id: uuid.UUID, exc: GatewayRejected) -> None:
        """A definite 4xx to the create: nothing exists at the gateway, the binding is over."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            binding = session.get(CardBinding, binding_id, with_for_update=True)
            if binding is None or binding.status != BindingStatus.SUBMITTING:
                return
            binding.status = BindingStatus.INACTIVE
            binding.settled_at = now
            binding.last_error = str(exc)[:500]
            subscription = session.get(Subscription, binding.subscription_id, with_for_update=True)
            assert subscription is not None
            self._not_saved(subscription, now)
        log.error("card_binding.rejected", binding_id=str(binding_id), code=exc.code)

    def _note_unknown(
        self, binding_id: uuid.UUID, error: str, retry_after_seconds: float | None
    ) -> None:
        now = self._clock.now()
        with transaction(self._sessions) as session:
            binding = session.get(CardBinding, binding_id, with_for_update=True)
            if binding is None or binding.status not in OPEN_BINDING_STATUSES:
                return
            binding.last_error = error[:500]
            delay = next_check_delay(binding.checks)
            if retry_after_seconds is not None:
                delay = max(delay, timedelta(seconds=retry_after_seconds))
            binding.next_check_at = now + delay
        log.warning("card_binding.outcome_unknown", binding_id=str(binding_id), error=error)

    # -- sweep and lookups ------------------------------------------------------------------

    def sweep(self, limit: int = 500) -> int:
        """Re-drive every open binding whose check is due (a lost message, a dead worker, a
        member still on the acquirer's page). Returns how many were re-driven."""
        now = self._clock.now()
        work: list[tuple[str, uuid.UUID]] = []
        with transaction(self._sessions) as session:
            due = session.scalars(
                select(CardBinding)
                .where(
                    CardBinding.status.in_(OPEN_BINDING_STATUSES),
                    CardBinding.next_check_at <= now,
                )
                .order_by(CardBinding.next_check_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            for binding in due:
                binding.checks += 1
                binding.next_check_at = now + next_check_delay(binding.checks)
                task = (
                    TASK_BINDING_SUBMIT
                    if binding.status == BindingStatus.CREATED
                    else TASK_BINDING_RESOLVE
                )
                work.append((task, binding.id))
        for task, binding_id in work:
            self._queue.enqueue(task, binding_id=str(binding_id))
        if work:
            log.info("card_bindings.swept", count=len(work))
        return len(work)

    def binding_for_gateway_method(self, method_id: str) -> uuid.UUID | None:
        with self._sessions() as session:
            return session.scalar(
                select(CardBinding.id).where(CardBinding.gateway_method_id == method_id)
            )
