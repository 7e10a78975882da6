"""Monthly billing: one charge per chargeable subscription and month, announced, then attempted.

1. A charge is created `precharge_notice_days` before its billing day, with the amount in force
   for its month; in the same transaction `charge.upcoming` is raised and the charge gets its
   not-before time (`next_attempt_at`: the billing day at the policy's local hour, and never
   before the notice period has passed).
2. `create_due_attempts()` makes an attempt (a new key) for every open charge whose
   `next_attempt_at` has come — the first one, and each retry the policy scheduled after a
   decline — and enqueues its submission. Charges are claimed with `FOR UPDATE SKIP LOCKED` and
   `next_attempt_at` is cleared in the same transaction, so concurrent runs never make two; the
   partial unique index on open attempts is the last word.

`run(period)` is what `vznos billing run --period YYYY-MM` does (every subscription, whatever its
billing day; the notice period still applies); `run_due()` is what the scheduler does every
tick. Both can run any number of times: the unique (subscription, month) index makes a second
charge impossible.
"""

from __future__ import annotations

import calendar
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import structlog
from sqlalchemy import and_, exists, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.db import transaction
from core.money import MoneyOut
from core.outbox import EventType, emit
from core.periods import (
    billing_date,
    format_period,
    local_date,
    next_period,
    period_of,
    period_start,
)
from core.queue import TaskQueue
from ledger.service import post_dues_accrual
from members.models import Member, Organization
from payments.charges import repository
from payments.charges.models import Charge
from payments.charges.service import (
    TASK_SUBMIT,
    ChargeService,
    add_attempt,
    recurring_payment_body,
)
from payments.charges.states import (
    MONTHLY_KINDS,
    AttemptStatus,
    ChargeKind,
    ChargeStatus,
    charge_transition,
)
from payments.retries.policy import at_local_hour
from payments.retries.service import effective_policy
from payments.subscriptions.models import PaymentMethod, Subscription
from payments.subscriptions.repository import amount_for_period
from payments.subscriptions.states import CHARGEABLE_STATUSES, Cause, SubscriptionStatus, move

log = structlog.get_logger("payments.billing")

# An attempt is made only for a subscription in one of these; otherwise the charge is withdrawn.
ATTEMPTABLE_STATUSES = frozenset(
    {SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE, SubscriptionStatus.STANDBY}
)


@dataclass(frozen=True)
class BillingResult:
    period_month: date
    charges_created: int


def card_valid_through(method: PaymentMethod) -> date | None:
    """The last day a card can be charged (cards are valid through their expiry month)."""
    if method.expiry_month is None or method.expiry_year is None:
        return None
    last = calendar.monthrange(method.expiry_year, method.expiry_month)[1]
    return date(method.expiry_year, method.expiry_month, last)


def card_expired_on(method: PaymentMethod, day: date) -> bool:
    valid_through = card_valid_through(method)
    return valid_through is not None and day > valid_through


class BillingService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        queue: TaskQueue,
        batch_size: int = 500,
        notice_days: int = 2,
        expiring_notice_days: int = 10,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._queue = queue
        self._batch_size = batch_size
        self._notice = timedelta(days=notice_days)
        self._expiring_notice = timedelta(days=expiring_notice_days)

    def run(self, period_month: date) -> BillingResult:
        """Charge every chargeable subscription for the month, whatever its billing day, as soon
        as the notice period allows."""
        result = self._run(period_month, timezone=None, through_day=None)
        self.create_due_attempts()
        return result

    def run_due(self) -> list[BillingResult]:
        """Create the charges whose billing day is at most the notice period away, in each
        organisation's time zone, then attempt whatever is due."""
        now = self._clock.now()
        with self._sessions() as session:
            zones = list(session.scalars(select(Organization.timezone).distinct()))
        results = []
        for tz in zones:
            today = local_date(now, tz)
            horizon = today + self._notice
            for period in sorted({today.replace(day=1), horizon.replace(day=1)}):
                results.append(self._run(period, timezone=tz, through_day=horizon))
        self.create_due_attempts()
        return results

    # -- charges --------------------------------------------------------------------------

    def _run(
        self, period: date, *, timezone: str | None, through_day: date | None
    ) -> BillingResult:
        created = 0
        after = uuid.UUID(int=0)
        while True:
            with transaction(self._sessions) as session:
                batch = self._claim_batch(session, period, timezone, after)
                if not batch:
                    break
                for subscription, method, org_tz in batch:
                    after = subscription.id
                    # Chargeable subscriptions are card-mode, which always have a billing day.
                    day = subscription.billing_day or 1
                    if through_day and billing_date(period, day) > through_day:
                        continue
                    charged_on = None if through_day is None else subscription.billing_day
                    if self._create_charge(
                        session, subscription, method, org_tz, period, charged_on
                    ):
                        created += 1
        if created:
            log.info(
                "billing.charges_created", period=period.isoformat(), count=created, tz=timezone
            )
        return BillingResult(period, created)

    def _claim_batch(
        self, session: Session, period: date, timezone: str | None, after: uuid.UUID
    ) -> list[tuple[Subscription, PaymentMethod, str]]:
        already_charged = exists().where(
            and_(
                Charge.subscription_id == Subscription.id,
                Charge.period_month == period,
                Charge.kind.in_(list(MONTHLY_KINDS)),
            )
        )
        query = (
            select(Subscription, PaymentMethod, Organization.timezone)
            .join(PaymentMethod, PaymentMethod.id == Subscription.payment_method_id)
            .join(Organization, Organization.id == Subscription.organization_id)
            .where(
                Subscription.status.in_(CHARGEABLE_STATUSES),
                Subscription.start_period <= period,
                Subscription.id > after,
                ~already_charged,
            )
            .order_by(Subscription.id)
            .limit(self._batch_size)
            .with_for_update(of=Subscription, skip_locked=True)
        )
        if timezone is not None:
            query = query.where(Organization.timezone == timezone)
        return [(row[0], row[1], row[2]) for row in session.execute(query)]

    def _create_charge(
        self,
        session: Session,
        subscription: Subscription,
        method: PaymentMethod,
        timezone: str,
        period: date,
        billing_day: int | None,
    ) -> bool:
        now = self._clock.now()
        policy, _ = effective_policy(session, subscription.organization_id)
        not_before = now + self._notice
        if billing_day is not None:
            on_day = at_local_hour(billing_date(period, billing_day), policy.local_hour, timezone)
            not_before = max(not_before, on_day)
        if card_expired_on(method, local_date(not_before, timezone)):
            # An expired card is not charged at all: the member is asked for a new one.
            move(
                subscription,
                SubscriptionStatus.NEEDS_PAYMENT_METHOD,
                now,
                Cause.CARD_EXPIRED,
                reason="card_expired",
            )
            return False
        amount = amount_for_period(session, subscription, period)
        charge_id = session.scalar(
            insert(Charge)
            .values(
                id=uuid.uuid4(),
                subscription_id=subscription.id,
                member_id=subscription.member_id,
                organization_id=subscription.organization_id,
                period_month=period,
                kind=ChargeKind.RECURRING,
                status=ChargeStatus.PENDING,
                amount_kopecks=amount,
                currency=subscription.currency,
                created_at=now,
                upcoming_notice_at=now,
                next_attempt_at=not_before,
                retry_until=period_start(next_period(period), timezone),
            )
            .on_conflict_do_nothing(
                index_elements=["subscription_id", "period_month"],
                index_where=text("kind IN ('initial', 'recurring')"),
            )
            .returning(Charge.id)
        )
        if charge_id is None:
            return False
        post_dues_accrual(
            session,
            member_id=subscription.member_id,
            organization_id=subscription.organization_id,
            period_month=period,
            amount_kopecks=amount,
            occurred_at=min(now, period_start(period, timezone)),
            recorded_at=now,
            source_type="charge",
            source_id=str(charge_id),
            timezone=timezone,
        )
        announce_charge(
            session,
            subscription,
            charge_id=charge_id,
            period=period,
            amount_kopecks=amount,
            not_before=not_before,
            timezone=timezone,
            now=now,
        )
        return True

    # -- attempts -------------------------------------------------------------------------

    def create_due_attempts(self) -> int:
        """Make the next attempt (a new key) of every open charge whose time has come."""
        made = 0
        while True:
            now = self._clock.now()
            attempt_ids: list[uuid.UUID] = []
            with transaction(self._sessions) as session:
                charges = repository.claim_due_charges(session, now, self._batch_size)
                if not charges:
                    break
                for charge in charges:
                    attempt_id = self._attempt(session, charge, now)
                    if attempt_id is not None:
                        attempt_ids.append(attempt_id)
            # Enqueue after commit; if a message is lost the sweeper submits the attempt anyway.
            for attempt_id in attempt_ids:
                self._queue.enqueue(TASK_SUBMIT, attempt_id=str(attempt_id))
            made += len(attempt_ids)
        if made:
            log.info("billing.attempts_created", count=made)
        return made

    def _attempt(self, session: Session, charge: Charge, now: datetime) -> uuid.UUID | None:
        # Whatever happens below, this charge's due time is consumed in this transaction.
        charge.next_attempt_at = None
        previous = repository.last_attempt(session, charge.id)
        if previous is not None and previous.status != AttemptStatus.CANCELED:
            # A new key only after the gateway said the last attempt is over (G1).
            log.error("billing.attempt_still_open", charge_id=str(charge.id))
            return None
        subscription = session.get(Subscription, charge.subscription_id, with_for_update=True)
        assert subscription is not None
        method = (
            session.get(PaymentMethod, subscription.payment_method_id)
            if subscription.payment_method_id
            else None
        )
        if subscription.status not in ATTEMPTABLE_STATUSES or method is None:
            # Paused, canceled or without a card since the notice: this month is not charged.
            charge.status = charge_transition(ChargeStatus(charge.status), ChargeStatus.CANCELED)
            charge.settled_at = now
            charge.failure_reason = f"subscription_{subscription.status}"
            log.info("charge.withdrawn", charge_id=str(charge.id), status=subscription.status)
            return None
        if previous is not None and charge.retry_until is not None and now >= charge.retry_until:
            # The month is over: no retry reaches into the next one.
            ChargeService.fail_charge(
                charge, subscription, charge.failure_reason or "month_ended", now
            )
            log.info("charge.month_ended", charge_id=str(charge.id))
            return None
        timezone = _timezone(session, charge.organization_id)
        if card_expired_on(method, local_date(now, timezone)):
            ChargeService.fail_charge(charge, subscription, "card_expired", now, card_dead=True)
            log.info("charge.card_expired", charge_id=str(charge.id))
            return None
        attempt = add_attempt(
            session,
            charge,
            shop_id=method.shop_id,
            body_for=lambda attempt_id: recurring_payment_body(attempt_id, charge),
            now=now,
            payment_method_id=method.id,
        )
        return attempt.id

    # -- expiring cards -------------------------------------------------------------------

    def notify_expiring_cards(self) -> int:
        """Raise `card.expiring` once per card that expires before the subscription's next
        charge, `expiring_notice_days` ahead of that charge."""
        now = self._clock.now()
        # Only cards expiring within the next few months can matter; the rest are skipped in SQL.
        horizon = (now + self._expiring_notice + timedelta(days=62)).date()
        raised = 0
        with transaction(self._sessions) as session:
            rows = session.execute(
                select(Subscription, PaymentMethod, Organization.timezone)
                .join(PaymentMethod, PaymentMethod.id == Subscription.payment_method_id)
                .join(Organization, Organization.id == Subscription.organization_id)
                .where(
                    Subscription.status.in_(CHARGEABLE_STATUSES),
                    PaymentMethod.expiring_notice_at.is_(None),
                    PaymentMethod.expiry_year * 12 + PaymentMethod.expiry_month
                    <= horizon.year * 12 + horizon.month,
                )
                .with_for_update(of=PaymentMethod, skip_locked=True)
            ).all()
            for subscription, method, timezone in rows:
                if subscription.billing_day is None:
                    continue  # no monthly charge to be ahead of
                next_day = next_charge_day(session, subscription, now, timezone)
                valid_through = card_valid_through(method)
                if valid_through is None or valid_through >= next_day:
                    continue
                if local_date(now, timezone) < next_day - self._expiring_notice:
                    continue
                method.expiring_notice_at = now
                _emit_card_expiring(session, subscription, method, next_day, now)
                raised += 1
        if raised:
            log.info("billing.cards_expiring", count=raised)
        return raised


def next_charge_day(
    session: Session, subscription: Subscription, now: datetime, timezone: str
) -> date:
    """The billing day of the first month from now on that has no charge yet."""
    period = max(period_of(now, timezone), subscription.start_period)
    for _ in range(24):
        charged = session.scalar(
            select(Charge.id).where(
                Charge.subscription_id == subscription.id, Charge.period_month == period
            )
        )
        if charged is None:
            break
        period = next_period(period)
    return billing_date(period, subscription.billing_day or 1)


def announce_charge(
    session: Session,
    subscription: Subscription,
    *,
    charge_id: uuid.UUID,
    period: date,
    amount_kopecks: int,
    not_before: datetime,
    timezone: str,
    now: datetime,
) -> None:
    """`charge.upcoming`: the member is told before every automatic charge (YooKassa's rule),
    and the charge is not attempted before `charge_not_before`."""
    member = session.get(Member, subscription.member_id)
    emit(
        session,
        type=EventType.CHARGE_UPCOMING,
        organization_id=subscription.organization_id,
        occurred_at=now,
        payload={
            "charge_id": str(charge_id),
            "subscription_id": str(subscription.id),
            "member_id": str(subscription.member_id),
            "member_external_id": member.external_id if member else None,
            "period": format_period(period),
            "amount": MoneyOut.of(amount_kopecks, subscription.currency).model_dump(),
            "charge_on": local_date(not_before, timezone).isoformat(),
            "charge_not_before": not_before.isoformat(),
        },
    )


def _emit_card_expiring(
    session: Session,
    subscription: Subscription,
    method: PaymentMethod,
    next_day: date,
    now: datetime,
) -> None:
    member = session.get(Member, subscription.member_id)
    emit(
        session,
        type=EventType.CARD_EXPIRING,
        organization_id=subscription.organization_id,
        occurred_at=now,
        payload={
            "subscription_id": str(subscription.id),
            "member_id": str(subscription.member_id),
            "member_external_id": member.external_id if member else None,
            "card": {
                "last4": method.card_last4,
                "expiry_month": method.expiry_month,
                "expiry_year": method.expiry_year,
            },
            "next_charge_on": next_day.isoformat(),
        },
    )


def _timezone(session: Session, organization_id: uuid.UUID) -> str:
    org = session.get(Organization, organization_id)
    assert org is not None
    return org.timezone
