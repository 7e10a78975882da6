"""A treasurer's bookkeeping: money that arrived by payroll, bank or cash, reversals, month
closes, the share table between levels, and transfers up the tree. Every use case checks the
caller's subtree first and posts through the ledger in one transaction."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time

import structlog
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.clock import Clock
from core.db import transaction
from core.errors import InvalidInput
from core.periods import format_period, parse_period, zone
from ledger.errors import EntryNotFound
from ledger.journal import Posted
from ledger.models import JournalEntry
from ledger.service import (
    MemberPayment,
    Share,
    close_period,
    post_member_payment,
    post_transfer_upward,
    reverse_entry,
    set_shares,
)
from ledger.states import Channel, ClosedPeriodPolicy
from members import repository
from members.dues.schemas import (
    EntryOut,
    ManualPaymentIn,
    PeriodCloseIn,
    ReversalIn,
    SharesIn,
    TransferIn,
    percent_to_bp,
)
from members.dues.service import ancestors_and_self
from members.models import Organization
from members.service import Principal, visible_member, visible_organization

log = structlog.get_logger("members.treasury")


class NotAnAncestor(InvalidInput):
    type_slug = "not-an-ancestor"
    title = "Not a higher level of this organisation"


def start_of_day(day: date, timezone: str) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone(timezone))


def entry_out(session: Session, posted: Posted) -> EntryOut:
    entry = session.get(JournalEntry, posted.entry_id)
    assert entry is not None
    return EntryOut(
        id=entry.id,
        kind=entry.kind,
        occurred_at=entry.occurred_at,
        booked_period=format_period(entry.booked_period),
        description=entry.description,
        reverses_entry_id=entry.reverses_entry_id,
        replayed=not posted.created,
    )


class TreasuryService:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def record_payment(
        self, principal: Principal, external_id: str, data: ManualPaymentIn
    ) -> EntryOut:
        """Dues a member paid by payroll deduction, bank transfer or cash. The reference makes
        it idempotent per organisation; a payment dated in a closed month is refused."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            member = visible_member(session, principal, external_id)
            org = session.get(Organization, member.organization_id)
            assert org is not None
            posted = post_member_payment(
                session,
                MemberPayment(
                    idempotency_key=f"manual:{org.id}:{data.reference}",
                    member_id=member.id,
                    organization_id=org.id,
                    channel=Channel(data.channel),
                    amount_kopecks=data.amount.kopecks,
                    occurred_at=start_of_day(data.occurred_on, org.timezone),
                    source_type="manual",
                    source_id=data.reference,
                    description=data.description or f"{data.channel} payment {data.reference}",
                    timezone=org.timezone,
                    created_by=data.recorded_by,
                    period_month=parse_period(data.period) if data.period else None,
                ),
                recorded_at=now,
                closed_period=ClosedPeriodPolicy.REFUSE,
            )
            out = entry_out(session, posted)
            audit.record(
                session,
                "ledger.payment_recorded",
                at=now,
                organization_id=org.id,
                subject_type="journal_entry",
                subject_id=out.id,
                details={"member_id": str(member.id), "amount_kopecks": data.amount.kopecks},
            )
        log.info("ledger.manual_payment", entry_id=str(out.id), channel=data.channel)
        return out

    def reverse(self, principal: Principal, entry_id: uuid.UUID, data: ReversalIn) -> EntryOut:
        now = self._clock.now()
        with transaction(self._sessions) as session:
            entry = session.get(JournalEntry, entry_id)
            if (
                entry is None
                or entry.organization_id is None
                or not principal.can_see(entry.organization_id)
            ):
                raise EntryNotFound(f"no journal entry {entry_id}", field="entry_id")
            org = session.get(Organization, entry.organization_id)
            assert org is not None
            posted = reverse_entry(
                session,
                entry_id=entry_id,
                reason=data.reason,
                created_by=data.recorded_by,
                occurred_at=now,
                recorded_at=now,
                timezone=org.timezone,
            )
            out = entry_out(session, posted)
            audit.record(
                session,
                "ledger.entry_reversed",
                at=now,
                organization_id=org.id,
                subject_type="journal_entry",
                subject_id=entry_id,
                details={"reversal_id": str(out.id)},
            )
        log.info("ledger.reversed", entry_id=str(entry_id), reversal_id=str(out.id))
        return out

    def close(self, principal: Principal, org_code: str, period: str, data: PeriodCloseIn) -> bool:
        """Close a month for an organisation; later postings dated in it go to the open month."""
        month = parse_period(period)
        with transaction(self._sessions) as session:
            org = visible_organization(session, principal, org_code, "organization_code")
            closed = close_period(
                session,
                organization_id=org.id,
                period_month=month,
                closed_by=data.closed_by,
                now=self._clock.now(),
            )
            audit.record(
                session,
                "ledger.period_closed",
                at=self._clock.now(),
                organization_id=org.id,
                subject_type="organization",
                subject_id=org.id,
                details={"period": period},
            )
        log.info("ledger.period_closed", organization_id=str(org.id), period=period)
        return closed

    def set_shares(self, principal: Principal, org_code: str, data: SharesIn) -> None:
        with transaction(self._sessions) as session:
            org = visible_organization(session, principal, org_code, "organization_code")
            allowed = set(ancestors_and_self(session, org.id))
            shares = []
            for index, share in enumerate(data.shares):
                beneficiary = _organization_in(
                    session, share.organization_code, allowed, f"shares.{index}.organization_code"
                )
                shares.append(Share(beneficiary, percent_to_bp(share.percent)))
            set_shares(
                session,
                organization_id=org.id,
                effective_from=parse_period(data.effective_from),
                shares=shares,
                allowed=allowed,
                now=self._clock.now(),
            )
            audit.record(
                session,
                "ledger.shares_set",
                at=self._clock.now(),
                organization_id=org.id,
                subject_type="organization",
                subject_id=org.id,
                details={"effective_from": data.effective_from},
            )

    def transfer_upward(self, principal: Principal, org_code: str, data: TransferIn) -> EntryOut:
        now = self._clock.now()
        with transaction(self._sessions) as session:
            org = visible_organization(session, principal, org_code, "organization_code")
            higher = set(ancestors_and_self(session, org.id)) - {org.id}
            upper = _organization_in(
                session, data.to_organization_code, higher, "to_organization_code"
            )
            posted = post_transfer_upward(
                session,
                key=f"transfer:{org.id}:{data.reference}",
                organization_id=org.id,
                upper_id=upper,
                amount_kopecks=data.amount.kopecks,
                occurred_at=start_of_day(data.occurred_on, org.timezone),
                timezone=org.timezone,
                recorded_at=now,
                created_by=data.recorded_by,
                description=f"Transfer to a higher level, {data.reference}",
            )
            out = entry_out(session, posted)
            audit.record(
                session,
                "ledger.transferred_upward",
                at=now,
                organization_id=org.id,
                subject_type="journal_entry",
                subject_id=out.id,
                details={"to_organization_id": str(upper), "amount_kopecks": data.amount.kopecks},
            )
            return out


def _organization_in(session: Session, code: str, allowed: set[uuid.UUID], field: str) -> uuid.UUID:
    """An organisation by code that must be one of `allowed` (the tree above, say)."""
    org = repository.organization_by_code(session, code)
    if org is None or org.id not in allowed:
        raise NotAnAncestor(
            f"{code!r} is not this organisation or one of its higher levels", field=field
        )
    return org.id
