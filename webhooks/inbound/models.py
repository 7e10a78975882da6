"""The inbox: every gateway notification we accepted, stored raw before anything acts on it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, SmallInteger, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class InboxItem(Base):
    __tablename__ = "webhook_inbox"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # "yookassa"
    shop_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (
        # YooKassa re-sends a notification until it gets a 200: the database drops duplicates.
        Index("uq_webhook_inbox_event", "source", "shop_id", "event", "object_id", unique=True),
        Index(
            "ix_webhook_inbox_unprocessed",
            "received_at",
            postgresql_where=text("processed_at IS NULL"),
        ),
    )
