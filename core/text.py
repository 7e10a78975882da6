"""Text at the edge: PostgreSQL cannot store NUL in text nor lone surrogates in JSON, so such
input is refused where it arrives (a 4xx naming the field), never left to fail in the database."""

from __future__ import annotations

import json
from typing import Any


def storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


def storable_optional(value: str | None) -> str | None:
    return storable(value) if value is not None else None


def storable_json(payload: Any) -> bool:
    """Whether a decoded JSON document can be stored as PostgreSQL jsonb."""
    try:
        text = json.dumps(payload, ensure_ascii=False)
        text.encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        return False
    return "\\u0000" not in text
