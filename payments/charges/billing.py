"""Monthly billing: one charge per chargeable subscription and month, then submit it.

`run(period)` is what `vznos billing run --period YYYY-MM` does; `run_due(now)` is what the
scheduler does every tick: the same work limited to subscriptions whose billing day has come in
their organisation's time zone. Both can run any number of times: the unique
(subscription, month) index makes a second charge impossible.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

import structlog
from sqlalchemy import and_, exists, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.db import transaction
from core.periods import billing_date, local_date, period_start
from core.queue import TaskQueue
from ledger.service import post_dues_accrual
from members.models import Organization
from payments.charges.models import Charge
from payments.charges.service import TASK_SUBMIT, add_attempt, recurring_payment_body
from payments.charges.states import MONTHLY_KINDS, ChargeKind, ChargeStatus
from payments.subscriptions.models import PaymentMethod, Subscription
from payments.subscriptions.states import CHARGEABLE_STATUSES

log = structlog.get_logger("payments.billing")


@dataclass(frozen=True)
class BillingResult:
    period_month: date
    charges_created: int


class BillingService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        queue: TaskQueue,
        batch_size: int = 500,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._queue = queue
        self._batch_size = batch_size

    def run(self, period_month: date) -> BillingResult:
        """Charge every chargeable subscription for the month, whatever its billing day."""
        return self._run(period_month, timezone=None, through_day=None)

    def run_due(self) -> list[BillingResult]:
        """Charge what is due today in each organisation's time zone."""
        now = self._clock.now()
        with self._sessions() as session:
            zones = list(session.scalars(select(Organization.timezone).distinct()))
        results = []
        for tz in zones:
            today = local_date(now, tz)
            period = today.replace(day=1)
            results.append(self._run(period, timezone=tz, through_day=today))
        return results

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
                attempt_ids = []
                for subscription, method_id, org_id, org_tz in batch:
                    after = subscription.id
                    # Chargeable subscriptions are card-mode, which always have a billing day.
                    day = subscription.billing_day or 1
                    if through_day and billing_date(period, day) > through_day:
                        continue
                    attempt_id = self._create_charge(
                        session, subscription, method_id, org_id, org_tz, period
                    )
                    if attempt_id is not None:
                        attempt_ids.append(attempt_id)
            # Enqueue after commit; if a message is lost the sweeper submits the attempt anyway.
            for attempt_id in attempt_ids:
                self._queue.enqueue(TASK_SUBMIT, attempt_id=str(attempt_id))
            created += len(attempt_ids)
        if created:
            log.info(
                "billing.charges_created", period=period.isoformat(), count=created, tz=timezone
            )
        return BillingResult(period, created)

    def _claim_batch(
        self, session: Session, period: date, timezone: str | None, after: uuid.UUID
    ) -> list[tuple[Subscription, uuid.UUID, uuid.UUID, str]]:
        already_charged = exists().where(
            and_(
                Charge.subscription_id == Subscription.id,
                Charge.period_month == period,
                Charge.kind.in_(list(MONTHLY_KINDS)),
            )
        )
        query = (
            select(Subscription, PaymentMethod.id, Organization.id, Organization.timezone)
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
        return [(row[0], row[1], row[2], row[3]) for row in session.execute(query)]

    def _create_charge(
        self,
        session: Session,
        subscription: Subscription,
        payment_method_id: uuid.UUID,
        organization_id: uuid.UUID,
        timezone: str,
        period: date,
    ) -> uuid.UUID | None:
        now = self._clock.now()
        charge_id = session.scalar(
            insert(Charge)
            .values(
                id=uuid.uuid4(),
                subscription_id=subscription.id,
                member_id=subscription.member_id,
                organization_id=organization_id,
                period_month=period,
                kind=ChargeKind.RECURRING,
                status=ChargeStatus.PENDING,
                amount_kopecks=subscription.amount_kopecks,
                currency=subscription.currency,
                created_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=["subscription_id", "period_month"],
                index_where=text("kind IN ('initial', 'recurring')"),
            )
            .returning(Charge.id)
        )
        if charge_id is None:
            return None
        charge = session.get(Charge, charge_id)
        assert charge is not None
        shop_id = _shop_of(session, subscription)
        attempt = add_attempt(
            session,
            charge,
            shop_id=shop_id,
            body_for=lambda attempt_id: recurring_payment_body(attempt_id, charge),
            now=now,
            payment_method_id=payment_method_id,
        )
        post_dues_accrual(
            session,
            member_id=subscription.member_id,
            organization_id=organization_id,
            period_month=period,
            amount_kopecks=subscription.amount_kopecks,
            occurred_at=min(now, period_start(period, timezone)),
            recorded_at=now,
            source_type="charge",
            source_id=str(charge.id),
            timezone=timezone,
        )
        return attempt.id


def _shop_of(session: Session, subscription: Subscription) -> str:
    """The shop holding the subscription's saved card: a card token is only valid there."""
    method = session.get(PaymentMethod, subscription.payment_method_id)
    assert method is not None
    return method.shop_id
