"""The journal: accounts, append-only entries and their postings (signed kopecks, Σ = 0), the
balances maintained beside them, the per-month dues ledger of each member, their arrears as
last announced, and period closes."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class Account(Base):
    __tablename__ = "ledger_accounts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    owner_type: Mapped[str] = mapped_column(String(20))
    owner_id: Mapped[uuid.UUID]
    # For debts between levels: the other organisation (payable to it, receivable from it).
    counterparty_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]

    __table_args__ = (
        Index(
            "uq_ledger_accounts_key",
            "owner_type",
            "owner_id",
            "kind",
            "currency",
            text("coalesce(counterparty_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
            unique=True,
        ),
        CheckConstraint("owner_type IN ('member', 'organization')", name="owner_type_known"),
    )


class JournalEntry(Base):
    __tablename__ = "ledger_entries"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # One entry per business fact: e.g. "payment:<gateway payment id>", "accrual:<member>:<month>".
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    # SHA-256 of what was posted, so a reused key with a different body is caught.
    body_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    # The organisation whose books the entry belongs to (the member's organisation).
    organization_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organizations.id"))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))
    # When it happened (e.g. a bank value date) and when we learned of it.
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    # The accounting month the entry is booked in: the month it occurred in, or the first open
    # month after it when that one was closed.
    booked_period: Mapped[date]
    # The dues month the entry is about (an accrual's month), if any.
    period_month: Mapped[date | None]
    channel: Mapped[str | None] = mapped_column(String(20))
    source_type: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500))
    created_by: Mapped[str | None] = mapped_column(String(200))
    reverses_entry_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ledger_entries.id"), unique=True
    )
    # The transaction that wrote the entry (set by the database, checked by a trigger): its
    # postings can only be written by that same transaction, so a committed entry is final.
    created_xact: Mapped[int | None] = mapped_column(
        BigInteger, server_default=text("txid_current()")
    )

    __table_args__ = (
        CheckConstraint(
            "period_month IS NULL OR extract(day FROM period_month) = 1", name="period_is_month"
        ),
        CheckConstraint("extract(day FROM booked_period) = 1", name="booked_period_is_month"),
        Index("ix_ledger_entries_member", "member_id", "occurred_at"),
        Index("ix_ledger_entries_org_period", "organization_id", "booked_period"),
        Index("ix_ledger_entries_source", "source_type", "source_id"),
    )


class Posting(Base):
    __tablename__ = "ledger_postings"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # References without foreign keys: a statement trigger proves, once per INSERT, that every
    # posting's entry and account exist (entries and accounts can never be changed or removed),
    # cheaper than two per-row foreign-key lookups per posting (migration 0013).
    entry_id: Mapped[uuid.UUID]
    account_id: Mapped[uuid.UUID]
    # Signed: a debit is positive, a credit negative; the postings of an entry sum to zero.
    amount_kopecks: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # Copied from the entry (both are immutable) so statements read one index.
    occurred_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("amount_kopecks <> 0", name="amount_not_zero"),
        Index("ix_ledger_postings_entry_id", "entry_id"),
        Index("ix_ledger_postings_account_time", "account_id", "occurred_at", "id"),
    )


class Balance(Base):
    """An account's balance, maintained in the same transaction as its postings."""

    __tablename__ = "ledger_balances"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ledger_accounts.id"), primary_key=True
    )
    balance_kopecks: Mapped[int] = mapped_column(BigInteger)
    postings: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class DuesMonth(Base):
    """What a member owes for one month and how much of it is paid, payments applied to the
    oldest unpaid month first. Maintained with the postings; recomputable from them."""

    __tablename__ = "ledger_dues_months"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    period_month: Mapped[date] = mapped_column(primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    currency: Mapped[str] = mapped_column(String(3))
    accrued_kopecks: Mapped[int] = mapped_column(BigInteger)
    paid_kopecks: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("paid_kopecks >= 0 AND paid_kopecks <= accrued_kopecks", name="paid_range"),
        CheckConstraint("accrued_kopecks >= 0", name="accrued_not_negative"),
        # The unpaid months only, covering what arrears reads need: the arrears list and a
        # member's oldest unpaid month are index-only scans, however many months were paid.
        Index(
            "ix_ledger_dues_months_unpaid",
            "member_id",
            "period_month",
            postgresql_include=["organization_id", "accrued_kopecks", "paid_kopecks"],
            postgresql_where=text("paid_kopecks < accrued_kopecks"),
        ),
    )


class ArrearsSummary(Base):
    """Per member and organisation, the months owed and their kopecks: kept by a database
    trigger from `ledger_dues_months` (a row exists only while something is owed)."""

    __tablename__ = "ledger_arrears_summary"

    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    months_owed: Mapped[int] = mapped_column(Integer)
    owed_kopecks: Mapped[int] = mapped_column(BigInteger)
    oldest_unpaid: Mapped[date]

    __table_args__ = (
        CheckConstraint("months_owed > 0 AND owed_kopecks > 0", name="owing_something"),
        Index(
            "ix_ledger_arrears_summary_owing",
            "member_id",
            postgresql_include=["organization_id", "months_owed", "owed_kopecks", "oldest_unpaid"],
            postgresql_where=text("months_owed >= 2"),
        ),
    )


class PeriodClose(Base):
    __tablename__ = "ledger_period_closes"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id"), primary_key=True
    )
    period_month: Mapped[date] = mapped_column(primary_key=True)
    closed_at: Mapped[datetime]
    closed_by: Mapped[str] = mapped_column(String(200))


class ShareRule(Base):
    """From a month on, an organisation's received dues are shared between it and its ancestors;
    the shares of one (organisation, month) sum to 10 000 basis points."""

    __tablename__ = "ledger_share_rules"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    effective_from: Mapped[date]
    beneficiary_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    share_bp: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("organization_id", "effective_from", "beneficiary_id"),
        CheckConstraint("share_bp > 0 AND share_bp <= 10000", name="share_range"),
        CheckConstraint("extract(day FROM effective_from) = 1", name="effective_from_is_month"),
    )


class MemberArrears(Base):
    """A member's arrears as last announced (`ledger/arrears.py`): the months not fully paid
    and what they still owe. No row means nothing owed."""

    __tablename__ = "ledger_member_arrears"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    months_owed: Mapped[int] = mapped_column(Integer)
    owed_kopecks: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("months_owed >= 0 AND owed_kopecks >= 0", name="owed_not_negative"),
    )
