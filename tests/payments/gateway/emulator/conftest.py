"""Fixtures: one emulator per test module on a loopback port, a manual clock, a webhook receiver."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from core.clock import ManualClock
from payments.gateway.emulator import EmulatorServer, EmulatorState, Notifier
from payments.gateway.emulator.testing import WebhookReceiver, complete_checkout

START = datetime(2026, 11, 3, 11, 52, 31, 827000, tzinfo=UTC)


@dataclass
class Harness:
    state: EmulatorState
    server: EmulatorServer
    clock: ManualClock
    shop: str = "100500"
    secret: str = "test_secret_key_emulator"
    other_shop: str = "200600"
    other_secret: str = "test_other_secret"
    return_url: str = "https://dues.example/return?attempt=1"
    start: datetime = START

    def api(self, shop: str | None = None, secret: str | None = None) -> httpx.Client:
        auth = (shop or self.shop, secret or self.secret)
        return httpx.Client(base_url=self.server.url, auth=auth, timeout=10)

    def first_payment_body(self, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "amount": {"value": "350.00", "currency": "RUB"},
            "capture": True,
            "save_payment_method": True,
            "payment_method_data": {"type": "bank_card"},
            "confirmation": {"type": "redirect", "return_url": self.return_url},
            "description": "Членский взнос",
            "metadata": {"attempt_id": "a-1"},
        }
        body.update(overrides)
        return body

    def post(self, path: str, body: Any, key: str | None) -> httpx.Response:
        headers = {"Idempotence-Key": key} if key is not None else {}
        with self.api() as client:
            return client.post(path, json=body, headers=headers)

    def create(self, body: dict[str, Any], key: str) -> httpx.Response:
        return self.post("/v3/payments", body, key)

    def checkout(
        self,
        confirmation_url: str,
        card: str = "5555 5555 5555 4444",
        month: str = "12",
        year: str = "2030",
        csc: str = "123",
    ) -> httpx.Response:
        return complete_checkout(confirmation_url, card, month, year, csc)

    def saved_card(
        self, key: str, card: str = "5555555555554444", month: str = "12", year: str = "2030"
    ) -> str:
        """A first payment paid at checkout; returns the saved payment method id."""
        created = self.create(self.first_payment_body(), key)
        assert created.status_code == 200, created.text
        done = self.checkout(created.json()["confirmation"]["confirmation_url"], card, month, year)
        assert done.status_code == 303, done.text
        payment = self.state.get_payment(self.shop, created.json()["id"])
        assert payment["payment_method"]["saved"] is True
        return str(payment["payment_method"]["id"])


@pytest.fixture(scope="module")
def harness_module() -> Iterator[Harness]:
    clock = ManualClock(START)
    state = EmulatorState(
        {Harness.shop: Harness.secret, Harness.other_shop: Harness.other_secret},
        clock=clock,
        notifier=Notifier(backoff=(0.05, 0.1, 0.2)),
    )
    server = EmulatorServer(state).start()
    try:
        yield Harness(state, server, clock)
    finally:
        server.stop()
        state.close()


@pytest.fixture
def harness(harness_module: Harness) -> Iterator[Harness]:
    harness_module.state.reset()
    harness_module.clock.set(START)
    yield harness_module
    for shop in (harness_module.shop, harness_module.other_shop):
        harness_module.state.set_notification_url(shop, None)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as rec:
        yield rec


@pytest.fixture
def new_key() -> Callable[[], str]:
    return lambda: str(uuid.uuid4())
