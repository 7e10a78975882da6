"""The audit log: who did what, when, from where. Append-only, like the journal: a trigger
refuses UPDATE and DELETE, and the application role has neither grant.

Written in the same transaction as the change (or the read) it records, through `record()`,
which takes the actor and its address from the bound `Actor` (core/access.py). Money-affecting
actions and every read of a member's personal data are recorded.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.access import current_actor
from core.db import Base
from core.ids import new_id


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # Commit order for cursor pagination (newest first).
    sequence: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True)
    occurred_at: Mapped[datetime]
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[uuid.UUID | None]
    ip: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    # The organisation whose data was touched: admins of it and of its ancestors see the row.
    organization_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organizations.id"))
    subject_type: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[str] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)

    __table_args__ = (
        Index("ix_audit_events_organization_sequence", "organization_id", "sequence"),
    )
    # Insert without RETURNING the sequence: row-level security lets the app write an audit
    # row about an organisation it cannot read yet (one created in this very transaction),
    # and RETURNING would apply the read policy to the new row.
    __mapper_args__ = {"eager_defaults": False}  # noqa: RUF012 - SQLAlchemy reads it


def record(
    session: Session,
    action: str,
    *,
    at: datetime,
    organization_id: uuid.UUID | None,
    subject_type: str,
    subject_id: object,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one audit row in the caller's transaction. `details` must hold ids and amounts
    only, never personal data."""
    actor = current_actor()
    session.add(
        AuditEvent(
            id=new_id(),
            occurred_at=at,
            actor_type=actor.kind,
            actor_id=actor.id,
            ip=actor.ip,
            action=action,
            organization_id=organization_id,
            subject_type=subject_type,
            subject_id=str(subject_id),
            details=details or {},
        )
    )
