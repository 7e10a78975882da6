"""Use cases of a member's card auto-pay: start it, read it, cancel it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.clock import Clock
from core.db import transaction
from core.money import MoneyOut
from core.outbox import EventType, emit
from core.periods import (
    billing_date,
    format_period,
    local_date,
    next_period,
    parse_period,
    period_of,
    period_start,
)
from ledger.service import post_dues_accrual
from members.consents import ConsentEvidence, record_consent
from members.models import Member, Organization
from members.service import Principal, visible_member
from payments.charges import repository as charges_repository
from payments.charges.arrears import Overdue, overdue
from payments.charges.attempts import add_attempt, initial_payment_body
from payments.charges.models import Charge, ChargeAttempt
from payments.charges.service import ChargeService
from payments.charges.states import MONTHLY_KINDS, AttemptStatus, ChargeKind, ChargeStatus
from payments.gateway.port import GatewayDirectory
from payments.standby.models import CardBinding
from payments.standby.states import BindingStatus
from payments.subscriptions.errors import (
    AmountOutOfRange,
    InvalidChange,
    LiveSubscriptionExists,
    NothingOverdue,
    SubscriptionNotFound,
    SubscriptionNotLive,
    SubscriptionStateConflict,
)
from payments.subscriptions.models import (
    PaymentMethod,
    Subscription,
    SubscriptionAmountChange,
    SubscriptionStatusChange,
)
from payments.subscriptions.repository import amount_changes, amount_for_period
from payments.subscriptions.schemas import (
    AmountChangeOut,
    AttemptOut,
    CardOut,
    LastChargeOut,
    StatusChangeOut,
    SubscriptionChange,
    SubscriptionCreate,
    SubscriptionOut,
)
from payments.subscriptions.states import (
    CHARGEABLE_STATUSES,
    LIVE_STATUSES,
    PAUSABLE_STATUSES,
    Cause,
    SubscriptionStatus,
    move,
    record_created,
    resume_target,
)

log = structlog.get_logger("payments.subscriptions")

# Where a member may change the card or pay what is overdue: auto-pay is on, whatever its state,
# once the first payment has saved a card.
SELF_SERVICE_STATUSES = LIVE_STATUSES - {SubscriptionStatus.PENDING_CONFIRMATION}

# A bank card payment at YooKassa is 1 to 350 000 roubles.
MIN_CARD_KOPECKS = 100
MAX_CARD_KOPECKS = 350_000_00


class SubscriptionService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        gateways: GatewayDirectory,
        charges: ChargeService,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._gateways = gateways
        self._charges = charges

    def start(
        self, principal: Principal, external_id: str, data: SubscriptionCreate
    ) -> SubscriptionOut:
        """Create the subscription and its first payment, which the member confirms on the
        acquirer's page. The payment's key is committed before the gateway hears of it."""
        subscription_id = self._start(
            lambda session: visible_member(session, principal, external_id), data, None
        )
        return self.get(principal, subscription_id)

    def start_for_member(
        self, member_id: uuid.UUID, data: SubscriptionCreate, consent: ConsentEvidence
    ) -> SubscriptionOut:
        """The member starts auto-pay on the self-service page; their consent is recorded, with
        its time and address, in the transaction that creates the subscription."""
        subscription_id = self._start(lambda session: _member(session, member_id), data, consent)
        with self._sessions() as session:
            subscription = session.get(Subscription, subscription_id)
            assert subscription is not None
            return self._view(session, subscription, _member(session, member_id))

    def _start(
        self,
        find_member: Callable[[Session], Member],
        data: SubscriptionCreate,
        consent: ConsentEvidence | None,
    ) -> uuid.UUID:
        amount = data.amount.kopecks
        if not MIN_CARD_KOPECKS <= amount <= MAX_CARD_KOPECKS:
            raise AmountOutOfRange(
                "a card payment must be between 1.00 and 350000.00 RUB", field="amount.value"
            )
        now = self._clock.now()
        try:
            with transaction(self._sessions) as session:
                member = find_member(session)
                external_id = member.external_id
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
                start = period_of(now, org.timezone)
                if _paid_by_card(session, member.id, start):
                    start = next_period(start)
                subscription = Subscription(
                    id=uuid.uuid4(),
                    member_id=member.id,
                    organization_id=org.id,
                    status=SubscriptionStatus.PENDING_CONFIRMATION,
                    amount_kopecks=amount,
                    currency=data.amount.currency,
                    billing_day=data.billing_day,
                    start_period=start,
                    consent_version=data.consent.text_version,
                    consent_accepted_at=data.consent.accepted_at,
                    return_url=str(data.return_url),
                    created_at=now,
                    status_changed_at=now,
                )
                session.add(subscription)
                session.flush()
                record_created(subscription, now)
                charge = Charge(
                    id=uuid.uuid4(),
                    subscription_id=subscription.id,
                    member_id=member.id,
                    organization_id=org.id,
                    period_month=start,
                    kind=ChargeKind.INITIAL,
                    status=ChargeStatus.PENDING,
                    amount_kopecks=amount,
                    currency=data.amount.currency,
                    created_at=now,
                )
                session.add(charge)
                session.flush()
                attempt = add_attempt(
                    session,
                    charge,
                    shop_id=self._gateways.shop_for_organization(org.id),
                    body_for=lambda attempt_id: initial_payment_body(
                        attempt_id, charge, str(data.return_url)
                    ),
                    now=now,
                )
                post_dues_accrual(
                    session,
                    member_id=member.id,
                    organization_id=org.id,
                    period_month=start,
                    amount_kopecks=amount,
                    occurred_at=min(now, period_start(start, org.timezone)),
                    recorded_at=now,
                    source_type="charge",
                    source_id=str(charge.id),
                    timezone=org.timezone,
                )
                if consent is not None:
                    record_consent(
                        session,
                        member_id=member.id,
                        evidence=consent,
                        accepted_at=data.consent.accepted_at,
                        source_type="subscription",
                        source_id=str(subscription.id),
                    )
                subscription_id, attempt_id = subscription.id, attempt.id
                audit.record(
                    session,
                    "subscription.started",
                    at=now,
                    organization_id=org.id,
                    subject_type="subscription",
                    subject_id=subscription.id,
                    details={"member_id": str(member.id), "amount_kopecks": amount},
                )
        except IntegrityError as exc:
            if _constraint(exc) != "uq_subscriptions_one_live_per_member":
                raise
            # Two concurrent starts for one member: the partial unique index let one through.
            raise LiveSubscriptionExists(
                "the member already has a live subscription", field="external_id"
            ) from exc
        log.info("subscription.started", subscription_id=str(subscription_id))
        # The member waits for the confirmation URL, so the first payment is sent right away;
        # if the gateway's answer is lost, the sweeper resolves it with the same key.
        self._charges.submit(attempt_id)
        return subscription_id

    def get(self, principal: Principal, subscription_id: uuid.UUID) -> SubscriptionOut:
        with self._sessions() as session:
            subscription, member = self._visible(session, principal, subscription_id)
            return self._view(session, subscription, member)

    def cancel(
        self,
        principal: Principal,
        subscription_id: uuid.UUID,
        cause: Cause = Cause.BY_CRM,
    ) -> SubscriptionOut:
        """Stop auto-pay. Canceling a canceled subscription changes nothing and is not an error."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            subscription, _ = self._visible(session, principal, subscription_id, for_update=True)
            if move(subscription, SubscriptionStatus.CANCELED, now, cause):
                log.info("subscription.canceled", subscription_id=str(subscription_id))
                audit.record(
                    session,
                    "subscription.canceled",
                    at=now,
                    organization_id=subscription.organization_id,
                    subject_type="subscription",
                    subject_id=subscription_id,
                )
        return self.get(principal, subscription_id)

    # -- the member's own actions (self-service pages) -----------------------------------------

    def member_subscription(self, member_id: uuid.UUID) -> SubscriptionOut | None:
        """The member's live subscription, or else their latest one; None if they never had one."""
        with self._sessions() as session:
            subscription = _latest_subscription(session, member_id)
            if subscription is None:
                return None
            return self._view(session, subscription, _member(session, member_id))

    def cancel_by_member(self, member_id: uuid.UUID) -> bool:
        """The member stops auto-pay at once. False when there was nothing live to stop."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            subscription = _latest_subscription(session, member_id, for_update=True)
            if subscription is None or subscription.status not in LIVE_STATUSES:
                return False
            moved = move(subscription, SubscriptionStatus.CANCELED, now, Cause.BY_MEMBER)
            subscription_id = subscription.id
        if moved:
            log.info("subscription.canceled", subscription_id=str(subscription_id), by="member")
        return moved

    def overdue(self, member_id: uuid.UUID) -> Overdue:
        with self._sessions() as session:
            subscription = _latest_subscription(session, member_id)
            if subscription is None or subscription.status not in SELF_SERVICE_STATUSES:
                return Overdue(())
            return overdue(session, subscription, self._current_period(session, subscription))

    def change_card(self, member_id: uuid.UUID, return_url: str) -> str | None:
        """A small first payment on the acquirer's page that saves a new card; the new card
        replaces the old one only when that payment succeeds (see `charges.outcomes`).

        The amount is the smallest card payment YooKassa accepts (1.00 RUB), not a month's
        dues: it never collides with the month's automatic charge or its retries, an abandoned
        change costs the member nothing, and the rouble is not lost — it is posted to the
        member's account like any payment and counts towards the next dues."""

        def no_months(_session: Session, subscription: Subscription) -> None:
            if subscription.status == SubscriptionStatus.STANDBY:
                # Standby terms promise no charge while payroll pays: a standby card is
                # replaced by saving one without a payment, not here.
                raise SubscriptionNotLive(
                    "a standby card is changed without a payment", field="subscription"
                )

        return self._self_service_charge(member_id, ChargeKind.CARD_CHANGE, return_url, no_months)

    def pay_overdue(self, member_id: uuid.UUID, return_url: str) -> str | None:
        """One payment covering every overdue month; it saves the card it was made with, which
        becomes the auto-pay card when the payment succeeds."""

        def months(session: Session, subscription: Subscription) -> Overdue | None:
            found = overdue(session, subscription, self._current_period(session, subscription))
            if not found.months:
                raise NothingOverdue("nothing is overdue", field="overdue")
            return found

        return self._self_service_charge(member_id, ChargeKind.ARREARS, return_url, months)

    def _self_service_charge(
        self,
        member_id: uuid.UUID,
        kind: ChargeKind,
        return_url: str,
        months_of: Callable[[Session, Subscription], Overdue | None],
    ) -> str | None:
        """Create (or reuse, on a double click) the member's payment of this kind and return
        where to confirm it. The attempt's key is committed before the gateway hears of it."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            subscription = _latest_subscription(session, member_id, for_update=True)
            if subscription is None or subscription.status not in SELF_SERVICE_STATUSES:
                raise SubscriptionNotLive("auto-pay is not on", field="subscription")
            open_attempt = charges_repository.open_self_service_attempt(
                session, subscription.id, kind
            )
            if open_attempt is not None:
                reused: tuple[uuid.UUID, str | None] | None = (
                    open_attempt.id,
                    open_attempt.confirmation_url,
                )
            else:
                reused = None
                found = months_of(session, subscription)
                amount = found.total_kopecks if found is not None else MIN_CARD_KOPECKS
                if not MIN_CARD_KOPECKS <= amount <= MAX_CARD_KOPECKS:
                    raise AmountOutOfRange(
                        "a card payment must be between 1.00 and 350000.00 RUB", field="amount"
                    )
                charge = Charge(
                    id=uuid.uuid4(),
                    subscription_id=subscription.id,
                    member_id=subscription.member_id,
                    organization_id=subscription.organization_id,
                    period_month=(
                        found.periods[0]
                        if found is not None
                        else self._current_period(session, subscription)
                    ),
                    kind=kind,
                    status=ChargeStatus.PENDING,
                    amount_kopecks=amount,
                    currency=subscription.currency,
                    created_at=now,
                    covered_months=found.periods if found is not None else None,
                )
                session.add(charge)
                session.flush()
                attempt = add_attempt(
                    session,
                    charge,
                    shop_id=self._gateways.default_shop_id(),
                    body_for=lambda attempt_id: initial_payment_body(
                        attempt_id, charge, return_url
                    ),
                    now=now,
                )
                attempt_id = attempt.id
        if reused is not None:
            if reused[1] is None:
                self._charges.resolve(reused[0])
                return self._confirmation_url(reused[0])
            return reused[1]
        log.info("charge.self_service_started", kind=str(kind), attempt_id=str(attempt_id))
        self._charges.submit(attempt_id)
        return self._confirmation_url(attempt_id)

    def settle_returned(self, member_id: uuid.UUID) -> None:
        """The member is back from the acquirer's page: ask the gateway about their open
        first payments now instead of waiting for the notification (it only ever asks)."""
        with self._sessions() as session:
            subscription = _latest_subscription(session, member_id)
            if subscription is None:
                return
            attempt_ids = charges_repository.open_first_payment_attempts(session, subscription.id)
        for attempt_id in attempt_ids:
            self._charges.resolve(attempt_id)

    def _confirmation_url(self, attempt_id: uuid.UUID) -> str | None:
        with self._sessions() as session:
            attempt = session.get(ChargeAttempt, attempt_id)
            if attempt is None or attempt.status != AttemptStatus.PENDING:
                return None
            return attempt.confirmation_url

    def _current_period(self, session: Session, subscription: Subscription) -> date:
        org = session.get(Organization, subscription.organization_id)
        assert org is not None
        return period_of(self._clock.now(), org.timezone)

    def pause(
        self, principal: Principal, subscription_id: uuid.UUID, resume_on: date | None
    ) -> SubscriptionOut:
        """Pause (leave, exemption) until `resume_on`, or until resumed. Pausing a paused
        subscription again only moves its resume date."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            subscription, _ = self._visible(session, principal, subscription_id, for_update=True)
            today = local_date(now, _timezone(session, subscription))
            if resume_on is not None and resume_on <= today:
                raise InvalidChange(
                    f"resume_on must be after today ({today.isoformat()})", field="resume_on"
                )
            status = SubscriptionStatus(subscription.status)
            if status == SubscriptionStatus.PAUSED:
                subscription.paused_until = resume_on
            elif status in PAUSABLE_STATUSES:
                move(
                    subscription,
                    SubscriptionStatus.PAUSED,
                    now,
                    Cause.PAUSED_BY_CRM,
                    resume_on=resume_on,
                )
            else:
                raise SubscriptionStateConflict(
                    f"a {status} subscription cannot be paused", field="subscription_id"
                )
        log.info("subscription.paused", subscription_id=str(subscription_id))
        return self.get(principal, subscription_id)

    def resume(self, principal: Principal, subscription_id: uuid.UUID) -> SubscriptionOut:
        """Resume a paused subscription to where it was. A live one that is not paused is
        left as it is (idempotent); a canceled one cannot be resumed."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            subscription, _ = self._visible(session, principal, subscription_id, for_update=True)
            status = SubscriptionStatus(subscription.status)
            if status == SubscriptionStatus.PAUSED:
                move(subscription, resume_target(subscription), now, Cause.RESUMED_BY_CRM)
            elif status == SubscriptionStatus.CANCELED:
                raise SubscriptionStateConflict(
                    "a canceled subscription cannot be resumed; start a new one",
                    field="subscription_id",
                )
        return self.get(principal, subscription_id)

    def resume_due(self, batch_size: int = 500) -> int:
        """The scheduler: resume every paused subscription whose resume date has come in its
        organisation's zone."""
        now = self._clock.now()
        resumed = 0
        with transaction(self._sessions) as session:
            rows = session.execute(
                select(Subscription, Organization.timezone)
                .join(Organization, Organization.id == Subscription.organization_id)
                .where(
                    Subscription.status == SubscriptionStatus.PAUSED,
                    Subscription.paused_until.is_not(None),
                    # Coarse in SQL (the earliest zone is at most a day ahead), exact below.
                    Subscription.paused_until <= now.date() + timedelta(days=1),
                )
                .limit(batch_size)
                .with_for_update(of=Subscription, skip_locked=True)
            ).all()
            for subscription, timezone in rows:
                assert subscription.paused_until is not None
                if subscription.paused_until > local_date(now, timezone):
                    continue
                move(subscription, resume_target(subscription), now, Cause.RESUME_DATE_REACHED)
                resumed += 1
        if resumed:
            log.info("subscriptions.resumed", count=resumed)
        return resumed

    def change_amount(
        self, principal: Principal, subscription_id: uuid.UUID, data: SubscriptionChange
    ) -> SubscriptionOut:
        """From a month on, charge another amount. Setting the same amount for the same month
        again changes nothing. A month already charged (or announced) cannot change."""
        amount = data.amount.kopecks
        if not MIN_CARD_KOPECKS <= amount <= MAX_CARD_KOPECKS:
            raise AmountOutOfRange(
                "a card payment must be between 1.00 and 350000.00 RUB", field="amount.value"
            )
        effective_from = parse_period(data.effective_from)
        now = self._clock.now()
        with transaction(self._sessions) as session:
            subscription, member = self._visible(
                session, principal, subscription_id, for_update=True
            )
            if subscription.status == SubscriptionStatus.CANCELED:
                raise SubscriptionStateConflict(
                    "a canceled subscription cannot change", field="subscription_id"
                )
            if data.amount.currency != subscription.currency:
                raise InvalidChange(
                    f"the subscription is in {subscription.currency}", field="amount.currency"
                )
            current = period_of(now, _timezone(session, subscription))
            if effective_from < current:
                raise InvalidChange(
                    f"effective_from must be {format_period(current)} or later",
                    field="effective_from",
                )
            existing = session.scalar(
                select(SubscriptionAmountChange).where(
                    SubscriptionAmountChange.subscription_id == subscription.id,
                    SubscriptionAmountChange.effective_from == effective_from,
                )
            )
            if existing is not None and existing.amount_kopecks == amount:
                return self._view(session, subscription, member)
            charged = session.scalar(
                select(Charge.period_month)
                .where(
                    Charge.subscription_id == subscription.id,
                    Charge.period_month >= effective_from,
                    Charge.status != ChargeStatus.CANCELED,
                )
                .limit(1)
            )
            if charged is not None:
                raise SubscriptionStateConflict(
                    f"{format_period(charged)} is already charged or announced; "
                    "choose a later month",
                    field="effective_from",
                )
            if existing is None:
                session.add(
                    SubscriptionAmountChange(
                        id=uuid.uuid4(),
                        subscription_id=subscription.id,
                        effective_from=effective_from,
                        amount_kopecks=amount,
                        created_at=now,
                    )
                )
            else:
                existing.amount_kopecks = amount
            emit(
                session,
                type=EventType.SUBSCRIPTION_CHANGED,
                organization_id=subscription.organization_id,
                occurred_at=now,
                payload={
                    "subscription_id": str(subscription.id),
                    "member_id": str(subscription.member_id),
                    "member_external_id": member.external_id,
                    "amount": MoneyOut.of(amount, subscription.currency).model_dump(),
                    "effective_from": format_period(effective_from),
                },
            )
            session.flush()
            log.info("subscription.amount_changed", subscription_id=str(subscription_id))
            return self._view(session, subscription, member)

    @staticmethod
    def _visible(
        session: Session,
        principal: Principal,
        subscription_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> tuple[Subscription, Member]:
        subscription = session.get(Subscription, subscription_id, with_for_update=for_update)
        member = session.get(Member, subscription.member_id) if subscription else None
        if subscription is None or member is None or not principal.can_see(member.organization_id):
            raise SubscriptionNotFound(
                f"no subscription {subscription_id}", field="subscription_id"
            )
        return subscription, member

    @staticmethod
    def _view(session: Session, subscription: Subscription, member: Member) -> SubscriptionOut:
        org = session.get(Organization, subscription.organization_id)
        assert org is not None
        method = (
            session.get(PaymentMethod, subscription.payment_method_id)
            if subscription.payment_method_id
            else None
        )
        latest = charges_repository.latest_charge(session, subscription.id)
        confirmation_url = None
        if subscription.status == SubscriptionStatus.PENDING_CONFIRMATION and latest is not None:
            attempt = charges_repository.last_attempt(session, latest.id)
            if attempt is not None and attempt.status == AttemptStatus.PENDING:
                confirmation_url = attempt.confirmation_url
        elif subscription.status == SubscriptionStatus.PENDING_CONFIRMATION:
            # A standby subscription saves its card with no payment: the binding has the page.
            confirmation_url = session.scalar(
                select(CardBinding.confirmation_url).where(
                    CardBinding.subscription_id == subscription.id,
                    CardBinding.status == BindingStatus.PENDING,
                )
            )
        next_charge = None
        next_attempt_at = latest.next_attempt_at if latest is not None else None
        if next_attempt_at is not None:
            next_charge = local_date(next_attempt_at, org.timezone)
        elif subscription.status in CHARGEABLE_STATUSES and subscription.billing_day:
            upcoming = next_period(latest.period_month) if latest else subscription.start_period
            next_charge = billing_date(upcoming, subscription.billing_day)
        next_amount_period = (
            latest.period_month
            if latest is not None and latest.status == ChargeStatus.PENDING
            else next_period(latest.period_month)
            if latest is not None
            else subscription.start_period
        )
        return SubscriptionOut(
            id=subscription.id,
            member_external_id=member.external_id,
            organization_code=org.code,
            status=subscription.status,
            mode=subscription.mode,
            amount=MoneyOut.of(subscription.amount_kopecks, subscription.currency),
            billing_day=subscription.billing_day,
            start_period=format_period(subscription.start_period),
            consent_version=subscription.consent_version,
            consent_accepted_at=subscription.consent_accepted_at,
            card=(
                CardOut(
                    card_type=method.card_type,
                    first6=method.card_first6,
                    last4=method.card_last4,
                    expiry_month=method.expiry_month,
                    expiry_year=method.expiry_year,
                )
                if method
                else None
            ),
            confirmation_url=confirmation_url,
            next_charge_date=next_charge,
            last_charge=(
                LastChargeOut(
                    period=format_period(latest.period_month),
                    status=latest.status,
                    amount=MoneyOut.of(latest.amount_kopecks, latest.currency),
                    failure_reason=latest.failure_reason,
                    settled_at=latest.settled_at,
                    upcoming_notice_at=latest.upcoming_notice_at,
                    next_attempt_at=latest.next_attempt_at,
                    retry_until=latest.retry_until,
                    attempts=[
                        AttemptOut(
                            attempt_no=attempt.attempt_no,
                            status=attempt.status,
                            reason=attempt.cancellation_reason,
                            decision=attempt.decision,
                            created_at=attempt.created_at,
                            settled_at=attempt.settled_at,
                        )
                        for attempt in charges_repository.attempts_of(session, latest.id)
                    ],
                )
                if latest
                else None
            ),
            created_at=subscription.created_at,
            activated_at=subscription.activated_at,
            canceled_at=subscription.canceled_at,
            cancel_cause=subscription.cancel_cause,
            paused_until=subscription.paused_until,
            next_attempt_at=next_attempt_at,
            next_charge_amount=(
                MoneyOut.of(
                    amount_for_period(session, subscription, next_amount_period),
                    subscription.currency,
                )
                if subscription.status != SubscriptionStatus.CANCELED
                else None
            ),
            amount_changes=[
                AmountChangeOut(
                    effective_from=format_period(change.effective_from),
                    amount=MoneyOut.of(change.amount_kopecks, subscription.currency),
                )
                for change in amount_changes(session, subscription)
            ],
            status_history=[
                StatusChangeOut(
                    previous_status=change.previous_status,
                    status=change.status,
                    cause=change.cause,
                    reason=change.reason,
                    changed_at=change.changed_at,
                )
                for change in session.scalars(
                    select(SubscriptionStatusChange)
                    .where(SubscriptionStatusChange.subscription_id == subscription.id)
                    .order_by(SubscriptionStatusChange.sequence)
                )
            ],
        )


def _member(session: Session, member_id: uuid.UUID) -> Member:
    member = session.get(Member, member_id)
    if member is None:
        raise SubscriptionNotFound("no such member", field="member")
    return member


def _latest_subscription(
    session: Session, member_id: uuid.UUID, *, for_update: bool = False
) -> Subscription | None:
    query = (
        select(Subscription)
        .where(Subscription.member_id == member_id)
        .order_by(Subscription.status.in_(LIVE_STATUSES).desc(), Subscription.created_at.desc())
        .limit(1)
    )
    if for_update:
        query = query.with_for_update()
    return session.scalar(query)


def _timezone(session: Session, subscription: Subscription) -> str:
    org = session.get(Organization, subscription.organization_id)
    assert org is not None
    return org.timezone


def _paid_by_card(session: Session, member_id: uuid.UUID, period: date) -> bool:
    return (
        session.scalar(
            select(Charge.id).where(
                Charge.member_id == member_id,
                Charge.period_month == period,
                Charge.kind.in_(list(MONTHLY_KINDS)),
                Charge.status == ChargeStatus.SUCCEEDED,
            )
        )
        is not None
    )


def _constraint(exc: IntegrityError) -> str | None:
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None)
