"""Idempotence-Key: replay, conflict, 24-hour lifetime on the emulator clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.payments.gateway.emulator.conftest import Harness


def test_same_key_same_body_replays_one_payment(
    harness: Harness, new_key: Callable[[], str]
) -> None:
    key = new_key()
    first = harness.create(harness.first_payment_body(), key)
    second = harness.create(harness.first_payment_body(), key)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    oracle = harness.state.payments()
    assert len(oracle) == 1
    assert oracle[0]["idempotence_key"] == key


def test_same_key_different_body_is_rejected(harness: Harness, new_key: Callable[[], str]) -> None:
    key = new_key()
    assert harness.create(harness.first_payment_body(), key).status_code == 200
    other = harness.first_payment_body(amount={"value": "351.00", "currency": "RUB"})
    conflict = harness.create(other, key)
    assert conflict.status_code == 400
    body = conflict.json()
    assert body["type"] == "error"
    assert body["code"] == "invalid_request"
    assert body["parameter"] == "Idempotence-Key"
    assert body["description"] == "Idempotence key duplicated"
    assert len(harness.state.payments()) == 1


def test_key_is_forgotten_after_24_hours(harness: Harness, new_key: Callable[[], str]) -> None:
    key = new_key()
    body = harness.first_payment_body()
    first = harness.create(body, key).json()
    harness.clock.advance(timedelta(hours=23, minutes=59))
    assert harness.create(body, key).json()["id"] == first["id"]
    harness.clock.advance(timedelta(minutes=2))
    again = harness.create(body, key)
    assert again.status_code == 200
    assert again.json()["id"] != first["id"]
    assert len(harness.state.payments()) == 2


def test_keys_are_per_shop(harness: Harness, new_key: Callable[[], str]) -> None:
    key = new_key()
    assert harness.create(harness.first_payment_body(), key).status_code == 200
    with harness.api(harness.other_shop, harness.other_secret) as other:
        answer = other.post(
            "/v3/payments", json=harness.first_payment_body(), headers={"Idempotence-Key": key}
        )
    assert answer.status_code == 200
    assert len(harness.state.payments(harness.other_shop)) == 1


def test_missing_or_long_key(harness: Harness) -> None:
    missing = harness.create(harness.first_payment_body(), None)  # type: ignore[arg-type]
    assert missing.status_code == 400
    assert missing.json()["parameter"] == "Idempotence-Key"
    long = harness.create(harness.first_payment_body(), "k" * 65)
    assert long.status_code == 400
    assert long.json()["parameter"] == "Idempotence-Key"
    assert harness.create(harness.first_payment_body(), "k" * 64).status_code == 200


def test_capture_replay_with_same_key(harness: Harness, new_key: Callable[[], str]) -> None:
    created = harness.create(harness.first_payment_body(capture=False), new_key()).json()
    harness.checkout(created["confirmation"]["confirmation_url"])
    key = new_key()
    path = f"/v3/payments/{created['id']}/capture"
    with harness.api() as api:
        first = api.post(path, headers={"Idempotence-Key": key, "Content-Type": "application/json"})
        second = api.post(
            path, headers={"Idempotence-Key": key, "Content-Type": "application/json"}
        )
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["status"] == "succeeded"
