"""One way to page through lists: newest first, `limit` ≤ 100, `starting_after=<last id>`,
optional `created_from` (inclusive) / `created_to` (exclusive); answers `{data, has_more}`.

Endpoints declare the query parameters with these types; repositories page with `after` and
`take_page` on a (created_at, id) keyset, which stays stable while rows are inserted.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Query
from sqlalchemy import tuple_

from core.instants import Instant

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20

T = TypeVar("T")
# Any SQLAlchemy Select (its row types are a variadic generic; the helpers keep them).
Q = TypeVar("Q")

Limit = Annotated[
    int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Items per page, 1–{MAX_PAGE_SIZE}")
]
StartingAfter = Annotated[
    uuid.UUID | None,
    Query(description="The last id of the previous page; the next page follows it"),
]
CreatedFrom = Annotated[
    Instant | None, Query(description="Only items created at or after it (inclusive)")
]
CreatedTo = Annotated[Instant | None, Query(description="Only items created before it (exclusive)")]


def after(query: Q, created_at: Any, id_: Any, cursor: tuple[datetime, uuid.UUID] | None) -> Q:
    """Newest first, continuing after the cursor row's (created_at, id); one row more than
    the page so that `take_page` knows whether there is a next one."""
    select: Any = query
    if cursor is not None:
        select = select.where(tuple_(created_at, id_) < tuple_(*cursor))
    result: Q = select.order_by(created_at.desc(), id_.desc())
    return result


def in_window(
    query: Q, created_at: Any, created_from: datetime | None, created_to: datetime | None
) -> Q:
    select: Any = query
    if created_from is not None:
        select = select.where(created_at >= created_from)
    if created_to is not None:
        select = select.where(created_at < created_to)
    result: Q = select
    return result


def take_page(rows: Sequence[T], limit: int) -> tuple[list[T], bool]:
    """The page and whether more follow, from a query limited to `limit + 1` rows."""
    return list(rows[:limit]), len(rows) > limit
