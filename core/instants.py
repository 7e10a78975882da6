"""Dates and instants at the edge are JSON Schema's `date` and `date-time` (RFC 3339) strings,
and nothing else. Pydantic's lax mode reads a number as a Unix timestamp (`0` → 1970-01-01) and
a bare date as midnight; the contract says a string of that format, so anything else is a 422
naming the field, never a quiet guess."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator

_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_DATE_TIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _date_text(value: Any) -> Any:
    # A `date` built in code (a service calling another) is already a date.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE.match(value):
        return value
    raise ValueError("must be a date string like 2026-01-15")


def _date_time_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_TIME.match(value):
        return value
    raise ValueError("must be an RFC 3339 date-time string like 2026-11-23T06:55:00Z")


# `Annotated[Day | None, Field(...)]` for a request's dates, `Instant` for its instants.
Day = Annotated[date, BeforeValidator(_date_text)]
Instant = Annotated[AwareDatetime, BeforeValidator(_date_time_text)]
