"""Text at the edge: PostgreSQL cannot store NUL in text nor lone surrogates in JSON, so such
input is refused where it arrives (a 4xx naming the field), never left to fail in the database."""

from __future__ import annotations

import json
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

# The same rule for the contract: no NUL, no lone surrogate (a pair decodes to one character).
STORABLE_PATTERN = "^[^\\u0000\\ud800-\\udfff]*$"
# Stripped text must keep a non-space character: its own pattern (a JSON Schema pattern is a
# search, not a match), beside the storable one in `allOf`. Fuzzers that cannot read the
# surrogate range drop only that one and still know that blank text is invalid.
NON_BLANK_PATTERN = "\\S"


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


def storable_non_blank(value: str | None) -> str | None:
    """Stripped text must keep a non-space character. Pydantic strips only Unicode White_Space,
    while the contract's `\\s` (and Python's `str.strip`) also counts the information separators
    U+001C–U+001F as space: text made only of those is blank, as the pattern says."""
    if value is None:
        return None
    value = storable(value)
    stripped = value.strip()
    if not stripped:
        raise ValueError("must contain a non-space character")
    return stripped


def storable_json(payload: Any) -> bool:
    """Whether a decoded JSON document can be stored as PostgreSQL jsonb."""
    try:
        text = json.dumps(payload, ensure_ascii=False)
        text.encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        return False
    return "\\u0000" not in text


def _strips(schema: Any) -> bool:
    while isinstance(schema, dict):
        if schema.get("strip_whitespace") and schema.get("min_length", 0) >= 1:
            return True
        schema = schema.get("schema")
    return False


class _Storable:
    """`Annotated[str | None, STORABLE]`: refuses what `storable` refuses and says so in the
    JSON schema (a `pattern`), so the contract states the rule."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        inner = handler(source)
        check = storable_non_blank if _strips(inner) else storable_optional
        return core_schema.no_info_after_validator_function(check, inner)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        # Text stripped before its length is checked needs a non-space character to be valid.
        for target in json_schema.get("anyOf", [json_schema]):
            if target.get("type") != "string":
                continue
            if _strips(schema):
                target.setdefault("pattern", NON_BLANK_PATTERN)
                target.setdefault("allOf", [{"pattern": STORABLE_PATTERN}])
            else:
                target.setdefault("pattern", STORABLE_PATTERN)
        return json_schema


STORABLE = _Storable()
