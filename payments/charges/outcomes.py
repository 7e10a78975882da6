"""What a gateway answer means for a charge: the attempt's new status (monotonic), the ledger
entry of a success, the subscription's move, the CRM's event, and after a decline the retry
policy's decision. Called by `service.ChargeService` inside the transaction that records it."""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from core.money import MoneyOut
from core.outbox import EventType, emit
from core.periods import DEFAULT_TIMEZONE, format_period, local_date, next_period, period_start
from ledger.service import post_card_payment
from members.models import Member, Organization
from members.pii import MemberVault
from payments.charges.attempts import parse_gateway_time
from payments.charges.models import Charge, ChargeAttempt
from payments.charges.scheduling import META_ATTEMPT
from payments.charges.states import (
    ATTEMPT_TRANSITIONS,
    SELF_SERVICE_KINDS,
    AttemptStatus,
    ChargeKind,
    ChargeStatus,
    charge_transition,
)
from payments.gateway.port import GatewayPayment, SavedCard
from payments.retries.policy import Action, RetryPolicy, next_retry_at
from payments.retries.service import effective_policy
from payments.subscriptions.models import TOKEN_INDEX, PaymentMethod, Subscription
from payments.subscriptions.states import LIVE_STATUSES, Cause, SubscriptionStatus, move

log = structlog.get_logger("payments.charges")

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


def apply_payment(
    session: Session,
    vault: MemberVault,
    attempt: ChargeAttempt,
    payment: GatewayPayment,
    now: datetime,
) -> None:
    """Apply what the gateway says of an attempt's payment, monotonically: a stale status
    after a newer one changes nothing; a success is posted once (keyed by the gateway payment);
    a decline goes to the retry policy. A payment of another attempt or amount is refused."""
    charge = session.get(Charge, attempt.charge_id, with_for_update=True)
    assert charge is not None
    named = payment.metadata.get(META_ATTEMPT)
    if named is not None and named != str(attempt.id):
        raise PaymentMismatch(f"payment {payment.id} belongs to attempt {named}")
    if attempt.gateway_payment_id not in (None, payment.id):
        raise PaymentMismatch(f"attempt has payment {attempt.gateway_payment_id}, not {payment.id}")
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
        _succeeded(session, vault, attempt, charge, subscription, payment, now)
    else:
        _canceled(attempt, charge, subscription, payment, now)


def _succeeded(
    session: Session,
    vault: MemberVault,
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
            vault,
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
    attempt: ChargeAttempt,
    charge: Charge,
    subscription: Subscription,
    payment: GatewayPayment,
    now: datetime,
) -> None:
    attempt.cancellation_party = payment.cancellation_party
    attempt.cancellation_reason = payment.cancellation_reason
    decline(attempt, charge, subscription, payment.cancellation_reason, now)


def decline(
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
        fail_charge(charge, subscription, reason_text, now)
        return
    policy, _ = effective_policy(session, charge.organization_id)
    rule = policy.rule_for(reason)
    log_fields = {"charge_id": str(charge.id), "attempt_id": str(attempt.id), "reason": reason}
    if rule.action == Action.NEW_CARD:
        attempt.decision = Action.NEW_CARD
        fail_charge(charge, subscription, reason_text, now, card_dead=True)
        log.info("charge.failed_card_dead", **log_fields)
        return
    if rule.action == Action.RETRY:
        retry_at = _retry_time(session, charge, attempt, policy, rule.max_retries, now)
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
    fail_charge(charge, subscription, reason_text, now)
    log.info("charge.failed", **log_fields)


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
        move(subscription, SubscriptionStatus.PAST_DUE, now, Cause.CHARGE_DECLINED, reason=reason)


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
