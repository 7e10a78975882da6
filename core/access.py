"""Who is acting, for PostgreSQL too: row-level security keyed by a per-transaction setting.

An authenticated request binds an `Actor` (which organisations it may see, who it is, from
where) in a context variable. Every transaction a session begins then runs
`set_config('vznos.org_ids', …, true)` — `SET LOCAL`, so the setting ends with the transaction
and can never leak to the next user of a pooled connection. The row-level security policies the
migrations put on member-owned tables read it through `vznos_org_visible(organization_id)`:

- an authenticated request: the comma-separated ids of the caller's subtree;
- code with no actor bound (workers, the scheduler, operator commands, unauthenticated pages
  that check their own tokens): `*`, every organisation;
- a raw connection with no setting at all (psql, a forgotten path): nothing.

The policies bind only a role that is neither owner nor superuser nor BYPASSRLS: the app must
connect as `vznos_app` (or a login role that is a member of it) in production.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session, sessionmaker

ORG_IDS_SETTING = "vznos.org_ids"
EVERY_ORGANIZATION = "*"


@dataclass(frozen=True)
class Actor:
    """Who acts: `kind` is `api_key`, `treasurer` or `system`; `organization_ids` is the subtree
    it may see (None: every organisation); `ip` is the client's address when known."""

    kind: str
    id: uuid.UUID | None
    organization_ids: frozenset[uuid.UUID] | None
    ip: str | None = None


SYSTEM = Actor(kind="system", id=None, organization_ids=None)

_current: ContextVar[Actor | None] = ContextVar("vznos_actor", default=None)


def current_actor() -> Actor:
    return _current.get() or SYSTEM


def bind_actor(actor: Actor) -> None:
    """Bind for the rest of the current context (a request's task and the threads it spawns)."""
    _current.set(actor)


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    token = _current.set(actor)
    try:
        yield
    finally:
        _current.reset(token)


def org_ids_setting(actor: Actor) -> str:
    if actor.organization_ids is None:
        return EVERY_ORGANIZATION
    return ",".join(sorted(str(org_id) for org_id in actor.organization_ids))


def install_row_security(sessions: sessionmaker[Session]) -> None:
    """Hand the bound actor's organisations to PostgreSQL at the start of every transaction."""

    @event.listens_for(sessions, "after_begin")
    def _scope(session: Session, transaction: Any, connection: Any) -> None:
        connection.execute(
            text("SELECT set_config(:name, :value, true)"),
            {"name": ORG_IDS_SETTING, "value": org_ids_setting(current_actor())},
        )


# The SQL side, used by the migrations. A new member-owned table adopts row-level security with
# `for statement in row_security("refunds", member_column="member_id"): op.execute(statement)`.
VISIBILITY_FUNCTIONS = [
    """
    CREATE OR REPLACE FUNCTION vznos_org_visible(org uuid) RETURNS boolean
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
        SELECT CASE coalesce(current_setting('vznos.org_ids', true), '')
            WHEN '' THEN false
            WHEN '*' THEN true
            ELSE org = ANY (string_to_array(current_setting('vznos.org_ids', true), ',')::uuid[])
        END
    $$
    """,
    # The `*` test first: background work over many rows skips the per-row lookup.
    """
    CREATE OR REPLACE FUNCTION vznos_member_visible(member uuid) RETURNS boolean
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
        SELECT current_setting('vznos.org_ids', true) = '*' OR EXISTS (
            SELECT 1 FROM members m WHERE m.id = member AND vznos_org_visible(m.organization_id)
        )
    $$
    """,
]


def row_security(
    table: str, *, organization_column: str | None = None, member_column: str | None = None
) -> list[str]:
    """SQL that turns row-level security on for a table owned by an organisation or a member."""
    if organization_column:
        check = f"vznos_org_visible({organization_column})"
    elif member_column:
        check = f"vznos_member_visible({member_column})"
    else:
        raise ValueError("name the organisation or member column")
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"CREATE POLICY {table}_by_organization ON {table} USING ({check}) WITH CHECK ({check})",
    ]
