from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from core.money import InvalidAmount, MoneyIn, allocate, format_kopecks, parse_kopecks


@pytest.mark.parametrize(
    ("text", "kopecks"),
    [("350.00", 35000), ("350", 35000), ("350.5", 35050), ("0.01", 1), ("1000000.99", 100000099)],
)
def test_parse_kopecks(text: str, kopecks: int) -> None:
    assert parse_kopecks(text) == kopecks


@pytest.mark.parametrize(
    "text", ["-1.00", "0.00", "0", "1e3", "350.505", "abc", "", " 350.00", "350,00", "+5", "01.00"]
)
def test_parse_kopecks_refuses(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_kopecks(text)


def test_money_in_refuses_numbers_and_other_currencies() -> None:
    with pytest.raises(ValidationError):
        MoneyIn.model_validate({"value": 350, "currency": "RUB"})
    with pytest.raises(ValidationError):
        MoneyIn.model_validate({"value": "350.00", "currency": "USD"})
    assert MoneyIn.model_validate({"value": "350.00", "currency": "RUB"}).kopecks == 35000


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_format_then_parse_round_trips(kopecks: int) -> None:
    text = format_kopecks(kopecks)
    if kopecks > 0:
        assert parse_kopecks(text) == kopecks
    assert text.count(".") == 1 and len(text.split(".")[1]) == 2


@given(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=8).filter(any),
)
def test_allocate_parts_sum_to_the_whole(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    assert len(parts) == len(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = abs(total) * weight / sum(weights)
        assert abs(abs(part) - exact) < 1
    assert allocate(total, weights) == parts  # deterministic


def test_allocate_puts_remainders_deterministically() -> None:
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(-100, [1, 1, 1]) == [-34, -33, -33]
    assert allocate(1000, [60, 25, 10, 5]) == [600, 250, 100, 50]
    assert allocate(1, [60, 25, 10, 5]) == [1, 0, 0, 0]
