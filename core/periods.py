"""Billing months: a month is a `date` on its first day, computed in the organisation's zone."""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "Europe/Moscow"
# ASCII digits only (`\d` would take any script's), and no year 0.
PERIOD_PATTERN = r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])$"
_PERIOD_RE = re.compile(r"^([1-9][0-9]{3})-(0[1-9]|1[0-2])$")


class InvalidPeriod(ValueError):
    pass


def parse_period(text: str) -> date:
    """ "2026-12" → date(2026, 12, 1)."""
    match = _PERIOD_RE.match(text)
    if not match:
        raise InvalidPeriod(f"period must look like 2026-12, got {text!r}")
    return date(int(match.group(1)), int(match.group(2)), 1)


def format_period(period_month: date) -> str:
    return f"{period_month.year:04d}-{period_month.month:02d}"


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def local_date(instant: datetime, timezone: str) -> date:
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    return instant.astimezone(zone(timezone)).date()


def period_of(instant: datetime, timezone: str) -> date:
    """The billing month an instant falls in, in the given zone."""
    day = local_date(instant, timezone)
    return day.replace(day=1)


def next_period(period_month: date) -> date:
    if period_month.month == 12:
        return date(period_month.year + 1, 1, 1)
    return date(period_month.year, period_month.month + 1, 1)


def billing_date(period_month: date, billing_day: int) -> date:
    """The day of a month a subscription is charged: the billing day, or the month's last day."""
    last = calendar.monthrange(period_month.year, period_month.month)[1]
    return period_month.replace(day=min(billing_day, last))


def period_start(period_month: date, timezone: str) -> datetime:
    """The instant a billing month begins in the given zone (its first day, local midnight)."""
    return datetime.combine(period_month, time.min, tzinfo=zone(timezone))
