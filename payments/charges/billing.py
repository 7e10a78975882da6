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
from typing import Any

import structlog
from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.db import transaction
from core.money import MoneyOut
from core.outbox import EventType, emit, emit_many
from core.periods import (
    DEFAULT_TIMEZONE,
    billing_date,
    format_period,
    local_date,
    next_period,
    period_of,
    period_start,
)
from core.queue import TaskQueue
from members.models import Member, Organization
from payments.charges import repository
from payments.charges.models import Charge, ChargeAttempt
from payments.charges.outcomes import fail_charge
from payments.charges.scheduling import (
    AttemptDraft,
    ChargeDraft,
    ScheduledCharge,
    insert_attempts,
    schedule_charges,
)
from payments.charges.service import TASK_SUBMIT
from payments.charges.states import (
    MONTHLY_KINDS,
    AttemptStatus,
    ChargeKind,
    ChargeStatus,
    charge_transition,
)
from payments.retries.policy import RetryPolicy, at_local_hour
from payments.retries.service import effective_policy
from payments.subscriptions.models import PaymentMethod, Subscription
from payments.subscriptions.repository import amounts_for_period
from payments.subscriptions.states import CHARGEABLE_STATUSES, Cause, SubscriptionStatus, move

log = structlog.get_logger("payments.billing")

# An attempt is made only for a subscription in one of these; otherwise the charge is withdrawn.
ATTEMPTABLE_STATUSES = frozenset(
    {SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE, SubscriptionStatus.STANDBY}
)


@dataclass(frozen=True)
class _Chargeable:
    subscription: Subscription
    method: PaymentMethod
    timezone: str
    member_external_id: str | None


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
                after = batch[-1].subscription.id
                # Chargeable subscriptions are card-mode, which always have a billing day.
                due = [
                    row
                    for row in batch
                    if through_day is None
                    or billing_date(period, row.subscription.billing_day or 1) <= through_day
                ]
                scheduled = self._create_charges(
                    session, due, period, on_billing_day=through_day is not None
                )
            created += len(scheduled)
            self._enqueue([s.attempt_id for s in scheduled if s.attempt_id is not None])
        if created:
            log.info(
                "billing.charges_created", period=period.isoformat(), count=created, tz=timezone
            )
        return BillingResult(period, created)

    def _claim_batch(
        self, session: Session, period: date, timezone: str | None, after: uuid.UUID
    ) -> list[_Chargeable]:
        already_charged = exists().where(
            and_(
                Charge.subscription_id == Subscription.id,
                Charge.period_month == period,
                Charge.kind.in_(list(MONTHLY_KINDS)),
            )
        )
        query = (
            select(Subscription, PaymentMethod, Organization.timezone, Member.external_id)
            .join(PaymentMethod, PaymentMethod.id == Subscription.payment_method_id)
            .join(Organization, Organization.id == Subscription.organization_id)
            .join(Member, Member.id == Subscription.member_id)
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
        return [_Chargeable(row[0], row[1], row[2], row[3]) for row in session.execute(query)]

    def _create_charges(
        self, session: Session, batch: list[_Chargeable], period: date, *, on_billing_day: bool
    ) -> list[ScheduledCharge]:
        """A batch's charges in a handful of statements: amounts in one query, the charges,
        their accruals and (when due already) first attempts through `schedule_charges`, and
        every `charge.upcoming` in one insert."""
        if not batch:
            return []
        now = self._clock.now()
        amounts = amounts_for_period(session, [row.subscription for row in batch], period)
        policies: dict[uuid.UUID, RetryPolicy] = {}
        drafts: list[ChargeDraft] = []
        for row in batch:
            subscription, method, timezone = row.subscription, row.method, row.timezone
            org_id = subscription.organization_id
            if org_id not in policies:
                policies[org_id] = effective_policy(session, org_id)[0]
            not_before = now + self._notice
            if on_billing_day and subscription.billing_day is not None:
                on_day = at_local_hour(
                    billing_date(period, subscription.billing_day),
                    policies[org_id].local_hour,
                    timezone,
                )
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
                continue
            amount = amounts[subscription.id]
            if amount <= 0:
                log.info("billing.nothing_to_charge", subscription_id=str(subscription.id))
                continue
            drafts.append(
                ChargeDraft(
                    subscription_id=subscription.id,
                    member_id=subscription.member_id,
                    organization_id=org_id,
                    timezone=timezone,
                    period_month=period,
                    kind=ChargeKind.RECURRING,
                    amount_kopecks=amount,
                    currency=subscription.currency,
                    accrual_kopecks=amount,
                    not_before=not_before,
                    retry_until=period_start(next_period(period), timezone),
                    shop_id=method.shop_id,
                    payment_method_id=method.id,
                    upcoming_notice_at=now,
                )
            )
        scheduled = schedule_charges(session, drafts, now=now)
        external_ids = {row.subscription.id: row.member_external_id for row in batch}
        emit_many(
            session,
            type=EventType.CHARGE_UPCOMING,
            occurred_at=now,
            events=[
                (
                    item.draft.organization_id,
                    upcoming_payload(
                        item.draft,
                        charge_id=item.charge_id,
                        member_external_id=external_ids[item.draft.subscription_id],
                    ),
                )
                for item in scheduled
            ],
        )
        return scheduled

    def _enqueue(self, attempt_ids: list[uuid.UUID]) -> None:
        # After commit; if a message is lost the sweeper submits the attempt anyway.
        for attempt_id in attempt_ids:
            self._queue.enqueue(TASK_SUBMIT, attempt_id=str(attempt_id))

    # -- attempts -------------------------------------------------------------------------

    def create_due_attempts(self) -> int:
        """Make the next attempt (a new key) of every open charge whose time has come: a
        monthly charge after its notice period, and every retry the policy scheduled (of
        monthly and standby shortfall charges alike)."""
        made = 0
        while True:
            now = self._clock.now()
            with transaction(self._sessions) as session:
                charges = repository.claim_due_charges(session, now, self._batch_size)
                if not charges:
                    break
                attempt_ids = self._attempts(session, charges, now)
            self._enqueue(attempt_ids)
            made += len(attempt_ids)
        if made:
            log.info("billing.attempts_created", count=made)
        return made

    def _attempts(self, session: Session, charges: list[Charge], now: datetime) -> list[uuid.UUID]:
        """The claimed charges' next attempts, with everything they need read in four queries
        and the attempts inserted in one."""
        previous = repository.last_attempts(session, [charge.id for charge in charges])
        subscriptions = repository.subscriptions_for_update(
            session, [charge.subscription_id for charge in charges]
        )
        methods = repository.payment_methods(
            session, [s.payment_method_id for s in subscriptions.values() if s.payment_method_id]
        )
        zones = repository.timezones(session, [charge.organization_id for charge in charges])
        drafts: list[AttemptDraft] = []
        for charge in charges:
            last = previous.get(charge.id)
            subscription = subscriptions[charge.subscription_id]
            method = (
                methods.get(subscription.payment_method_id)
                if subscription.payment_method_id
                else None
            )
            if self._may_attempt(charge, last, subscription, method, zones, now):
                assert method is not None
                drafts.append(
                    AttemptDraft(
                        charge_id=charge.id,
                        subscription_id=charge.subscription_id,
                        attempt_no=(last.attempt_no + 1) if last else 1,
                        period_month=charge.period_month,
                        amount_kopecks=charge.amount_kopecks,
                        currency=charge.currency,
                        shop_id=method.shop_id,
                        payment_method_id=method.id,
                    )
                )
        return insert_attempts(session, drafts, now)

    @staticmethod
    def _may_attempt(
        charge: Charge,
        previous: ChargeAttempt | None,
        subscription: Subscription,
        method: PaymentMethod | None,
        zones: dict[uuid.UUID, str],
        now: datetime,
    ) -> bool:
        # Whatever happens below, this charge's due time is consumed in this transaction.
        charge.next_attempt_at = None
        if previous is not None and previous.status != AttemptStatus.CANCELED:
            # A new key only after the gateway said the last attempt is over (G1).
            log.error("billing.attempt_still_open", charge_id=str(charge.id))
            return False
        if subscription.status not in ATTEMPTABLE_STATUSES or method is None:
            # Paused, canceled or without a card since the notice: this month is not charged.
            charge.status = charge_transition(ChargeStatus(charge.status), ChargeStatus.CANCELED)
            charge.settled_at = now
            charge.failure_reason = f"subscription_{subscription.status}"
            log.info("charge.withdrawn", charge_id=str(charge.id), status=subscription.status)
            return False
        if previous is not None and charge.retry_until is not None and now >= charge.retry_until:
            # The month is over: no retry reaches into the next one.
            fail_charge(charge, subscription, charge.failure_reason or "month_ended", now)
            log.info("charge.month_ended", charge_id=str(charge.id))
            return False
        timezone = zones.get(charge.organization_id, DEFAULT_TIMEZONE)
        if card_expired_on(method, local_date(now, timezone)):
            fail_charge(charge, subscription, "card_expired", now, card_dead=True)
            log.info("charge.card_expired", charge_id=str(charge.id))
            return False
        return True

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


def upcoming_payload(
    draft: ChargeDraft, *, charge_id: uuid.UUID, member_external_id: str | None
) -> dict[str, Any]:
    """`charge.upcoming`: the member is told before every automatic charge (YooKassa's rule),
    and the charge is not attempted before `charge_not_before`."""
    return {
        "charge_id": str(charge_id),
        "subscription_id": str(draft.subscription_id),
        "member_id": str(draft.member_id),
        "member_external_id": member_external_id,
        "period": format_period(draft.period_month),
        "amount": MoneyOut.of(draft.amount_kopecks, draft.currency).model_dump(),
        "charge_on": local_date(draft.not_before, draft.timezone).isoformat(),
        "charge_not_before": draft.not_before.isoformat(),
    }


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
