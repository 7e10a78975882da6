"""The fault seam: errors before/after processing and delays."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from payments.gateway.emulator import Fault

if TYPE_CHECKING:
    from tests.payments.gateway.emulator.conftest import Harness


def test_error_before_creates_nothing(harness: Harness, new_key: Callable[[], str]) -> None:
    harness.state.inject_fault(Fault("POST", "/v3/payments", "error_before"))
    key = new_key()
    failed = harness.create(harness.first_payment_body(), key)
    assert failed.status_code == 500
    assert failed.json()["type"] == "error"
    assert failed.json()["code"] == "internal_server_error"
    assert harness.state.payments() == []
    retried = harness.create(harness.first_payment_body(), key)
    assert retried.status_code == 200
    assert len(harness.state.payments()) == 1


def test_error_after_keeps_the_payment_and_replays(
    harness: Harness, new_key: Callable[[], str]
) -> None:
    harness.state.inject_fault(Fault("POST", "/v3/payments", "error_after"))
    key = new_key()
    failed = harness.create(harness.first_payment_body(), key)
    assert failed.status_code == 500
    oracle = harness.state.payments()
    assert len(oracle) == 1
    retried = harness.create(harness.first_payment_body(), key)
    assert retried.status_code == 200
    assert retried.json()["id"] == oracle[0]["id"]
    assert len(harness.state.payments()) == 1


def test_fault_counts_and_matching(harness: Harness, new_key: Callable[[], str]) -> None:
    harness.state.inject_fault(Fault("POST", "/v3/refunds", "error_before", times=2, status=429))
    assert harness.create(harness.first_payment_body(), new_key()).status_code == 200
    body = {"payment_id": "x" * 36, "amount": {"value": "1.00", "currency": "RUB"}}
    statuses = [harness.post("/v3/refunds", body, new_key()).status_code for _ in range(3)]
    assert statuses == [429, 429, 404]


def test_delay(harness: Harness) -> None:
    harness.state.inject_fault(Fault("GET", "/v3/me", "delay", seconds=0.3))
    with harness.api() as api:
        started = time.monotonic()
        assert api.get("/v3/me").status_code == 200
        assert time.monotonic() - started >= 0.3
        started = time.monotonic()
        api.get("/v3/me")
        assert time.monotonic() - started < 0.3


def test_faults_over_control_api(harness: Harness, new_key: Callable[[], str]) -> None:
    with harness.api() as api:
        answer = api.post(
            "/_emulator/faults",
            json={"method": "POST", "path_prefix": "/v3/payments", "kind": "error_after"},
        )
        assert answer.status_code == 200
        assert (
            api.post(
                "/_emulator/faults",
                json={"method": "POST", "path_prefix": "/v3", "kind": "explode"},
            ).status_code
            == 400
        )
    assert harness.create(harness.first_payment_body(), new_key()).status_code == 500
    assert len(harness.state.payments()) == 1


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("POST", "/v3", "explode")  # type: ignore[arg-type]
