"""Idempotence keys: (shop, key) -> first request's fingerprint and answer, for 24 h.

Not thread-safe by itself: the engine calls it under its own lock, so the check, the work and the
store happen atomically and two concurrent requests with one key cannot both run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from payments.gateway.emulator.errors import invalid
from payments.gateway.emulator.listing import format_time, parse_time

KEY_LIFETIME = timedelta(hours=24)


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


@dataclass
class StoredAnswer:
    request_hash: str
    status: int
    body: dict[str, Any]
    first_used: datetime


class IdempotencyStore:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], StoredAnswer] = {}

    def forget_expired(self, now: datetime) -> None:
        stale = [k for k, v in self._entries.items() if v.first_used + KEY_LIFETIME <= now]
        for key in stale:
            del self._entries[key]

    def lookup(
        self, shop_id: str, key: str, request_hash: str, now: datetime
    ) -> StoredAnswer | None:
        """The stored answer to replay, None for a new key; a reused key with new data is a 400."""
        self.forget_expired(now)
        entry = self._entries.get((shop_id, key))
        if entry is None:
            return None
        if entry.request_hash != request_hash:
            raise invalid("Idempotence key duplicated", "Idempotence-Key")
        return entry

    def store(
        self,
        shop_id: str,
        key: str,
        request_hash: str,
        status: int,
        body: dict[str, Any],
        now: datetime,
    ) -> None:
        self._entries[(shop_id, key)] = StoredAnswer(request_hash, status, body, now)

    def clear(self) -> None:
        self._entries.clear()

    def dump(self) -> list[dict[str, Any]]:
        return [
            {
                "shop_id": shop,
                "key": key,
                "request_hash": e.request_hash,
                "status": e.status,
                "body": e.body,
                "first_used": format_time(e.first_used),
            }
            for (shop, key), e in self._entries.items()
        ]

    def load(self, rows: list[dict[str, Any]]) -> None:
        self._entries = {
            (row["shop_id"], row["key"]): StoredAnswer(
                row["request_hash"],
                int(row["status"]),
                row["body"],
                parse_time(row["first_used"], "first_used"),
            )
            for row in rows
        }
