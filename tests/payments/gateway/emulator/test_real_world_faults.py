"""The faults the engine must survive, reproduced on demand: dropped replies, 429 with a
Retry-After header, 202 with a retry hint, slow replies, duplicate, delayed and reordered
notifications, the 3-D Secure step, and every documented decline reason."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

from payments.gateway.emulator import Fault
from payments.gateway.emulator.cards import DECLINE_REASONS, TEST_CARDS
from payments.gateway.emulator.notifier import NotificationFault
from payments.gateway.emulator.testing import WebhookReceiver, complete_checkout

if TYPE_CHECKING:
    from tests.payments.gateway.emulator.conftest import Harness

# yookassa.md "Decline reasons": every reason a payment can be canceled with.
DOCUMENTED_REASONS = {
    "3d_secure_failed", "call_issuer", "canceled_by_merchant", "card_expired",
    "country_forbidden", "deal_expired", "expired_on_capture", "expired_on_confirmation",
    "fraud_suspected", "general_decline", "identification_required", "insufficient_funds",
    "internal_timeout", "invalid_card_number", "invalid_csc", "issuer_unavailable",
    "payment_method_limit_exceeded", "payment_method_restricted", "permission_revoked",
    "unsupported_mobile_operator",
}  # fmt: skip


def test_drop_after_processing_closes_the_connection_without_a_response(
    harness: Harness, new_key: Callable[[], str]
) -> None:
    harness.state.inject_fault(Fault("POST", "/v3/payments", "drop_after"))
    key = new_key()
    with pytest.raises(httpx.RemoteProtocolError):
        harness.create(harness.first_payment_body(), key)
    [made] = harness.state.payments()
    assert made["idempotence_key"] == key
    replayed = harness.create(harness.first_payment_body(), key)
    assert replayed.status_code == 200
    assert replayed.json()["id"] == made["id"]
    assert len(harness.state.payments()) == 1


def test_reset_mid_body_sends_half_a_reply_then_cuts_the_connection(
    harness: Harness, new_key: Callable[[], str]
) -> None:
    harness.state.inject_fault(Fault("POST", "/v3/payments", "reset_mid_body"))
    key = new_key()
    # The status line and headers arrived; the body never completes.
    with pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|body|closed"):
        harness.create(harness.first_payment_body(), key)
    [made] = harness.state.payments()
    replayed = harness.create(harness.first_payment_body(), key)
    assert replayed.status_code == 200
    assert replayed.json()["id"] == made["id"]
    assert len(harness.state.payments()) == 1


def test_drop_before_processing_creates_nothing(
    harness: Harness, new_key: Callable[[], str]
) -> None:
    harness.state.inject_fault(Fault("POST", "/v3/payments", "drop_before"))
    with pytest.raises(httpx.RemoteProtocolError):
        harness.create(harness.first_payment_body(), new_key())
    assert harness.state.payments() == []


def test_429_carries_a_retry_after_header(harness: Harness, new_key: Callable[[], str]) -> None:
    harness.state.inject_fault(
        Fault("POST", "/v3/payments", "error_before", status=429, retry_after_seconds=7)
    )
    answer = harness.create(harness.first_payment_body(), new_key())
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "7"
    assert answer.json()["code"] == "too_many_requests"
    assert harness.state.payments() == []


def test_202_carries_retry_after_in_the_body(harness: Harness, new_key: Callable[[], str]) -> None:
    harness.state.inject_fault(
        Fault("POST", "/v3/payments", "error_before", status=202, retry_after_ms=2500)
    )
    key = new_key()
    answer = harness.create(harness.first_payment_body(), key)
    assert answer.status_code == 202
    assert answer.json() == {
        "type": "processing",
        "description": answer.json()["description"],
        "retry_after": 2500,
    }
    assert harness.create(harness.first_payment_body(), key).status_code == 200


def test_slow_reply_past_the_client_timeout_still_charges(
    harness: Harness, new_key: Callable[[], str]
) -> None:
    harness.state.inject_fault(Fault("POST", "/v3/payments", "delay_after", seconds=0.6))
    key = new_key()
    with (
        httpx.Client(base_url=harness.server.url, auth=(harness.shop, harness.secret)) as api,
        pytest.raises(httpx.ReadTimeout),
    ):
        api.post(
            "/v3/payments",
            json=harness.first_payment_body(),
            headers={"Idempotence-Key": key},
            timeout=httpx.Timeout(0.2),
        )
    [made] = harness.state.payments()
    assert made["idempotence_key"] == key


def test_the_request_journal_records_keys_at_emulated_time(
    harness: Harness, new_key: Callable[[], str]
) -> None:
    key = new_key()
    harness.create(harness.first_payment_body(), key)
    harness.clock.advance(timedelta(hours=5))
    harness.state.inject_fault(Fault("POST", "/v3/payments", "error_after"))
    harness.create(harness.first_payment_body(), key)
    with harness.api() as api:
        items = api.get("/_emulator/requests").json()["items"]
    assert [(r["method"], r["idempotence_key"], r["fault"]) for r in items] == [
        ("POST", key, None),
        ("POST", key, "error_after"),
    ]
    assert items[1]["at"] == (harness.start + timedelta(hours=5)).isoformat()


def test_a_key_replayed_after_24_hours_makes_a_new_payment(
    harness: Harness, new_key: Callable[[], str]
) -> None:
    # As at the real YooKassa: an expired key no longer protects, the replay charges again.
    key = new_key()
    first = harness.create(harness.first_payment_body(), key).json()
    harness.clock.advance(timedelta(hours=24, seconds=1))
    second = harness.create(harness.first_payment_body(), key).json()
    assert second["id"] != first["id"]
    assert len(harness.state.payments()) == 2


def _paid_payment(harness: Harness, new_key: Callable[[], str], card: str) -> str:
    created = harness.create(harness.first_payment_body(), new_key()).json()
    harness.checkout(created["confirmation"]["confirmation_url"], card=card)
    return str(created["id"])


def test_duplicate_and_delayed_notifications(
    harness: Harness, receiver: WebhookReceiver, new_key: Callable[[], str]
) -> None:
    harness.state.set_notification_url(harness.shop, receiver.url)
    harness.state.script_notifications(NotificationFault("duplicate", copies=3))
    first = _paid_payment(harness, new_key, "5555555555554444")
    harness.state.flush_notifications()
    assert [n["object"]["id"] for n in receiver.notifications()] == [first] * 3

    harness.state.script_notifications(NotificationFault("delay", seconds=0.4))
    started = time.monotonic()
    _paid_payment(harness, new_key, "5555555555554444")
    harness.state.flush_notifications()
    assert time.monotonic() - started >= 0.4
    assert len(receiver.notifications()) == 4


def test_reordered_and_dropped_notifications(
    harness: Harness, receiver: WebhookReceiver, new_key: Callable[[], str]
) -> None:
    harness.state.set_notification_url(harness.shop, receiver.url)
    with harness.api() as api:
        answer = api.post("/_emulator/notification-faults", json={"kind": "reorder", "times": 3})
        assert answer.status_code == 200
        assert api.post("/_emulator/notification-faults", json={"kind": "x"}).status_code == 400
    made = [_paid_payment(harness, new_key, "5555555555554444") for _ in range(3)]
    harness.state.flush_notifications()
    assert [n["object"]["id"] for n in receiver.notifications()] == made[::-1]

    harness.state.script_notifications(NotificationFault("drop", event="payment.canceled"))
    _paid_payment(harness, new_key, "5555555555554600")
    harness.state.flush_notifications()
    assert len(receiver.notifications()) == 3
    assert harness.state.notifier.dropped == 1


def test_three_d_secure_step_is_off_by_default_and_scripted_on(
    harness: Harness, new_key: Callable[[], str]
) -> None:
    with harness.api() as api:
        assert api.post("/_emulator/options", json={"three_ds_step": True}).json() == {
            "three_ds_step": True,
            "latency_ms": [0, 0],
        }
    created = harness.create(harness.first_payment_body(), new_key()).json()
    url = created["confirmation"]["confirmation_url"]
    form = {"card_number": "5555555555554477", "expiry_month": "12", "expiry_year": "2030"}
    page = httpx.post(url, data=form | {"csc": "123"})
    assert page.status_code == 200
    assert "3-D Secure" in page.text
    assert harness.state.get_payment(harness.shop, created["id"])["status"] == "pending"
    # The card form cannot be posted again while the bank waits for the code.
    assert httpx.post(url, data=form | {"csc": "123"}).status_code == 409
    done = httpx.post(url + "/3ds", data={"three_ds_code": "1", "action": "confirm"})
    assert done.status_code == 303
    paid = harness.state.get_payment(harness.shop, created["id"])
    assert paid["status"] == "succeeded"
    assert paid["authorization_details"]["three_d_secure"] == {"applied": True}

    # A card without 3-D Secure skips the step.
    assert (
        harness.state.get_payment(
            harness.shop, _paid_payment(harness, new_key, "5555555555554444")
        )["status"]
        == "succeeded"
    )


@pytest.mark.parametrize(
    ("card", "answer"),
    [("5555555555554477", "cancel"), ("5555555555554592", "confirm")],
)
def test_three_d_secure_failure(
    harness: Harness, new_key: Callable[[], str], card: str, answer: str
) -> None:
    harness.state.set_options(three_ds_step=True)
    created = harness.create(harness.first_payment_body(), new_key()).json()
    done = complete_checkout(created["confirmation"]["confirmation_url"], card, three_ds=answer)
    assert done.status_code == 303
    payment = harness.state.get_payment(harness.shop, created["id"])
    assert payment["cancellation_details"] == {
        "party": "payment_network",
        "reason": "3d_secure_failed",
    }


def test_every_documented_decline_reason_is_reachable(
    harness: Harness, new_key: Callable[[], str]
) -> None:
    by_card = {c.decline_reason for c in TEST_CARDS.values() if c.declines}
    assert DOCUMENTED_REASONS <= DECLINE_REASONS
    assert by_card <= DECLINE_REASONS
    method_id = harness.saved_card(new_key())
    reasons = sorted(DOCUMENTED_REASONS)
    harness.state.script_outcomes(method_id, reasons)
    seen = []
    for _ in reasons:
        body = {
            "amount": {"value": "350.00", "currency": "RUB"},
            "capture": True,
            "payment_method_id": method_id,
        }
        payment = harness.create(body, new_key()).json()
        assert payment["status"] == "canceled"
        seen.append(payment["cancellation_details"]["reason"])
    assert seen == reasons


def test_latency_delays_every_answer(harness: Harness) -> None:
    with harness.api() as api:
        answer = api.post("/_emulator/options", json={"latency_ms": [300, 300]})
        assert answer.json()["latency_ms"] == [300.0, 300.0]
        started = time.monotonic()
        assert api.get("/v3/me").status_code == 200
        assert time.monotonic() - started >= 0.3
        api.post("/_emulator/options", json={"latency_ms": [0, 0]})
    assert harness.state.latency_seconds is None


def test_saved_cards_in_bulk(harness: Harness, new_key: Callable[[], str]) -> None:
    with harness.api() as api:
        seeded = api.post("/_emulator/saved-cards", json={"shop_id": harness.shop, "ids": ["c-1"]})
    assert seeded.json() == {"seeded": 1}
    body = {"amount": {"value": "1.00", "currency": "RUB"}, "capture": True,
            "payment_method_id": "c-1"}  # fmt: skip
    assert harness.create(body, new_key()).json()["status"] == "succeeded"
