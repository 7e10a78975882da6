"""Schemathesis hooks for tests/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

import schemathesis

from core.idempotency import HEADER, KEY_PATTERN

_VALID_KEY = re.compile(KEY_PATTERN)
# The fuzzer's own API key, and a spare one of the same organisation (set by the test).
_OWN_KEY_ID = os.environ.get("VZNOS_ST_OWN_KEY_ID", "")
_SPARE_KEY_ID = os.environ.get("VZNOS_ST_SPARE_KEY_ID", "")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """A CRM uses a new Idempotency-Key per intended operation; the schema cannot say "unique",
    so generated valid keys (often the same minimal string) are made unique here. Invalid
    keys are left alone: they are the negative tests of the header."""
    # Revoking or rotating (grace 0 expires at once) its own credential would turn the rest of
    # the run into 401s and prove nothing; such a call goes to the spare key instead, which
    # exercises the same code.
    path_parameters = case.path_parameters or {}
    if _OWN_KEY_ID and path_parameters.get("key_id") == _OWN_KEY_ID:
        path_parameters["key_id"] = _SPARE_KEY_ID
    headers = case.headers or {}
    key = headers.get(HEADER)
    if isinstance(key, str) and _VALID_KEY.match(key):
        headers[HEADER] = f"st-{uuid.uuid4()}"
        case.headers = headers


@schemathesis.check
def schema_states_every_field_rule(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schema-valid data may be refused only by a domain rule (its own problem type: an
    organisation that is not a higher level, a URL that resolves to a private address) or by a
    rule joining several fields (`field: body`). A 422 `invalid-input` on one field means the
    schema hides a rule of that field: a contract bug. (The built-in positive_data_acceptance
    check is told that 422 is expected; this check is the stricter half of it.)"""
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    try:
        problem = response.json()
    except ValueError:
        return None
    if problem.get("type", "").endswith("/invalid-input") and problem.get("field") != "body":
        raise AssertionError(
            f"schema-valid data refused by a rule the schema does not state: {problem}"
        )
    return None
