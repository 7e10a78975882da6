"""SQL for organisations, members and API keys. Never commits."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import false, literal, or_, select
from sqlalchemy.orm import Session

from members.models import ApiKey, Member, Organization


def subtree_ids(session: Session, root_id: uuid.UUID) -> set[uuid.UUID]:
    """The organisation and every organisation below it."""
    tree = (
        select(Organization.id.label("id"))
        .where(Organization.id == root_id)
        .cte("tree", recursive=True)
    )
    tree = tree.union_all(select(Organization.id).join(tree, Organization.parent_id == tree.c.id))
    return set(session.scalars(select(tree.c.id)))


def organization_by_code(
    session: Session, code: str, *, for_update: bool = False
) -> Organization | None:
    query = select(Organization).where(Organization.code == code)
    if for_update:
        query = query.with_for_update()
    return session.scalar(query)


def organizations_by_ids(session: Session, ids: Iterable[uuid.UUID]) -> list[Organization]:
    return list(
        session.scalars(
            select(Organization).where(Organization.id.in_(list(ids))).order_by(Organization.code)
        )
    )


def member_by_external_id(
    session: Session, external_id: str, *, for_update: bool = False
) -> Member | None:
    query = select(Member).where(Member.external_id == external_id)
    if for_update:
        query = query.with_for_update()
    return session.scalar(query)


def members_by_index(
    session: Session, *, email_index: str | None, phone_index: str | None
) -> list[Member]:
    """Members whose blind index matches either value (exact, keyed-hash equality)."""
    conditions = [
        *([Member.email_index == email_index] if email_index else []),
        *([Member.phone_index == phone_index] if phone_index else []),
    ]
    query = select(Member).where(or_(false(), *conditions)).order_by(Member.created_at)
    return list(session.scalars(query.limit(100)))


def api_key_by_hash(session: Session, *key_hashes: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.key_hash.in_(key_hashes)))


def any_organization(session: Session) -> bool:
    return session.scalar(select(literal(True)).select_from(Organization).limit(1)) is not None
