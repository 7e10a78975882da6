"""Dues postings: accruals, payments from every channel, the split between union levels,
transfers upward, reversals and period closes.

These functions run inside the caller's transaction (see `journal.post_entry`), so a posting
commits together with the state change it records.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core.money import allocate
from core.periods import DEFAULT_TIMEZONE, format_period, period_of
from ledger.errors import AlreadyReversed, EntryNotFound, InvalidShares
from ledger.journal import AccountRef, EntryDraft, Line, Posted, post_entry
from ledger.models import Account, JournalEntry, PeriodClose, Posting, ShareRule
from ledger.states import (
    CHANNEL_ACCOUNT,
    AccountKind,
    Channel,
    ClosedPeriodPolicy,
    EntryKind,
    OwnerType,
)

FULL_SHARE_BP = 10_000


def receivable(member_id: uuid.UUID, currency: str = "RUB") -> AccountRef:
    return AccountRef(OwnerType.MEMBER, member_id, AccountKind.MEMBER_DUES_RECEIVABLE, currency)


def org_account(
    org_id: uuid.UUID,
    kind: AccountKind,
    currency: str = "RUB",
    counterparty_id: uuid.UUID | None = None,
) -> AccountRef:
    return AccountRef(OwnerType.ORGANIZATION, org_id, kind, currency, counterparty_id)


def accrual_key(member_id: uuid.UUID, period_month: date) -> str:
    return f"accrual:{member_id}:{format_period(period_month)}"


def accrual_exists(session: Session, member_id: uuid.UUID, period_month: date) -> bool:
    key = accrual_key(member_id, period_month)
    return (
        session.scalar(select(JournalEntry.id).where(JournalEntry.idempotency_key == key))
        is not None
    )


def post_dues_accrual(
    session: Session,
    *,
    member_id: uuid.UUID,
    organization_id: uuid.UUID,
    period_month: date,
    amount_kopecks: int,
    occurred_at: datetime,
    recorded_at: datetime,
    source_type: str,
    source_id: str,
    timezone: str = DEFAULT_TIMEZONE,
    description: str | None = None,
) -> uuid.UUID | None:
    """The member owes a month of dues: debit their receivable, credit the org's dues income.

    `occurred_at` is when the month became owed: its first day, or now if it is accrued ahead.
    A member-month is accrued once: whoever accrues it first (the monthly accrual by plan, or
    a card charge for a member without a plan) wins; a second accrual of the month is a no-op.
    A zero amount (an exempt month) posts nothing and returns None."""
    existing = session.scalar(
        select(JournalEntry.id).where(
            JournalEntry.idempotency_key == accrual_key(member_id, period_month)
        )
    )
    if existing is not None:
        return existing
    if amount_kopecks == 0:
        return None
    return post_entry(
        session,
        EntryDraft(
            idempotency_key=accrual_key(member_id, period_month),
            kind=EntryKind.ACCRUAL,
            occurred_at=occurred_at,
            organization_id=organization_id,
            member_id=member_id,
            timezone=timezone,
            period_month=period_month,
            source_type=source_type,
            source_id=source_id,
            description=description or f"Dues for {format_period(period_month)}",
            lines=(
                Line(receivable(member_id), amount_kopecks),
                Line(org_account(organization_id, AccountKind.DUES_INCOME), -amount_kopecks),
            ),
        ),
        recorded_at=recorded_at,
    ).entry_id


@dataclass(frozen=True)
class MemberPayment:
    """Money from a member that reached the organisation by some channel."""

    idempotency_key: str
    member_id: uuid.UUID
    organization_id: uuid.UUID
    channel: Channel
    amount_kopecks: int
    occurred_at: datetime
    source_type: str
    source_id: str
    description: str
    timezone: str = DEFAULT_TIMEZONE
    fee_kopecks: int = 0  # kept by the acquirer out of the amount
    period_month: date | None = None  # the month it was meant for, if known (informational)
    created_by: str | None = None


def post_member_payment(
    session: Session,
    payment: MemberPayment,
    *,
    recorded_at: datetime,
    closed_period: ClosedPeriodPolicy = ClosedPeriodPolicy.REBOOK,
) -> Posted:
    """Credit the member's receivable (it pays the oldest unpaid month first), debit the
    channel's cash account, and share the received dues with the higher levels."""
    if payment.amount_kopecks <= 0:
        raise ValueError("a payment amount must be positive")
    net = payment.amount_kopecks - payment.fee_kopecks
    lines = [
        Line(receivable(payment.member_id), -payment.amount_kopecks),
        Line(org_account(payment.organization_id, CHANNEL_ACCOUNT[payment.channel]), net),
    ]
    if payment.fee_kopecks:
        lines.append(
            Line(
                org_account(payment.organization_id, AccountKind.ACQUIRER_FEES), payment.fee_kopecks
            )
        )
    posted = post_entry(
        session,
        EntryDraft(
            idempotency_key=payment.idempotency_key,
            kind=EntryKind.PAYMENT,
            occurred_at=payment.occurred_at,
            organization_id=payment.organization_id,
            member_id=payment.member_id,
            timezone=payment.timezone,
            period_month=payment.period_month,
            channel=payment.channel,
            source_type=payment.source_type,
            source_id=payment.source_id,
            description=payment.description,
            created_by=payment.created_by,
            lines=tuple(lines),
        ),
        recorded_at=recorded_at,
        closed_period=closed_period,
    )
    if posted.created:
        post_split(
            session,
            key=f"split:{payment.idempotency_key}",
            organization_id=payment.organization_id,
            amount_kopecks=payment.amount_kopecks,
            occurred_at=payment.occurred_at,
            timezone=payment.timezone,
            recorded_at=recorded_at,
            source_id=str(posted.entry_id),
        )
    return posted


def card_payment_key(gateway_payment_id: str) -> str:
    return f"payment:{gateway_payment_id}"


def post_card_payment(
    session: Session,
    *,
    member_id: uuid.UUID,
    organization_id: uuid.UUID,
    gateway_payment_id: str,
    period_month: date,
    amount_kopecks: int,
    income_kopecks: int | None,
    occurred_at: datetime,
    recorded_at: datetime,
    source_id: str,
    timezone: str = DEFAULT_TIMEZONE,
    covered_months: Sequence[date] | None = None,
) -> uuid.UUID:
    """A card payment succeeded: the acquirer owes the organisation the net amount, and the
    difference is its fee. `covered_months` names the months a payment of arrears was meant
    for; like any payment it pays the oldest unpaid months first, which the caller made them."""
    net = amount_kopecks if income_kopecks is None else income_kopecks
    meant_for = ", ".join(format_period(m) for m in covered_months or [period_month])
    return post_member_payment(
        session,
        MemberPayment(
            idempotency_key=card_payment_key(gateway_payment_id),
            member_id=member_id,
            organization_id=organization_id,
            channel=Channel.CARD,
            amount_kopecks=amount_kopecks,
            occurred_at=occurred_at,
            source_type="charge",
            source_id=source_id,
            description=f"Card payment for {meant_for}",
            timezone=timezone,
            fee_kopecks=amount_kopecks - net,
            period_month=period_month,
        ),
        recorded_at=recorded_at,
    ).entry_id


def card_refund_key(refund_id: str) -> str:
    return f"refund:{refund_id}"


def post_card_refund(
    session: Session,
    *,
    refund_id: str,
    gateway_payment_id: str,
    member_id: uuid.UUID,
    organization_id: uuid.UUID,
    amount_kopecks: int,
    occurred_at: datetime,
    recorded_at: datetime,
    timezone: str = DEFAULT_TIMEZONE,
    created_by: str | None = None,
    refunded_before_kopecks: int = 0,
) -> Posted:
    """The acquirer gave (part of) a card payment back to the member: a reversing entry takes
    the credit back from the member's receivable and the money out of the acquirer's clearing
    account, and the higher levels give back the same proportion of their share.

    Posted once per refund (keyed by it); a late fact, so a closed month books it in the next
    open one. The acquirer keeps its fee on the original payment (YooKassa returns none).
    `refunded_before_kopecks` is what earlier refunds of the payment gave back: the higher
    levels' shares are apportioned on the running total, so however a payment is refunded in
    parts, refunding all of it gives back exactly the shares it paid."""
    if amount_kopecks <= 0:
        raise ValueError("a refund amount must be positive")
    payment_entry = session.scalar(
        select(JournalEntry).where(
            JournalEntry.idempotency_key == card_payment_key(gateway_payment_id)
        )
    )
    key = card_refund_key(refund_id)
    posted = post_entry(
        session,
        EntryDraft(
            idempotency_key=key,
            kind=EntryKind.REVERSAL,
            occurred_at=occurred_at,
            organization_id=organization_id,
            member_id=member_id,
            timezone=timezone,
            channel=Channel.CARD,
            source_type="refund",
            source_id=refund_id,
            description=f"Card refund of payment {gateway_payment_id}"[:500],
            created_by=created_by,
            lines=(
                Line(receivable(member_id), amount_kopecks),
                Line(org_account(organization_id, AccountKind.ACQUIRER_CLEARING), -amount_kopecks),
            ),
        ),
        recorded_at=recorded_at,
    )
    if posted.created and payment_entry is not None:
        _unsplit_refund(
            session,
            key=f"split:{key}",
            payment_entry=payment_entry,
            amount_kopecks=amount_kopecks,
            refunded_before_kopecks=refunded_before_kopecks,
            occurred_at=occurred_at,
            timezone=timezone,
            recorded_at=recorded_at,
            source_id=str(posted.entry_id),
        )
    return posted


def _unsplit_refund(
    session: Session,
    *,
    key: str,
    payment_entry: JournalEntry,
    amount_kopecks: int,
    refunded_before_kopecks: int,
    occurred_at: datetime,
    timezone: str,
    recorded_at: datetime,
    source_id: str,
) -> None:
    """Give back each higher level's share of a refunded amount, in the proportions the
    payment was split by (so a full refund undoes the split to the kopeck)."""
    split = session.scalar(
        select(JournalEntry).where(
            JournalEntry.idempotency_key == f"split:{payment_entry.idempotency_key}"
        )
    )
    if split is None or payment_entry.organization_id is None:
        return
    org_id = payment_entry.organization_id
    rows = session.execute(
        select(Account, Posting.amount_kopecks)
        .join(Posting, Posting.account_id == Account.id)
        .where(
            Posting.entry_id == split.id,
            Account.kind == AccountKind.PAYABLE_UPWARD,
            Account.owner_id == org_id,
        )
        .order_by(Posting.id)
    ).all()
    shares = [(account.counterparty_id, -amount) for account, amount in rows if amount < 0]
    paid = -sum(
        session.scalars(
            select(Posting.amount_kopecks)
            .join(Account, Account.id == Posting.account_id)
            .where(
                Posting.entry_id == payment_entry.id,
                Account.kind == AccountKind.MEMBER_DUES_RECEIVABLE,
            )
        )
    )
    shared = sum(part for _, part in shares)
    before = max(refunded_before_kopecks, 0)
    if not shares or paid <= 0 or shared > paid or before + amount_kopecks > paid:
        return
    weights = [part for _, part in shares] + [paid - shared]
    after_parts = allocate(before + amount_kopecks, weights)
    before_parts = allocate(before, weights) if before else [0] * len(weights)
    parts = [a - b for a, b in zip(after_parts, before_parts, strict=True)]
    lines: list[Line] = []
    for (upper, _), part in zip(shares, parts, strict=False):
        if part == 0 or upper is None:
            continue
        lines += [
            Line(org_account(org_id, AccountKind.DUES_INCOME), -part),
            Line(org_account(org_id, AccountKind.PAYABLE_UPWARD, counterparty_id=upper), part),
            Line(
                org_account(upper, AccountKind.RECEIVABLE_FROM_BELOW, counterparty_id=org_id),
                -part,
            ),
            Line(org_account(upper, AccountKind.DUES_INCOME), part),
        ]
    if not lines:
        return
    post_entry(
        session,
        EntryDraft(
            idempotency_key=key,
            kind=EntryKind.REVERSAL,
            occurred_at=occurred_at,
            organization_id=org_id,
            timezone=timezone,
            source_type="entry",
            source_id=source_id,
            description="Refunded dues taken back from the higher levels",
            lines=tuple(lines),
        ),
        recorded_at=recorded_at,
    )


# -- the split between union levels ---------------------------------------------------------


@dataclass(frozen=True)
class Share:
    beneficiary_id: uuid.UUID
    share_bp: int  # basis points: 10 000 = 100 %


def validate_shares(shares: Sequence[Share], allowed: set[uuid.UUID]) -> None:
    if not shares:
        raise InvalidShares("at least one share is needed", field="shares")
    if sum(share.share_bp for share in shares) != FULL_SHARE_BP:
        raise InvalidShares("the shares of an organisation must sum to 100 %", field="shares")
    seen: set[uuid.UUID] = set()
    for index, share in enumerate(shares):
        if share.share_bp <= 0:
            raise InvalidShares("every share must be above 0 %", field=f"shares.{index}.percent")
        if share.beneficiary_id not in allowed:
            raise InvalidShares(
                "a share can go only to the organisation itself or one of its ancestors",
                field=f"shares.{index}.organization_code",
            )
        if share.beneficiary_id in seen:
            raise InvalidShares("an organisation appears twice", field=f"shares.{index}")
        seen.add(share.beneficiary_id)


def set_shares(
    session: Session,
    *,
    organization_id: uuid.UUID,
    effective_from: date,
    shares: Sequence[Share],
    allowed: set[uuid.UUID],
    now: datetime,
) -> None:
    """Replace the share table of an organisation from a month on (effective-dated)."""
    validate_shares(shares, allowed)
    session.query(ShareRule).filter(
        ShareRule.organization_id == organization_id, ShareRule.effective_from == effective_from
    ).delete()
    session.execute(
        insert(ShareRule),
        [
            {
                "id": uuid.uuid4(),
                "organization_id": organization_id,
                "effective_from": effective_from,
                "beneficiary_id": share.beneficiary_id,
                "share_bp": share.share_bp,
                "position": position,
                "created_at": now,
            }
            for position, share in enumerate(shares)
        ],
    )


def shares_for(session: Session, organization_id: uuid.UUID, period: date) -> list[Share]:
    """The share table in force for an organisation in a month; none means it keeps all."""
    effective = session.scalar(
        select(ShareRule.effective_from)
        .where(ShareRule.organization_id == organization_id, ShareRule.effective_from <= period)
        .order_by(ShareRule.effective_from.desc())
        .limit(1)
    )
    if effective is None:
        return []
    rows = session.execute(
        select(ShareRule.beneficiary_id, ShareRule.share_bp)
        .where(ShareRule.organization_id == organization_id, ShareRule.effective_from == effective)
        .order_by(ShareRule.position)
    ).all()
    return [Share(row.beneficiary_id, row.share_bp) for row in rows]


def post_split(
    session: Session,
    *,
    key: str,
    organization_id: uuid.UUID,
    amount_kopecks: int,
    occurred_at: datetime,
    timezone: str,
    recorded_at: datetime,
    source_id: str,
) -> Posted | None:
    """Share received dues: the organisation owes each higher level its part (a payable in its
    books), and each higher level is owed it (a receivable, and income, in its own)."""
    shares = shares_for(session, organization_id, period_of(occurred_at, timezone))
    if not shares:
        return None
    parts = allocate(amount_kopecks, [share.share_bp for share in shares])
    lines: list[Line] = []
    for share, part in zip(shares, parts, strict=True):
        if share.beneficiary_id == organization_id or part == 0:
            continue
        upper = share.beneficiary_id
        lines += [
            Line(org_account(organization_id, AccountKind.DUES_INCOME), part),
            Line(
                org_account(organization_id, AccountKind.PAYABLE_UPWARD, counterparty_id=upper),
                -part,
            ),
            Line(
                org_account(
                    upper, AccountKind.RECEIVABLE_FROM_BELOW, counterparty_id=organization_id
                ),
                part,
            ),
            Line(org_account(upper, AccountKind.DUES_INCOME), -part),
        ]
    if not lines:
        return None
    return post_entry(
        session,
        EntryDraft(
            idempotency_key=key,
            kind=EntryKind.SPLIT,
            occurred_at=occurred_at,
            organization_id=organization_id,
            timezone=timezone,
            source_type="entry",
            source_id=source_id,
            description="Dues shared with the higher levels",
            lines=tuple(lines),
        ),
        recorded_at=recorded_at,
    )


def post_transfer_upward(
    session: Session,
    *,
    key: str,
    organization_id: uuid.UUID,
    upper_id: uuid.UUID,
    amount_kopecks: int,
    occurred_at: datetime,
    timezone: str,
    recorded_at: datetime,
    created_by: str,
    description: str,
) -> Posted:
    """Money actually sent from an organisation's bank account to a higher level's."""
    return post_entry(
        session,
        EntryDraft(
            idempotency_key=key,
            kind=EntryKind.TRANSFER,
            occurred_at=occurred_at,
            organization_id=organization_id,
            timezone=timezone,
            channel=Channel.BANK_TRANSFER,
            source_type="transfer",
            source_id=key,
            description=description,
            created_by=created_by,
            lines=(
                Line(
                    org_account(
                        organization_id, AccountKind.PAYABLE_UPWARD, counterparty_id=upper_id
                    ),
                    amount_kopecks,
                ),
                Line(org_account(organization_id, AccountKind.BANK), -amount_kopecks),
                Line(org_account(upper_id, AccountKind.BANK), amount_kopecks),
                Line(
                    org_account(
                        upper_id, AccountKind.RECEIVABLE_FROM_BELOW, counterparty_id=organization_id
                    ),
                    -amount_kopecks,
                ),
            ),
        ),
        recorded_at=recorded_at,
        closed_period=ClosedPeriodPolicy.REFUSE,
    )


# -- corrections and closes -----------------------------------------------------------------


def reverse_entry(
    session: Session,
    *,
    entry_id: uuid.UUID,
    reason: str,
    created_by: str,
    occurred_at: datetime,
    recorded_at: datetime,
    timezone: str = DEFAULT_TIMEZONE,
    closed_period: ClosedPeriodPolicy = ClosedPeriodPolicy.REFUSE,
) -> Posted:
    """Undo an entry with one that posts the opposite amounts and points at it. A payment's
    share of the split is reversed with it."""
    original = session.get(JournalEntry, entry_id)
    if original is None:
        raise EntryNotFound(f"no journal entry {entry_id}", field="entry_id")
    if original.kind == EntryKind.REVERSAL:
        raise AlreadyReversed("a reversal is not reversed; post a new entry", field="entry_id")
    already = session.scalar(
        select(JournalEntry.id).where(JournalEntry.reverses_entry_id == entry_id)
    )
    if already is not None:
        raise AlreadyReversed(f"entry {entry_id} was reversed by {already}", field="entry_id")
    rows = session.execute(
        select(Account, Posting.amount_kopecks)
        .join(Posting, Posting.account_id == Account.id)
        .where(Posting.entry_id == entry_id)
        .order_by(Posting.id)
    ).all()
    lines = tuple(
        Line(
            AccountRef(
                OwnerType(account.owner_type),
                account.owner_id,
                AccountKind(account.kind),
                account.currency,
                account.counterparty_id,
            ),
            -amount,
        )
        for account, amount in rows
    )
    posted = post_entry(
        session,
        EntryDraft(
            idempotency_key=f"reversal:{entry_id}",
            kind=EntryKind.REVERSAL,
            occurred_at=occurred_at,
            organization_id=original.organization_id,
            member_id=original.member_id,
            timezone=timezone,
            # Reversing an accrual takes the charge off its month; reversing a payment takes
            # back credit, which the months are recomputed from.
            period_month=original.period_month if original.kind == EntryKind.ACCRUAL else None,
            channel=Channel(original.channel) if original.channel else None,
            source_type="entry",
            source_id=str(entry_id),
            description=f"Reversal: {reason}"[:500],
            created_by=created_by,
            reverses_entry_id=entry_id,
            lines=lines,
        ),
        recorded_at=recorded_at,
        closed_period=closed_period,
    )
    split = session.scalar(
        select(JournalEntry.id).where(
            JournalEntry.idempotency_key == f"split:{original.idempotency_key}"
        )
    )
    if split is not None:
        reverse_entry(
            session,
            entry_id=split,
            reason=reason,
            created_by=created_by,
            occurred_at=occurred_at,
            recorded_at=recorded_at,
            timezone=timezone,
            closed_period=closed_period,
        )
    return posted


def close_period(
    session: Session,
    *,
    organization_id: uuid.UUID,
    period_month: date,
    closed_by: str,
    now: datetime,
) -> bool:
    """Close a month for an organisation. Closing it again changes nothing."""
    inserted = session.scalar(
        insert(PeriodClose)
        .values(
            organization_id=organization_id,
            period_month=period_month,
            closed_at=now,
            closed_by=closed_by,
        )
        .on_conflict_do_nothing()
        .returning(PeriodClose.period_month)
    )
    return inserted is not None
