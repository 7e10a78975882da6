"""Payroll shortfalls: the month payroll did not cover, charged to the standby card.

1. `record`: the CRM or a treasurer says payroll missed `amount` of a member's dues for a month.
   One shortfall per member and month (a unique index); the same body again is a replay, another
   amount for the same month is a 409. A member in standby is told at once (`charge.upcoming`)
   and the card waits for the notice period; a member without a standby card is reported
   (`member.shortfall_uncovered`) so the CRM can invite them.
2. `charge_due` (the scheduler, every tick): a scheduled shortfall whose notice period is over
   becomes a charge of exactly its amount, on the standby subscription, through the ordinary
   attempt machinery (`payments.charges.service`). The month is accrued only if nothing
   accrued it before (the ledger's accrual is keyed per member and month).
3. `settle_late_payroll` (the scheduler): payroll money recorded later for a month the card
   already paid is a credit on the member's account; the organisation's rule says whether it
   pays the next months (`carry_forward`, the ledger's own first-in-first-out does that) or
   the card payment is refunded (`refund`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import exists, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from core.clock import Clock
from core.db import transaction
from core.errors import DomainError
from core.money import MoneyOut, format_kopecks
from core.outbox import EventType, emit
from core.periods import format_period, local_date, parse_period, period_of
from core.queue import TaskQueue
from ledger.models import Account, JournalEntry, Posting
from ledger.states import AccountKind, Channel, EntryKind
from members.dues.service import ancestors_and_self
from members.models import Member, Organization
from members.service import Principal, visible_member, visible_organization
from payments.charges.models import Charge
from payments.charges.scheduling import ChargeDraft, schedule_charges
from payments.charges.service import TASK_SUBMIT
from payments.charges.states import ChargeKind, ChargeStatus
from payments.refunds.service import RefundService
from payments.standby.errors import InvalidShortfall, ShortfallConflict, ShortfallNotFound
from payments.standby.models import PayrollShortfall, StandbyPolicy
from payments.standby.schemas import (
    LatePayrollOut,
    ShortfallChargeOut,
    ShortfallIn,
    ShortfallOut,
    StandbyPolicyIn,
    StandbyPolicyOut,
)
from payments.standby.states import (
    LatePayrollRule,
    ShortfallStatus,
    UncoveredReason,
    shortfall_transition,
)
from payments.subscriptions.models import PaymentMethod, Subscription
from payments.subscriptions.states import SubscriptionMode, SubscriptionStatus

log = structlog.get_logger("payments.standby")

DEFAULT_LATE_PAYROLL_RULE = LatePayrollRule.CARRY_FORWARD
# A declined shortfall charge is retried by the organisation's retry policy for this long after
# its first attempt: the default schedule (+1, +3, +7 days) and the two paydays of a month fit,
# and it ends before the same day next month. (A monthly charge's retries end with its month;
# a shortfall is often recorded for a month already over.)
SHORTFALL_RETRY_WINDOW = timedelta(days=28)


@dataclass(frozen=True)
class Recorded:
    shortfall: ShortfallOut
    created: bool  # False: the same shortfall had been recorded before (a replay)


class ShortfallService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        queue: TaskQueue,
        notice_period: timedelta,
        refunds: RefundService | None = None,
        batch_size: int = 500,
    ) -> None:
        self._refunds = refunds
        self._sessions = sessions
        self._clock = clock
        self._queue = queue
        self._notice_period = notice_period
        self._batch_size = batch_size

    # -- record -----------------------------------------------------------------------------

    def record(self, principal: Principal, external_id: str, data: ShortfallIn) -> Recorded:
        try:
            return self._record(principal, external_id, data)
        except IntegrityError as exc:
            diag = getattr(exc.orig, "diag", None)
            if getattr(diag, "constraint_name", None) != "uq_payroll_shortfalls_member_period":
                raise
            # The same month recorded concurrently: the second pass sees the first one's row.
            return self._record(principal, external_id, data)

    def _record(self, principal: Principal, external_id: str, data: ShortfallIn) -> Recorded:
        period = parse_period(data.period)
        amount = data.amount.kopecks
        now = self._clock.now()
        with transaction(self._sessions) as session:
            member = visible_member(session, principal, external_id)
            org = session.get(Organization, member.organization_id)
            assert org is not None
            if period > period_of(now, org.timezone):
                raise InvalidShortfall(
                    f"{data.period} has not begun yet: a shortfall is for this or a past month",
                    field="period",
                )
            existing = session.scalar(
                select(PayrollShortfall)
                .where(
                    PayrollShortfall.member_id == member.id,
                    PayrollShortfall.period_month == period,
                )
                .with_for_update()
            )
            if existing is not None:
                if (existing.amount_kopecks, existing.currency) != (amount, data.amount.currency):
                    raise ShortfallConflict(
                        f"a shortfall of {format_kopecks(existing.amount_kopecks)} "
                        f"{existing.currency} is already recorded for {data.period}; "
                        "a month has one shortfall",
                        field="amount",
                        extra={"shortfall_id": str(existing.id)},
                    )
                return Recorded(self._view(session, existing, member), created=False)
            standby = self._standby_subscription(session, member.id)
            if standby is not None and amount > standby.amount_kopecks:
                raise InvalidShortfall(
                    f"the shortfall exceeds {format_kopecks(standby.amount_kopecks)} "
                    f"{standby.currency}, the monthly amount the member's standby consent covers",
                    field="amount.value",
                )
            shortfall = PayrollShortfall(
                id=uuid.uuid4(),
                member_id=member.id,
                organization_id=org.id,
                period_month=period,
                amount_kopecks=amount,
                currency=data.amount.currency,
                status=ShortfallStatus.SCHEDULED,
                recorded_by=data.recorded_by,
                created_at=now,
            )
            session.add(shortfall)
            session.flush()
            if standby is not None:
                shortfall.subscription_id = standby.id
                shortfall.notified_at = now
                shortfall.charge_at = now + self._notice_period
                self._emit_upcoming(session, shortfall, member, org.timezone)
                log.info("shortfall.scheduled", shortfall_id=str(shortfall.id))
            else:
                self._uncover(session, shortfall, member, UncoveredReason.NO_STANDBY_CARD, now)
            return Recorded(self._view(session, shortfall, member), created=True)

    def get(self, principal: Principal, shortfall_id: uuid.UUID) -> ShortfallOut:
        with self._sessions() as session:
            shortfall = session.get(PayrollShortfall, shortfall_id)
            member = session.get(Member, shortfall.member_id) if shortfall else None
            if shortfall is None or member is None or not principal.can_see(member.organization_id):
                raise ShortfallNotFound(
                    f"no payroll shortfall {shortfall_id}", field="shortfall_id"
                )
            return self._view(session, shortfall, member)

    def list_for_member(self, principal: Principal, external_id: str) -> list[ShortfallOut]:
        """The member's shortfalls, newest month first."""
        with self._sessions() as session:
            member = visible_member(session, principal, external_id)
            rows = session.scalars(
                select(PayrollShortfall)
                .where(PayrollShortfall.member_id == member.id)
                .order_by(PayrollShortfall.period_month.desc())
            )
            return [self._view(session, row, member) for row in rows]

    # -- charge what is due -------------------------------------------------------------------

    def charge_due(self) -> int:
        """Turn every shortfall whose notice period is over into a charge, and submit it.
        Several schedulers may run: each claims different rows. Returns the charges made."""
        made = 0
        while True:
            attempt_ids: list[uuid.UUID] = []
            with transaction(self._sessions) as session:
                now = self._clock.now()
                due = list(
                    session.scalars(
                        select(PayrollShortfall)
                        .where(
                            PayrollShortfall.status == ShortfallStatus.SCHEDULED,
                            PayrollShortfall.charge_at <= now,
                        )
                        .order_by(PayrollShortfall.charge_at)
                        .limit(self._batch_size)
                        .with_for_update(skip_locked=True)
                    )
                )
                if not due:
                    break
                attempt_ids = self._charge(session, due, now)
            # Enqueue after commit; a lost message is submitted by the attempt sweeper anyway.
            for attempt_id in attempt_ids:
                self._queue.enqueue(TASK_SUBMIT, attempt_id=str(attempt_id))
            made += len(attempt_ids)
        if made:
            log.info("shortfalls.charged", count=made)
        return made

    def _charge(
        self, session: Session, due: list[PayrollShortfall], now: datetime
    ) -> list[uuid.UUID]:
        """Charge the due shortfalls through `schedule_charges`, like every monthly charge: the
        charge of exactly the shortfall, the month's accrual if nothing accrued it yet, and the
        first attempt, since the notice period is over. A declined attempt is retried by the
        organisation's retry policy (`BillingService.create_due_attempts`) until
        `SHORTFALL_RETRY_WINDOW` after this first one."""
        drafts: dict[ChargeDraft, PayrollShortfall] = {}
        for shortfall in due:
            draft = self._draft(session, shortfall, now)
            if draft is not None:
                drafts[draft] = shortfall
        scheduled = schedule_charges(session, list(drafts), now=now)
        for item in scheduled:
            shortfall = drafts[item.draft]
            # At most one charge per shortfall: the shortfall row is locked, becomes `charging`
            # with this charge in the same transaction, and `charge_id` is unique.
            shortfall.status = shortfall_transition(
                ShortfallStatus(shortfall.status), ShortfallStatus.CHARGING
            )
            shortfall.charge_id = item.charge_id
            log.info(
                "shortfall.charging", shortfall_id=str(shortfall.id), charge_id=str(item.charge_id)
            )
        if len(scheduled) != len(drafts):
            log.error("shortfalls.charge_not_inserted", count=len(drafts) - len(scheduled))
        return [item.attempt_id for item in scheduled if item.attempt_id is not None]

    def _draft(
        self, session: Session, shortfall: PayrollShortfall, now: datetime
    ) -> ChargeDraft | None:
        member = session.get(Member, shortfall.member_id)
        assert member is not None
        subscription = (
            session.get(Subscription, shortfall.subscription_id, with_for_update=True)
            if shortfall.subscription_id
            else None
        )
        method = (
            session.get(PaymentMethod, subscription.payment_method_id)
            if subscription is not None and subscription.payment_method_id
            else None
        )
        if (
            subscription is None
            or method is None
            or subscription.status != SubscriptionStatus.STANDBY
        ):
            # Standby ended during the notice period: nothing is charged, the CRM hears of it.
            self._uncover(session, shortfall, member, UncoveredReason.STANDBY_ENDED, now)
            return None
        org = session.get(Organization, shortfall.organization_id)
        assert org is not None
        return ChargeDraft(
            subscription_id=subscription.id,
            member_id=shortfall.member_id,
            organization_id=shortfall.organization_id,
            timezone=org.timezone,
            period_month=shortfall.period_month,
            kind=ChargeKind.SHORTFALL,
            amount_kopecks=shortfall.amount_kopecks,
            currency=shortfall.currency,
            # The month's dues: accrued by the member's plan as a rule; if nothing accrued the
            # month yet, the standby amount (the member's monthly dues) is. Never twice.
            accrual_kopecks=subscription.amount_kopecks,
            not_before=now,
            retry_until=now + SHORTFALL_RETRY_WINDOW,
            shop_id=method.shop_id,
            payment_method_id=method.id,
        )

    # -- late payroll -------------------------------------------------------------------------

    def settle_late_payroll(self) -> int:
        """Apply the organisation's rule to payroll money recorded for a month after the card
        paid its shortfall. Returns how many shortfalls were settled.

        A refund is requested outside any transaction, with a client key derived from the
        shortfall, so a crash between the request and the settlement replays the same refund
        instead of making a second one."""
        settled = 0
        refunds: list[tuple[uuid.UUID, uuid.UUID, int]] = []
        with transaction(self._sessions) as session:
            now = self._clock.now()
            candidates = list(
                session.scalars(
                    select(PayrollShortfall)
                    .join(Charge, Charge.id == PayrollShortfall.charge_id)
                    .where(
                        PayrollShortfall.late_payroll_settled_at.is_(None),
                        Charge.status == ChargeStatus.SUCCEEDED,
                        exists().where(_late_payroll_entry(PayrollShortfall)),
                    )
                    .limit(self._batch_size)
                    .with_for_update(of=PayrollShortfall, skip_locked=True)
                )
            )
            for shortfall in candidates:
                charge = session.get(Charge, shortfall.charge_id)
                assert charge is not None
                # Once decided, the credit is kept: a replayed refund must be the same request.
                credit = shortfall.late_payroll_kopecks or min(
                    _late_payroll_kopecks(session, shortfall), charge.amount_kopecks
                )
                rule = _rule_for(session, shortfall.organization_id)
                shortfall.late_payroll_kopecks = credit
                shortfall.late_payroll_rule = rule
                if rule == LatePayrollRule.REFUND and self._refunds is not None:
                    refunds.append((shortfall.id, charge.id, credit))
                    continue
                self._settle(session, shortfall, LatePayrollRule.CARRY_FORWARD, None, now)
                settled += 1
        for shortfall_id, charge_id, credit in refunds:
            refund_id = self._refund(shortfall_id, charge_id, credit)
            applied = LatePayrollRule.REFUND if refund_id else LatePayrollRule.CARRY_FORWARD
            with transaction(self._sessions) as session:
                row = session.get(PayrollShortfall, shortfall_id, with_for_update=True)
                if row is None or row.late_payroll_settled_at is not None:
                    continue
                self._settle(session, row, applied, refund_id, self._clock.now())
                settled += 1
        return settled

    def _refund(self, shortfall_id: uuid.UUID, charge_id: uuid.UUID, credit: int) -> str | None:
        """Refund the credit from the card payment; None when the payment cannot give it back
        (e.g. the CRM refunded it already), and the credit then stays on the account."""
        assert self._refunds is not None
        try:
            result = self._refunds.refund_charge(
                charge_id,
                amount_kopecks=credit,
                reason="Payroll paid the month the standby card had paid",
                requested_by="standby:late_payroll",
                client_key=f"late-payroll:{shortfall_id}",
            )
        except DomainError as exc:
            log.warning(
                "shortfall.refund_refused",
                shortfall_id=str(shortfall_id),
                problem=exc.type_slug,
                detail=exc.detail,
            )
            return None
        return str(result.refund_id)

    def _settle(
        self,
        session: Session,
        shortfall: PayrollShortfall,
        applied: LatePayrollRule,
        refund_id: str | None,
        now: datetime,
    ) -> None:
        charge = session.get(Charge, shortfall.charge_id)
        member = session.get(Member, shortfall.member_id)
        assert charge is not None and member is not None
        assert shortfall.late_payroll_kopecks is not None
        credit = shortfall.late_payroll_kopecks
        rule = LatePayrollRule(shortfall.late_payroll_rule or DEFAULT_LATE_PAYROLL_RULE)
        shortfall.late_payroll_applied = applied
        shortfall.late_payroll_refund_id = refund_id
        shortfall.late_payroll_settled_at = now
        emit(
            session,
            type=EventType.SHORTFALL_LATE_PAYROLL,
            organization_id=shortfall.organization_id,
            occurred_at=now,
            payload={
                **_shortfall_fields(shortfall, member),
                "charge_id": str(charge.id),
                "credit": MoneyOut.of(credit, shortfall.currency).model_dump(),
                "rule": str(rule),
                "applied": str(applied),
                "refund_id": refund_id,
            },
        )
        log.info(
            "shortfall.late_payroll_settled",
            shortfall_id=str(shortfall.id),
            rule=str(rule),
            applied=str(applied),
        )

    # -- the organisation's rule --------------------------------------------------------------

    def get_policy(self, principal: Principal, org_code: str) -> StandbyPolicyOut:
        with self._sessions() as session:
            org = visible_organization(session, principal, org_code, "organization_code")
            own = session.get(StandbyPolicy, org.id)
            return StandbyPolicyOut(
                organization_code=org.code,
                late_payroll_rule=_rule_for(session, org.id),
                inherited=own is None,
            )

    def set_policy(
        self, principal: Principal, org_code: str, data: StandbyPolicyIn
    ) -> StandbyPolicyOut:
        now = self._clock.now()
        with transaction(self._sessions) as session:
            org = visible_organization(session, principal, org_code, "organization_code")
            session.execute(
                insert(StandbyPolicy)
                .values(
                    organization_id=org.id,
                    late_payroll_rule=data.late_payroll_rule,
                    updated_at=now,
                )
                .on_conflict_do_update(
                    index_elements=["organization_id"],
                    set_={"late_payroll_rule": data.late_payroll_rule, "updated_at": now},
                )
            )
        log.info("standby.policy_set", organization_id=str(org.id), rule=data.late_payroll_rule)
        return self.get_policy(principal, org_code)

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _standby_subscription(session: Session, member_id: uuid.UUID) -> Subscription | None:
        return session.scalar(
            select(Subscription)
            .where(
                Subscription.member_id == member_id,
                Subscription.mode == SubscriptionMode.STANDBY,
                Subscription.status == SubscriptionStatus.STANDBY,
                Subscription.payment_method_id.is_not(None),
            )
            .with_for_update()
        )

    def _emit_upcoming(
        self, session: Session, shortfall: PayrollShortfall, member: Member, timezone: str
    ) -> None:
        """The pre-charge notice: the member hears of the charge before the card is touched."""
        assert shortfall.charge_at is not None and shortfall.notified_at is not None
        emit(
            session,
            type=EventType.CHARGE_UPCOMING,
            organization_id=shortfall.organization_id,
            occurred_at=shortfall.notified_at,
            payload={
                "subscription_id": str(shortfall.subscription_id),
                "member_id": str(shortfall.member_id),
                "member_external_id": member.external_id,
                "period": format_period(shortfall.period_month),
                "amount": MoneyOut.of(shortfall.amount_kopecks, shortfall.currency).model_dump(),
                "charge_on": local_date(shortfall.charge_at, timezone).isoformat(),
                "shortfall_id": str(shortfall.id),
            },
        )

    @staticmethod
    def _uncover(
        session: Session,
        shortfall: PayrollShortfall,
        member: Member,
        reason: UncoveredReason,
        now: datetime,
    ) -> None:
        shortfall.status = shortfall_transition(
            ShortfallStatus(shortfall.status), ShortfallStatus.UNCOVERED
        )
        shortfall.uncovered_reason = reason
        emit(
            session,
            type=EventType.MEMBER_SHORTFALL_UNCOVERED,
            organization_id=shortfall.organization_id,
            occurred_at=now,
            payload={
                **_shortfall_fields(shortfall, member),
                "amount": MoneyOut.of(shortfall.amount_kopecks, shortfall.currency).model_dump(),
                "reason": str(reason),
            },
        )
        log.info("shortfall.uncovered", shortfall_id=str(shortfall.id), reason=str(reason))

    @staticmethod
    def _view(session: Session, shortfall: PayrollShortfall, member: Member) -> ShortfallOut:
        charge = session.get(Charge, shortfall.charge_id) if shortfall.charge_id else None
        org = session.get(Organization, shortfall.organization_id)
        assert org is not None
        return ShortfallOut(
            id=shortfall.id,
            member_external_id=member.external_id,
            period=format_period(shortfall.period_month),
            amount=MoneyOut.of(shortfall.amount_kopecks, shortfall.currency),
            status=shortfall.status,
            uncovered_reason=shortfall.uncovered_reason,
            subscription_id=shortfall.subscription_id,
            charge_on=(
                local_date(shortfall.charge_at, org.timezone) if shortfall.charge_at else None
            ),
            charge=(
                ShortfallChargeOut(
                    id=charge.id, status=charge.status, failure_reason=charge.failure_reason
                )
                if charge
                else None
            ),
            late_payroll=(
                LatePayrollOut(
                    credit=MoneyOut.of(shortfall.late_payroll_kopecks, shortfall.currency),
                    rule=shortfall.late_payroll_rule or DEFAULT_LATE_PAYROLL_RULE,
                    applied=shortfall.late_payroll_applied or DEFAULT_LATE_PAYROLL_RULE,
                    refund_id=shortfall.late_payroll_refund_id,
                    settled_at=shortfall.late_payroll_settled_at,
                )
                if shortfall.late_payroll_settled_at is not None
                and shortfall.late_payroll_kopecks is not None
                else None
            ),
            recorded_by=shortfall.recorded_by,
            created_at=shortfall.created_at,
        )


def _late_payroll_entry(shortfall: type[PayrollShortfall]) -> ColumnElement[bool]:
    """SQL: a payroll payment for the shortfall's member and month, recorded after the
    shortfall (the payroll money recorded before it is what the shortfall was short of), and
    not reversed."""
    reversal = aliased(JournalEntry)
    return (
        (JournalEntry.member_id == shortfall.member_id)
        & (JournalEntry.period_month == shortfall.period_month)
        & (JournalEntry.kind == EntryKind.PAYMENT)
        & (JournalEntry.channel == Channel.PAYROLL)
        & (JournalEntry.recorded_at > shortfall.created_at)
        & ~exists().where(reversal.reverses_entry_id == JournalEntry.id)
    )


def _late_payroll_kopecks(session: Session, shortfall: PayrollShortfall) -> int:
    reversal = aliased(JournalEntry)
    total = session.scalar(
        select(func.coalesce(func.sum(-Posting.amount_kopecks), 0))
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(Account, Account.id == Posting.account_id)
        .where(
            Account.kind == AccountKind.MEMBER_DUES_RECEIVABLE,
            JournalEntry.member_id == shortfall.member_id,
            JournalEntry.period_month == shortfall.period_month,
            JournalEntry.kind == EntryKind.PAYMENT,
            JournalEntry.channel == Channel.PAYROLL,
            JournalEntry.recorded_at > shortfall.created_at,
            ~exists().where(reversal.reverses_entry_id == JournalEntry.id),
        )
    )
    return int(total or 0)


def _rule_for(session: Session, organization_id: uuid.UUID) -> LatePayrollRule:
    """The organisation's own rule, else its nearest ancestor's, else the default."""
    for org_id in ancestors_and_self(session, organization_id):
        policy = session.get(StandbyPolicy, org_id)
        if policy is not None:
            return LatePayrollRule(policy.late_payroll_rule)
    return DEFAULT_LATE_PAYROLL_RULE


def _shortfall_fields(shortfall: PayrollShortfall, member: Member) -> dict[str, Any]:
    """What every shortfall event's payload starts with: which shortfall, whose, which month."""
    return {
        "shortfall_id": str(shortfall.id),
        "member_id": str(shortfall.member_id),
        "member_external_id": member.external_id,
        "period": format_period(shortfall.period_month),
    }
