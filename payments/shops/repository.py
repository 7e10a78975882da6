"""SQL for organisations' shops. Never commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from members.models import Organization
from payments.shops.models import GatewayShop


@dataclass(frozen=True)
class NearestShop:
    shop_id: str
    organization_id: uuid.UUID
    depth: int  # 0: the organisation's own


def nearest_shop(session: Session, organization_id: uuid.UUID) -> NearestShop | None:
    """The active shop of the organisation or of its nearest ancestor that has one."""
    chain = (
        select(
            Organization.id.label("id"),
            Organization.parent_id.label("parent_id"),
            literal(0).label("depth"),
        )
        .where(Organization.id == organization_id)
        .cte("chain", recursive=True)
    )
    chain = chain.union_all(
        select(Organization.id, Organization.parent_id, chain.c.depth + 1).join(
            chain, Organization.id == chain.c.parent_id
        )
    )
    row = session.execute(
        select(GatewayShop.shop_id, GatewayShop.organization_id, chain.c.depth)
        .join(chain, chain.c.id == GatewayShop.organization_id)
        .where(GatewayShop.active.is_(True))
        .order_by(chain.c.depth)
        .limit(1)
    ).one_or_none()
    if row is None:
        return None
    return NearestShop(row.shop_id, row.organization_id, row.depth)


def active_shop_of(
    session: Session, organization_id: uuid.UUID, *, for_update: bool = False
) -> GatewayShop | None:
    query = select(GatewayShop).where(
        GatewayShop.organization_id == organization_id, GatewayShop.active.is_(True)
    )
    if for_update:
        query = query.with_for_update()
    return session.scalar(query)


def shop_for_update(session: Session, shop_id: str) -> GatewayShop | None:
    return session.get(GatewayShop, shop_id, with_for_update=True)


def credentials(session: Session, shop_id: str) -> tuple[int, str] | None:
    """(version, sealed secret) of a shop, active or not."""
    row = session.execute(
        select(GatewayShop.version, GatewayShop.secret_sealed).where(GatewayShop.shop_id == shop_id)
    ).one_or_none()
    return (row.version, row.secret_sealed) if row is not None else None
