from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from core.periods import (
    InvalidPeriod,
    billing_date,
    next_period,
    parse_period,
    period_of,
    period_start,
)


def test_a_month_is_computed_in_the_organizations_zone() -> None:
    instant = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)  # already December 1st in Moscow
    assert period_of(instant, "Europe/Moscow") == date(2026, 12, 1)
    assert period_of(instant, "Europe/London") == date(2026, 11, 1)


def test_period_arithmetic() -> None:
    assert parse_period("2026-12") == date(2026, 12, 1)
    assert next_period(date(2026, 12, 1)) == date(2027, 1, 1)
    assert billing_date(date(2027, 2, 1), 31) == date(2027, 2, 28)
    assert period_start(date(2026, 12, 1), "Europe/Moscow") == datetime(
        2026, 11, 30, 21, 0, tzinfo=UTC
    )


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-12", "2026/12", ""])
def test_bad_periods_are_refused(text: str) -> None:
    with pytest.raises(InvalidPeriod):
        parse_period(text)
