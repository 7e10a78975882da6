"""An organisation's own retry policy; without one, its nearest ancestor's or the default."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class RetryPolicyRow(Base):
    __tablename__ = "retry_policies"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id"), primary_key=True
    )
    # The policy as data (`payments.retries.policy.RetryPolicy.to_data()`), validated on write.
    policy: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime]
