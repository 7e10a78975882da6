"""Cursor-paginated lists (yookassa-detail.md §11): newest first, opaque `next_cursor`."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from payments.gateway.emulator.errors import invalid

LIMIT_DEFAULT = 10
LIMIT_MAX = 100
_OPS: dict[str, Callable[[datetime, datetime], bool]] = {
    "gte": lambda a, b: a >= b,
    "gt": lambda a, b: a > b,
    "lte": lambda a, b: a <= b,
    "lt": lambda a, b: a < b,
}


def format_time(instant: datetime) -> str:
    """ISO 8601 UTC with milliseconds and `Z`, exactly as YooKassa writes it."""
    utc = instant.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(value: str, parameter: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid("Invalid date-time: use ISO 8601", parameter) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class ListQuery:
    limit: int
    after: tuple[str, int] | None  # (created_at, seq) of the last item already returned
    time_filters: list[tuple[str, str, datetime]]  # (field, op, instant)
    equals: dict[str, str]


def parse_query(
    query: Mapping[str, str], time_fields: Iterable[str], equal_fields: Iterable[str]
) -> ListQuery:
    raw_limit = query.get("limit")
    limit = LIMIT_DEFAULT
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= LIMIT_MAX:
            raise invalid(f"limit must be from 1 to {LIMIT_MAX}", "limit")
        limit = int(raw_limit)
    after = _decode_cursor(query["cursor"]) if query.get("cursor") else None
    filters: list[tuple[str, str, datetime]] = []
    for field in time_fields:
        for op in _OPS:
            name = f"{field}.{op}"
            if name in query:
                filters.append((field, op, parse_time(query[name], name)))
    equals = {name: query[name] for name in equal_fields if query.get(name)}
    return ListQuery(limit, after, filters, equals)


def _encode_cursor(created_at: str, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{created_at}|{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, seq = base64.urlsafe_b64decode(padded).decode().split("|")
        return created_at, int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid("Invalid cursor", "cursor") from None


def page(
    records: Iterable[tuple[int, dict[str, Any]]],
    query: ListQuery,
    equal_getters: Mapping[str, Callable[[dict[str, Any]], Any]],
) -> dict[str, Any]:
    """`records` are (seq, public object); answers the YooKassa list object."""

    def keep(obj: dict[str, Any]) -> bool:
        for field, op, instant in query.time_filters:
            raw = obj.get(field)
            if raw is None or not _OPS[op](parse_time(raw, field), instant):
                return False
        return all(equal_getters[name](obj) == want for name, want in query.equals.items())

    # The timestamps share one fixed-width format, so string order is time order.
    ordered = sorted(
        ((obj["created_at"], seq, obj) for seq, obj in records if keep(obj)),
        key=lambda item: (item[0], item[1]),
        reverse=True,
    )
    if query.after is not None:
        ordered = [item for item in ordered if (item[0], item[1]) < query.after]
    chosen = ordered[: query.limit]
    result: dict[str, Any] = {"type": "list", "items": [obj for _, _, obj in chosen]}
    if len(ordered) > query.limit:
        last = chosen[-1]
        result["next_cursor"] = _encode_cursor(last[0], last[1])
    return result
