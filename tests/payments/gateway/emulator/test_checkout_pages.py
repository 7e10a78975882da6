"""The member-facing checkout pages: real forms, clear errors, never a 500."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.payments.gateway.emulator.conftest import Harness


def test_form_shows_shop_amount_and_labelled_fields(
    harness: Harness, new_key: Callable[[], str]
) -> None:
    created = harness.create(harness.first_payment_body(), new_key()).json()
    page = httpx.get(created["confirmation"]["confirmation_url"])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "Номер карты / Card number" in html
    assert "350,00 ₽" in html
    assert "Членский взнос" in html
    assert harness.shop in html
    for name in ("card_number", "expiry_month", "expiry_year", "csc"):
        assert f'<label for="{name}"' in html
        assert f'name="{name}"' in html
    assert "5555 5555 5555 4444" in html
    assert '<meta name="viewport"' in html


@pytest.mark.parametrize(
    ("card", "month", "year", "csc", "message"),
    [
        ("1234 5678 9012 3456", "12", "2030", "123", "Invalid card number"),
        ("abc", "12", "2030", "123", "Invalid card number"),
        ("4242 4242 4242 4242", "12", "2030", "123", "Not a test card"),
        ("5555 5555 5555 4444", "10", "2026", "123", "The card has expired"),
        ("5555 5555 5555 4444", "13", "2030", "123", "Invalid expiry month"),
        ("5555 5555 5555 4444", "12", "20", "123", "The card has expired"),
        ("5555 5555 5555 4444", "12", "2030", "12a", "Invalid security code"),
        ("5555 5555 5555 4444", "12", "30", "1", "Invalid security code"),
        ("", "", "", "", "Invalid card number"),
    ],
)
def test_bad_input_reshows_the_form(
    harness: Harness,
    new_key: Callable[[], str],
    card: str,
    month: str,
    year: str,
    csc: str,
    message: str,
) -> None:
    created = harness.create(harness.first_payment_body(), new_key()).json()
    answer = harness.checkout(created["confirmation"]["confirmation_url"], card, month, year, csc)
    assert answer.status_code == 400
    assert message in answer.text
    assert 'name="card_number"' in answer.text
    assert harness.state.get_payment(harness.shop, created["id"])["status"] == "pending"


def test_card_number_is_not_echoed(harness: Harness, new_key: Callable[[], str]) -> None:
    created = harness.create(harness.first_payment_body(), new_key()).json()
    answer = harness.checkout(
        created["confirmation"]["confirmation_url"], "5555555555554444", "12", "2030", "1"
    )
    assert answer.status_code == 400
    assert "5555555555554444" not in answer.text


def test_paid_payment_cannot_be_paid_again(harness: Harness, new_key: Callable[[], str]) -> None:
    created = harness.create(harness.first_payment_body(), new_key()).json()
    url = created["confirmation"]["confirmation_url"]
    assert harness.checkout(url).status_code == 303
    again = harness.checkout(url)
    assert again.status_code == 409
    assert "no longer awaiting payment" in again.text
    shown = httpx.get(url)
    assert shown.status_code == 200
    assert "Готово / Done" in shown.text
    assert len(harness.state.payments()) == 1


def test_unknown_payment_page(harness: Harness) -> None:
    missing = httpx.get(f"{harness.server.url}/checkout/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert "Payment not found" in missing.text
    posted = harness.checkout(f"{harness.server.url}/checkout/{uuid.uuid4()}")
    assert posted.status_code == 404


def test_binding_page(harness: Harness, new_key: Callable[[], str]) -> None:
    method = harness.post(
        "/v3/payment_methods",
        {
            "type": "bank_card",
            "confirmation": {"type": "redirect", "return_url": harness.return_url},
        },
        new_key(),
    ).json()
    url = method["confirmation"]["confirmation_url"]
    assert url == f"{harness.server.url}/checkout/payment-methods/{method['id']}"
    page = httpx.get(url)
    assert page.status_code == 200
    assert "Привязка карты / Save a card" in page.text
    declined = harness.checkout(url, card="5555555555554600")
    assert declined.status_code == 303
    found = harness.state.get_payment_method(harness.shop, method["id"])
    assert found["status"] == "inactive"
    assert found["saved"] is False
