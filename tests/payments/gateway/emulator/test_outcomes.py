"""Payment outcomes: test-card declines, scripted autopayments, expiry timers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from payments.gateway.emulator.cards import TEST_CARDS

if TYPE_CHECKING:
    from tests.payments.gateway.emulator.conftest import Harness


def _autopay(
    harness: Harness, method_id: str, key: str, value: str = "350.00"
) -> dict[str, object]:
    body = {
        "amount": {"value": value, "currency": "RUB"},
        "capture": True,
        "payment_method_id": method_id,
        "metadata": {"attempt_id": key},
    }
    response = harness.create(body, key)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


@pytest.mark.parametrize(
    ("card", "party", "reason"),
    [
        ("5555555555554600", "payment_network", "insufficient_funds"),
        ("4141435412630840", "payment_network", "card_expired"),
        ("2200000000000012", "payment_network", "3d_secure_failed"),
        ("5555555555554584", "yoo_money", "country_forbidden"),
        ("4119098878796485", "yoo_money", "fraud_suspected"),
    ],
)
def test_decline_cards_cancel_with_reason(
    harness: Harness, new_key: Callable[[], str], card: str, party: str, reason: str
) -> None:
    created = harness.create(harness.first_payment_body(), new_key()).json()
    done = harness.checkout(created["confirmation"]["confirmation_url"], card=card)
    assert done.status_code == 303
    assert done.headers["location"] == harness.return_url
    payment = harness.state.get_payment(harness.shop, created["id"])
    assert payment["status"] == "canceled"
    assert payment["paid"] is False
    assert payment["cancellation_details"] == {"party": party, "reason": reason}
    assert payment["payment_method"]["saved"] is False
    assert "confirmation" not in payment


def test_every_documented_card_is_known() -> None:
    assert len(TEST_CARDS) == 11 + 13 * 3
    assert TEST_CARDS["5555555555554477"].three_d_secure
    assert not TEST_CARDS["5555555555554444"].declines


def test_three_d_secure_card_succeeds_with_flag(
    harness: Harness, new_key: Callable[[], str]
) -> None:
    created = harness.create(harness.first_payment_body(), new_key()).json()
    harness.checkout(created["confirmation"]["confirmation_url"], card="5555555555554477")
    payment = harness.state.get_payment(harness.shop, created["id"])
    assert payment["status"] == "succeeded"
    assert payment["authorization_details"]["three_d_secure"] == {"applied": True}
    assert payment["payment_method"]["card"]["card_type"] == "MasterCard"


def test_scripted_outcomes_for_saved_method(harness: Harness, new_key: Callable[[], str]) -> None:
    method_id = harness.saved_card(new_key())
    harness.state.script_outcomes(
        method_id, ["insufficient_funds", "succeeded", "permission_revoked"]
    )
    first = _autopay(harness, method_id, new_key())
    assert first["status"] == "canceled"
    assert first["cancellation_details"] == {
        "party": "payment_network",
        "reason": "insufficient_funds",
    }
    assert _autopay(harness, method_id, new_key())["status"] == "succeeded"
    third = _autopay(harness, method_id, new_key())
    assert third["cancellation_details"] == {
        "party": "payment_network",
        "reason": "permission_revoked",
    }
    assert _autopay(harness, method_id, new_key())["status"] == "succeeded"  # script used up
    with pytest.raises(ValueError, match="unknown outcomes"):
        harness.state.script_outcomes(method_id, ["nonsense"])


def test_scripted_outcomes_over_control_api(harness: Harness, new_key: Callable[[], str]) -> None:
    method_id = harness.saved_card(new_key())
    with harness.api() as api:
        answer = api.post(
            f"/_emulator/payment_methods/{method_id}/outcomes",
            json={"outcomes": ["country_forbidden"]},
        )
        assert answer.status_code == 200
    payment = _autopay(harness, method_id, new_key())
    assert payment["cancellation_details"] == {"party": "yoo_money", "reason": "country_forbidden"}


def test_pending_then_settled(harness: Harness, new_key: Callable[[], str]) -> None:
    method_id = harness.saved_card(new_key())
    harness.state.script_outcomes(method_id, ["pending", "pending"])
    first = _autopay(harness, method_id, new_key())
    second = _autopay(harness, method_id, new_key())
    assert first["status"] == second["status"] == "pending"
    settled = harness.state.settle_payment(str(first["id"]), "succeeded")
    assert settled["status"] == "succeeded"
    with harness.api() as api:
        answer = api.post(
            f"/_emulator/payments/{second['id']}/settle", json={"outcome": "general_decline"}
        )
    assert answer.status_code == 200
    assert answer.json()["cancellation_details"]["reason"] == "general_decline"
    again = harness.state
    with pytest.raises(Exception, match="not pending"):
        again.settle_payment(str(first["id"]), "succeeded")


def test_expired_saved_card(harness: Harness, new_key: Callable[[], str]) -> None:
    # The clock starts in November 2026: a card valid through 11/2026 works until month end.
    method_id = harness.saved_card(new_key(), month="11", year="2026")
    assert _autopay(harness, method_id, new_key())["status"] == "succeeded"
    harness.clock.advance(timedelta(days=28))
    expired = _autopay(harness, method_id, new_key())
    assert expired["status"] == "canceled"
    assert expired["cancellation_details"] == {"party": "payment_network", "reason": "card_expired"}


def test_unsaved_method_is_rejected(harness: Harness, new_key: Callable[[], str]) -> None:
    created = harness.create(
        harness.first_payment_body(save_payment_method=False), new_key()
    ).json()
    harness.checkout(created["confirmation"]["confirmation_url"])
    body = {
        "amount": {"value": "350.00", "currency": "RUB"},
        "capture": True,
        "payment_method_id": created["id"],
    }
    response = harness.create(body, new_key())
    assert response.status_code == 400
    assert response.json()["parameter"] == "payment_method_id"
    assert response.json()["description"] == "Payment method is not saved"
    with harness.api(harness.other_shop, harness.other_secret) as other:
        method_id = harness.saved_card(new_key())
        foreign = other.post(
            "/v3/payments",
            headers={"Idempotence-Key": new_key()},
            json=body | {"payment_method_id": method_id},
        )
    assert foreign.json()["description"] == "Payment method is not found"


def test_pending_payment_expires_after_an_hour(
    harness: Harness, new_key: Callable[[], str]
) -> None:
    created = harness.create(harness.first_payment_body(), new_key()).json()
    harness.clock.advance(timedelta(minutes=59))
    assert harness.state.get_payment(harness.shop, created["id"])["status"] == "pending"
    harness.clock.advance(timedelta(minutes=1))
    with harness.api() as api:
        payment = api.get(f"/v3/payments/{created['id']}").json()
    assert payment["status"] == "canceled"
    assert payment["cancellation_details"] == {
        "party": "yoo_money",
        "reason": "expired_on_confirmation",
    }
    late = harness.checkout(created["confirmation"]["confirmation_url"])
    assert late.status_code == 409
    assert "Платёж уже не ожидает оплаты" in late.text


def test_hold_expires_after_seven_days(harness: Harness, new_key: Callable[[], str]) -> None:
    created = harness.create(harness.first_payment_body(capture=False), new_key()).json()
    harness.checkout(created["confirmation"]["confirmation_url"])
    harness.clock.advance(timedelta(days=7))
    payment = harness.state.get_payment(harness.shop, created["id"])
    assert payment["cancellation_details"]["reason"] == "expired_on_capture"
