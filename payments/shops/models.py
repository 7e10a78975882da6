"""YooKassa shops of organisations: an organisation may collect through its own shop."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from core.crypto import SealedColumn
from core.db import Base


class GatewayShop(Base):
    """A shop's credentials, the secret sealed (AES-GCM) under the installation's master key.

    `active` marks the shop an organisation collects new payments through (at most one per
    organisation). A shop that is no longer active keeps its credentials: cards saved there,
    payments to settle and refunds of its payments can only go through it."""

    __tablename__ = "gateway_shops"

    shop_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The organisation that registered the shop; only its subtree's callers may change it.
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    secret_sealed: Mapped[str] = mapped_column(String(1000))
    active: Mapped[bool]
    # Bumped on every change, so every process notices a changed secret and rebuilds its client.
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index(
            "uq_gateway_shops_one_active_per_org",
            "organization_id",
            unique=True,
            postgresql_where=text("active"),
        ),
    )


# Sealed with `column_aad("gateway_shops", "secret_sealed", shop_id)`; `vznos keys rotate`
# re-seals it under the newest master key.
SHOP_SECRET = SealedColumn(GatewayShop.__tablename__, "secret_sealed", id_column="shop_id")
