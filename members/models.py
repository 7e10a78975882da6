"""Organisations (the union tree), members and the API keys of the systems acting for them."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organizations.id"), index=True)
    timezone: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (CheckConstraint("code ~ '^[A-Za-z0-9_.-]+$'", name="code_format"),)


class Member(Base):
    __tablename__ = "members"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # The CRM's own membership record id; the API addresses members by it.
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    # Personal data, encrypted under the member's data key (members/pii.py); never plaintext.
    # NULL after erasure. Read and write them only through `MemberVault`.
    full_name_ciphertext: Mapped[str | None] = mapped_column(Text)
    email_ciphertext: Mapped[str | None] = mapped_column(Text)
    phone_ciphertext: Mapped[str | None] = mapped_column(Text)
    birth_date_ciphertext: Mapped[str | None] = mapped_column(Text)
    # Blind indexes (HMAC under the index key) for lookups by email or phone.
    email_index: Mapped[str | None] = mapped_column(String(64), index=True)
    phone_index: Mapped[str | None] = mapped_column(String(64), index=True)
    # Membership dates (inclusive); unknown dates mean "a member all along".
    joined_on: Mapped[date | None]
    left_on: Mapped[date | None]
    # Days of the month wages are paid (declared by the member or the CRM): soft declines are
    # retried the day after the next payday.
    paydays: Mapped[list[int] | None] = mapped_column(ARRAY(SmallInteger))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Crypto-shredded: the data key is destroyed and external_id replaced by a pseudonym.
    erased_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(
            "paydays IS NULL OR (cardinality(paydays) BETWEEN 1 AND 31"
            " AND 1 <= ALL(paydays) AND 31 >= ALL(paydays))",
            name="paydays_are_days",
        ),
    )


class MemberDataKey(Base):
    """A member's data key, wrapped by a master key (`kek_id`). Deleting it crypto-shreds the
    member. Two versions exist only inside the transaction that rotates the data key."""

    __tablename__ = "member_data_keys"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    version: Mapped[int] = mapped_column(Integer)
    kek_id: Mapped[str] = mapped_column(String(32), index=True)
    wrapped_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    rewrapped_at: Mapped[datetime | None]

    __table_args__ = (
        PrimaryKeyConstraint("member_id", "version"),
        CheckConstraint("version > 0", name="version_positive"),
    )


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    # Keys are random and high-entropy, so a fast keyed hash (HMAC-SHA-256) is the right one,
    # not a password KDF: a lookup per request stays an index probe.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # Written at most once per few minutes per key, not on every request.
    last_used_at: Mapped[datetime | None]
    # A rotation's successor: this key stays valid until its (shortened) expiry.
    replaced_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id"))

    __table_args__ = (Index("ix_api_keys_organization_id", "organization_id"),)


class Treasurer(Base):
    """A person (a treasurer of an organisation) who signs in to the treasurer pages."""

    __tablename__ = "treasurers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    login: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(300))
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    # The last accepted TOTP time step: a code is accepted once.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]


class TreasurerSession(Base):
    __tablename__ = "treasurer_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    treasurer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("treasurers.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class DuesPlan(Base):
    """How much a member owes a month. Plans are data: a fixed amount, a percentage of the
    member's declared monthly wage (with an optional floor and ceiling), or exempt."""

    __tablename__ = "dues_plans"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # The organisation that defines the plan; its whole subtree may use it.
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(20))
    amount_kopecks: Mapped[int | None] = mapped_column(BigInteger)
    rate_bp: Mapped[int | None] = mapped_column(Integer)  # 100 = 1 %
    minimum_kopecks: Mapped[int | None] = mapped_column(BigInteger)
    maximum_kopecks: Mapped[int | None] = mapped_column(BigInteger)
    category: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("kind IN ('fixed', 'percent_of_wage', 'exempt')", name="kind_known"),
        CheckConstraint(
            "(kind = 'fixed' AND amount_kopecks > 0 AND rate_bp IS NULL)"
            " OR (kind = 'percent_of_wage' AND rate_bp > 0 AND amount_kopecks IS NULL)"
            " OR (kind = 'exempt' AND amount_kopecks IS NULL AND rate_bp IS NULL)",
            name="kind_fields",
        ),
    )


class MemberDuesPlan(Base):
    """From a month on, a member pays by a plan (and, for a percentage, on a declared wage)."""

    __tablename__ = "member_dues_plans"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dues_plans.id"))
    effective_from: Mapped[date]
    declared_wage_kopecks: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("member_id", "effective_from"),
        CheckConstraint("extract(day FROM effective_from) = 1", name="effective_from_is_month"),
        CheckConstraint(
            "declared_wage_kopecks IS NULL OR declared_wage_kopecks > 0", name="wage_positive"
        ),
    )


class MemberConsent(Base):
    """What a member agreed to, as evidence: the version of the text and a hash of the exact
    words shown, in which language, when, and from which address and browser. Rows are only
    ever added; withdrawing is a new fact elsewhere (a canceled subscription)."""

    __tablename__ = "member_consents"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))  # e.g. "autopay"
    text_version: Mapped[str] = mapped_column(String(64))
    text_sha256: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    accepted_at: Mapped[datetime]
    ip_address: Mapped[str | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(String(512))
    # What the consent was given for, e.g. ("subscription", its id).
    source_type: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(64))
