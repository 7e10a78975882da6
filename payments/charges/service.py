"""Charging a card: submit an attempt, record what the gateway says, resolve the unknown.

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
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session, sessionmaker

from core.clock import Clock
from core.crypto import CryptoError
from core.db import transaction
from core.faults import FaultPoints
from core.money import MoneyOut, format_kopecks
from core.outbox import EventType, emit
from core.periods import DEFAULT_TIMEZONE, format_period, local_date, next_period, period_start
from core.queue import TaskQueue
from ledger.service import post_card_payment
from members.models import Member, Organization
from members.pii import DataKeyMissing, MemberVault
from payments.charges import repository
from payments.charges.models import Charge, ChargeAttempt
from payments.charges.scheduling import (
    FIRST_CHECK,
    payment_description,
    payment_metadata,
    saved_card_payment_body,
)

# Re-exported: the metadata names are read by the inbound notifications and the tests.
from payments.charges.scheduling import META_ATTEMPT as META_ATTEMPT
from payments.charges.scheduling import META_CHARGE as META_CHARGE
from payments.charges.scheduling import META_SUBSCRIPTION as META_SUBSCRIPTION
from payments.charges.states import (
    ATTEMPT_TRANSITIONS,
    SELF_SERVICE_KINDS,
    TERMINAL_ATTEMPT_STATUSES,
    AttemptStatus,
    ChargeKind,
    ChargeStatus,
    charge_transition,
)
from payments.gateway.port import (
    Gateway,
    GatewayDirectory,
    GatewayPayment,
    GatewayRejected,
    GatewayUnknownOutcome,
    SavedCard,
)
from payments.retries.policy import NOT_CREATED, Action, RetryPolicy, next_retry_at
from payments.retries.service import effective_policy
from payments.subscriptions.models import TOKEN_INDEX, PaymentMethod, Subscription
from payments.subscriptions.states import LIVE_STATUSES, Cause, SubscriptionStatus, move

log = structlog.get_logger("payments.charges")

TASK_SUBMIT = "payments.submit_attempt"
TASK_RESOLVE = "payments.resolve_attempt"

# How long the sweeper waits before looking at an open attempt again, by how often it looked.
CHECK_BACKOFF = (
    FIRST_CHECK,
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
    timedelta(hours=20),
)
CHECK_BACKOFF_CEILING = timedelta(hours=24)
# Re-checks are spread by up to this fraction on top of the backoff or the gateway's hint, so
# attempts that failed together (a 429 storm, an outage) do not come back together.
CHECK_JITTER_FRACTION = 0.25
# How long YooKassa honours an idempotence key (yookassa.md: 24 h from the first request).
KEY_LIFETIME = timedelta(hours=24)
# Our clock and the gateway's may disagree a little: search the payment list from a bit earlier.
LIST_SEARCH_SLACK = timedelta(minutes=10)
NOT_CREATED_REASON = NOT_CREATED

# A saved card that cannot be charged again takes the subscription to needs_payment_method.
CARD_DEAD_FROM = frozenset(
    {SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE, SubscriptionStatus.STANDBY}
)

_GATEWAY_STATUS = {
    "pending": AttemptStatus.PENDING,
    "waiting_for_capture": AttemptStatus.PENDING,
    "succeeded": AttemptStatus.SUCCEEDED,
    "canceled": AttemptStatus.CANCELED,
}


def next_check_delay(checks: int) -> timedelta:
    return CHECK_BACKOFF[checks] if checks < len(CHECK_BACKOFF) else CHECK_BACKOFF_CEILING


def recheck_delay(checks: int, retry_after_seconds: float | None, rng: random.Random) -> timedelta:
    """When to look at an unknown outcome again: the backoff for this many checks, never sooner
    than the gateway's own hint (429 Retry-After, 202 retry_after), plus jitter on top."""
    delay = next_check_delay(checks)
    if retry_after_seconds is not None:
        delay = max(delay, timedelta(seconds=retry_after_seconds))
    return delay * (1 + rng.uniform(0, CHECK_JITTER_FRACTION))


def charge_description(charge: Charge) -> str:
    """What the acquirer shows for a charge (at most 128 characters, neutral like the above)."""
    if charge.kind == ChargeKind.CARD_CHANGE:
        return "Привязка карты для взносов"
    months = charge.covered_months or []
    if charge.kind == ChargeKind.ARREARS and len(months) > 1:
        first, last = months[0], months[-1]
        return f"Взносы за {first.month:02d}.{first.year}–{last.month:02d}.{last.year}"
    return payment_description(charge.period_month)


def metadata_for(attempt_id: uuid.UUID, charge: Charge) -> dict[str, str]:
    return payment_metadata(attempt_id, charge.id, charge.subscription_id)


def initial_payment_body(attempt_id: uuid.UUID, charge: Charge, return_url: str) -> dict[str, Any]:
    return {
        "amount": {"value": format_kopecks(charge.amount_kopecks), "currency": charge.currency},
        "capture": True,
        "save_payment_method": True,
        "payment_method_data": {"type": "bank_card"},
        "confirmation": {"type": "redirect", "return_url": return_url},
        "description": charge_description(charge),
        "metadata": metadata_for(attempt_id, charge),
    }


def recurring_payment_body(attempt_id: uuid.UUID, charge: Charge) -> dict[str, Any]:
    """The body of an automatic charge, without the card token: `with_card_token` adds it,
    decrypted, just before each send, so it never rests in plaintext."""
    return saved_card_payment_body(
        attempt_id,
        charge_id=charge.id,
        subscription_id=charge.subscription_id,
        period_month=charge.period_month,
        amount_kopecks=charge.amount_kopecks,
        currency=charge.currency,
    )


class CardTokenUnreadable(Exception):
    """The saved card's token cannot be decrypted: its member was erased."""


def gateway_token_aad_parts(method: PaymentMethod) -> tuple[str, str, uuid.UUID]:
    return PaymentMethod.__tablename__, "gateway_token_ciphertext", method.id


def card_token(session: Session, vault: MemberVault, method: PaymentMethod) -> str:
    if method.gateway_token_ciphertext is None:
        raise CardTokenUnreadable(f"payment method {method.id} has no token")
    table, column, row_id = gateway_token_aad_parts(method)
    try:
        return vault.decrypt(
            session, method.member_id, table, column, row_id, method.gateway_token_ciphertext
        )
    except (DataKeyMissing, CryptoError) as exc:
        raise CardTokenUnreadable(f"payment method {method.id}: {exc}") from exc


def with_card_token(session: Session, vault: MemberVault, attempt: ChargeAttempt) -> dict[str, Any]:
    """The attempt's body as sent: the stored body plus, for an automatic charge, the token."""
    body = dict(attempt.request_body)
    if attempt.payment_method_id is not None:
        method = session.get(PaymentMethod, attempt.payment_method_id)
        assert method is not None
        body["payment_method_id"] = card_token(session, vault, method)
    return body


def add_attempt(
    session: Session,
    charge: Charge,
    *,
    shop_id: str,
    body_for: Any,
    now: datetime,
    payment_method_id: uuid.UUID | None = None,
) -> ChargeAttempt:
    """Create the charge's next attempt with its key. The caller commits before any call."""
    previous = repository.last_attempt(session, charge.id)
    attempt_id = uuid.uuid4()
    attempt = ChargeAttempt(
        id=attempt_id,
        charge_id=charge.id,
        attempt_no=(previous.attempt_no + 1) if previous else 1,
        status=AttemptStatus.CREATED,
        shop_id=shop_id,
        request_body=body_for(attempt_id),
        payment_method_id=payment_method_id,
        created_at=now,
        next_check_at=now + next_check_delay(0),
        checks=0,
    )
    session.add(attempt)
    return attempt


def parse_gateway_time(value: Any) -> datetime | None:
    """A YooKassa timestamp (ISO 8601, `Z` for UTC), or None when absent or malformed."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def save_card(
    session: Session,
    vault: MemberVault,
    *,
    member_id: uuid.UUID,
    shop_id: str,
    card: SavedCard,
    now: datetime,
) -> PaymentMethod:
    token_index = vault.token_index(TOKEN_INDEX, card.token)
    existing = session.scalar(
        select(PaymentMethod).where(
            PaymentMethod.shop_id == shop_id, PaymentMethod.gateway_token_index == token_index
        )
    )
    if existing is not None:
        return existing
    method_id = uuid.uuid4()
    method = PaymentMethod(
        id=method_id,
        member_id=member_id,
        shop_id=shop_id,
        gateway_token_ciphertext=vault.encrypt(
            session,
            member_id,
            PaymentMethod.__tablename__,
            "gateway_token_ciphertext",
            method_id,
            card.token,
        ),
        gateway_token_index=token_index,
        card_type=card.card_type,
        card_first6=card.first6,
        card_last4=card.last4,
        expiry_month=card.expiry_month,
        expiry_year=card.expiry_year,
        created_at=now,
    )
    session.add(method)
    session.flush()
    return method


class PaymentMismatch(Exception):
    """The gateway's payment does not belong to this attempt: never apply it."""


class ChargeService:
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
            self._declined(attempt, charge, subscription, NOT_CREATED_REASON, now)
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
                self._apply(session, attempt, payment, now)
        except PaymentMismatch as exc:
            log.error("charge_attempt.payment_mismatch", attempt_id=str(attempt_id), error=str(exc))

    def _apply(
        self, session: Session, attempt: ChargeAttempt, payment: GatewayPayment, now: datetime
    ) -> None:
        charge = session.get(Charge, attempt.charge_id, with_for_update=True)
        assert charge is not None
        named = payment.metadata.get(META_ATTEMPT)
        if named is not None and named != str(attempt.id):
            raise PaymentMismatch(f"payment {payment.id} belongs to attempt {named}")
        if attempt.gateway_payment_id not in (None, payment.id):
            raise PaymentMismatch(
                f"attempt has payment {attempt.gateway_payment_id}, not {payment.id}"
            )
        if payment.amount_kopecks != charge.amount_kopecks or payment.currency != charge.currency:
            raise PaymentMismatch(f"payment {payment.id} amount differs from the charge")
        attempt.gateway_payment_id = payment.id
        target = _GATEWAY_STATUS.get(payment.status)
        current = AttemptStatus(attempt.status)
        if target is None:
            log.warning("charge_attempt.unknown_gateway_status", status=payment.status)
            return
        if target == current:
            attempt.confirmation_url = attempt.confirmation_url or payment.confirmation_url
            return
        if target not in ATTEMPT_TRANSITIONS[current]:
            # Monotonic: a stale status read after a newer one changes nothing.
            log.info("charge_attempt.stale_status_ignored", current=current, seen=target)
            return
        attempt.status = target
        attempt.last_error = None
        if target == AttemptStatus.PENDING:
            attempt.confirmation_url = payment.confirmation_url
            return
        attempt.settled_at = now
        subscription = session.get(Subscription, charge.subscription_id, with_for_update=True)
        assert subscription is not None
        if target == AttemptStatus.SUCCEEDED:
            self._succeeded(session, attempt, charge, subscription, payment, now)
        else:
            self._canceled(attempt, charge, subscription, payment, now)

    def _succeeded(
        self,
        session: Session,
        attempt: ChargeAttempt,
        charge: Charge,
        subscription: Subscription,
        payment: GatewayPayment,
        now: datetime,
    ) -> None:
        charge.status = charge_transition(ChargeStatus(charge.status), ChargeStatus.SUCCEEDED)
        charge.settled_at = now
        charge.next_attempt_at = None
        if payment.payment_method is not None and payment.payment_method.saved:
            method = save_card(
                session,
                self._vault,
                member_id=charge.member_id,
                shop_id=attempt.shop_id,
                card=payment.payment_method,
                now=now,
            )
            if subscription.status == SubscriptionStatus.PENDING_CONFIRMATION or (
                charge.kind in SELF_SERVICE_KINDS and subscription.status in LIVE_STATUSES
            ):
                # A member's own card change or overdue payment saved a new card: it replaces
                # the old one only now, when the payment with it has succeeded.
                if subscription.payment_method_id != method.id:
                    log.info(
                        "subscription.card_replaced",
                        subscription_id=str(subscription.id),
                        charge_id=str(charge.id),
                    )
                subscription.payment_method_id = method.id
        if subscription.status == SubscriptionStatus.PENDING_CONFIRMATION:
            move(subscription, SubscriptionStatus.ACTIVE, now, Cause.FIRST_PAYMENT_SUCCEEDED)
        elif subscription.status == SubscriptionStatus.PAST_DUE:
            cause = Cause.CARD_SAVED if charge.kind == ChargeKind.CARD_CHANGE else None
            move(subscription, SubscriptionStatus.ACTIVE, now, cause or Cause.CHARGE_SUCCEEDED)
        elif (
            subscription.status == SubscriptionStatus.NEEDS_PAYMENT_METHOD
            and charge.kind in SELF_SERVICE_KINDS
        ):
            # The member gave a working card: auto-pay is healthy again.
            move(subscription, SubscriptionStatus.ACTIVE, now, Cause.CARD_SAVED)
        post_card_payment(
            session,
            member_id=charge.member_id,
            organization_id=charge.organization_id,
            gateway_payment_id=payment.id,
            period_month=charge.period_month,
            amount_kopecks=payment.amount_kopecks,
            income_kopecks=payment.income_kopecks,
            occurred_at=parse_gateway_time(payment.raw.get("captured_at")) or now,
            recorded_at=now,
            source_id=str(charge.id),
            timezone=_timezone_of(session, charge.organization_id),
            covered_months=charge.covered_months,
        )
        _emit_payment(
            session,
            EventType.PAYMENT_SUCCEEDED,
            charge,
            gateway_payment_id=payment.id,
            occurred_at=parse_gateway_time(payment.raw.get("captured_at")) or now,
            recorded_at=now,
        )
        log.info(
            "charge.succeeded",
            charge_id=str(charge.id),
            attempt_id=str(attempt.id),
            gateway_payment_id=payment.id,
        )

    def _canceled(
        self,
        attempt: ChargeAttempt,
        charge: Charge,
        subscription: Subscription,
        payment: GatewayPayment,
        now: datetime,
    ) -> None:
        attempt.cancellation_party = payment.cancellation_party
        attempt.cancellation_reason = payment.cancellation_reason
        self._declined(attempt, charge, subscription, payment.cancellation_reason, now)

    def _declined(
        self,
        attempt: ChargeAttempt,
        charge: Charge,
        subscription: Subscription,
        reason: str | None,
        now: datetime,
    ) -> None:
        """The attempt is over at the gateway (`canceled`). The organisation's retry policy
        decides by the decline reason: schedule a new attempt (a new key, made by the
        scheduler when due) while retries and the month remain, stop and ask for a new card,
        or give up on the month."""
        session = object_session(charge)
        assert session is not None
        reason_text = reason or "canceled"
        if charge.kind == ChargeKind.INITIAL or charge.kind in SELF_SERVICE_KINDS:
            # The member is on the acquirer's page: they see the decline and try again there.
            attempt.decision = Action.STOP
            self.fail_charge(charge, subscription, reason_text, now)
            return
        policy, _ = effective_policy(session, charge.organization_id)
        rule = policy.rule_for(reason)
        log_fields = {"charge_id": str(charge.id), "attempt_id": str(attempt.id), "reason": reason}
        if rule.action == Action.NEW_CARD:
            attempt.decision = Action.NEW_CARD
            self.fail_charge(charge, subscription, reason_text, now, card_dead=True)
            log.info("charge.failed_card_dead", **log_fields)
            return
        if rule.action == Action.RETRY:
            retry_at = self._retry_time(session, charge, attempt, policy, rule.max_retries, now)
            if retry_at is not None:
                attempt.decision = Action.RETRY
                charge.next_attempt_at = retry_at
                charge.failure_reason = reason_text[:64]
                if subscription.status == SubscriptionStatus.ACTIVE:
                    move(
                        subscription,
                        SubscriptionStatus.PAST_DUE,
                        now,
                        Cause.CHARGE_DECLINED,
                        reason=reason_text,
                    )
                log.info("charge.retry_scheduled", retry_at=retry_at.isoformat(), **log_fields)
                return
        attempt.decision = Action.STOP
        self.fail_charge(charge, subscription, reason_text, now)
        log.info("charge.failed", **log_fields)

    @staticmethod
    def _retry_time(
        session: Session,
        charge: Charge,
        attempt: ChargeAttempt,
        policy: RetryPolicy,
        max_retries: int,
        now: datetime,
    ) -> datetime | None:
        """When the next attempt is due, or None when no retry is left inside the month."""
        attempts = list(
            session.scalars(
                select(ChargeAttempt)
                .where(ChargeAttempt.charge_id == charge.id)
                .order_by(ChargeAttempt.attempt_no)
            )
        )
        # Every attempt after the first was a retry (this one included).
        retries_made = max(len(attempts), attempt.attempt_no) - 1
        if retries_made >= max_retries:
            return None
        timezone = _timezone_of(session, charge.organization_id)
        first_declined = attempts[0].settled_at if attempts else None
        member = session.get(Member, charge.member_id)
        retry_at = next_retry_at(
            policy,
            retry_no=retries_made + 1,
            first_declined_on=local_date(first_declined or now, timezone),
            last_declined_on=local_date(now, timezone),
            paydays=list(member.paydays) if member is not None and member.paydays else None,
            timezone=timezone,
        )
        until = charge.retry_until or period_start(next_period(charge.period_month), timezone)
        return retry_at if retry_at < until else None

    @staticmethod
    def fail_charge(
        charge: Charge,
        subscription: Subscription,
        reason: str,
        now: datetime,
        *,
        card_dead: bool = False,
    ) -> None:
        """The month's charge is over without a payment. A dead card moves the subscription to
        `needs_payment_method` (the event asks the member for a new card); any other decline
        leaves it past due, to be charged again next month."""
        charge.status = charge_transition(ChargeStatus(charge.status), ChargeStatus.FAILED)
        charge.settled_at = now
        charge.failure_reason = reason[:64]
        charge.next_attempt_at = None
        session = object_session(charge)
        if session is not None:
            _emit_payment(
                session,
                EventType.PAYMENT_FAILED,
                charge,
                gateway_payment_id=None,
                occurred_at=now,
                recorded_at=now,
                reason=reason,
            )
        if charge.kind in SELF_SERVICE_KINDS:
            # The member's own card change or overdue payment failed or was abandoned: the
            # subscription, its card and its months stay exactly as they were.
            return
        status = SubscriptionStatus(subscription.status)
        if status == SubscriptionStatus.PENDING_CONFIRMATION:
            move(
                subscription,
                SubscriptionStatus.CANCELED,
                now,
                Cause.FIRST_PAYMENT_FAILED,
                reason=reason,
            )
        elif card_dead and status in CARD_DEAD_FROM:
            move(
                subscription,
                SubscriptionStatus.NEEDS_PAYMENT_METHOD,
                now,
                Cause.CARD_EXPIRED if reason == "card_expired" else Cause.CARD_DECLINED,
                reason=reason,
            )
        elif status == SubscriptionStatus.ACTIVE:
            move(
                subscription, SubscriptionStatus.PAST_DUE, now, Cause.CHARGE_DECLINED, reason=reason
            )

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
            self.fail_charge(charge, subscription, f"gateway_rejected:{exc.code}", now)
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


def _emit_payment(
    session: Session,
    event_type: EventType,
    charge: Charge,
    *,
    gateway_payment_id: str | None,
    occurred_at: datetime,
    recorded_at: datetime,
    reason: str | None = None,
) -> None:
    """The CRM hears of a payment in the transaction that settled it. Thin: ids, the period,
    the amount and the decline reason; never the member's name or card."""
    member = session.get(Member, charge.member_id)
    data: dict[str, object] = {
        "charge_id": str(charge.id),
        "subscription_id": str(charge.subscription_id),
        "member_id": str(charge.member_id),
        "member_external_id": member.external_id if member else None,
        "period": format_period(charge.period_month),
        "amount": MoneyOut.of(charge.amount_kopecks, charge.currency).model_dump(),
        "status": charge.status,
        "gateway_payment_id": gateway_payment_id,
    }
    if reason is not None:
        data["reason"] = reason
    emit(
        session,
        type=event_type,
        organization_id=charge.organization_id,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        payload=data,
    )


def _timezone_of(session: Session, organization_id: uuid.UUID) -> str:
    org = session.get(Organization, organization_id)
    return org.timezone if org is not None else DEFAULT_TIMEZONE
