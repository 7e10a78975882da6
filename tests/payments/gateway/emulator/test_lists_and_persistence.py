"""Cursor lists with filters, and the optional state file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from core.clock import ManualClock
from payments.gateway.emulator import EmulatorState

if TYPE_CHECKING:
    from tests.payments.gateway.emulator.conftest import Harness


def test_pagination_is_newest_first_and_keeps_filters(
    harness: Harness, new_key: Callable[[], str]
) -> None:
    ids = []
    for _ in range(5):
        ids.append(harness.create(harness.first_payment_body(), new_key()).json()["id"])
        harness.clock.advance(timedelta(seconds=1))
    seen: list[str] = []
    params: dict[str, str] = {"limit": "2", "status": "pending"}
    with harness.api() as api:
        while True:
            page = api.get("/v3/payments", params=params).json()
            assert page["type"] == "list"
            seen += [item["id"] for item in page["items"]]
            if "next_cursor" not in page:
                break
            params["cursor"] = page["next_cursor"]
        assert seen == list(reversed(ids))
        since = (harness.start + timedelta(seconds=3)).isoformat().replace("+00:00", "Z")
        recent = api.get("/v3/payments", params={"created_at.gte": since}).json()
        assert [item["id"] for item in recent["items"]] == list(reversed(ids[3:]))
        assert api.get("/v3/payments", params={"status": "succeeded"}).json()["items"] == []
        default = api.get("/v3/payments").json()
        assert len(default["items"]) == 5
        assert "next_cursor" not in default


def test_oracle_over_control_api(harness: Harness, new_key: Callable[[], str]) -> None:
    key = new_key()
    created = harness.create(harness.first_payment_body(), key).json()
    with harness.api() as api:
        items = api.get("/_emulator/payments", params={"shop_id": harness.shop}).json()["items"]
    assert [(i["id"], i["idempotence_key"], i["status"]) for i in items] == [
        (created["id"], key, "pending")
    ]
    assert items[0]["amount"] == {"value": "350.00", "currency": "RUB"}
    assert items[0]["metadata"] == {"attempt_id": "a-1"}


def test_state_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    clock = ManualClock()
    state = EmulatorState({"1": "s"}, clock=clock, base_url="http://emu", state_file=path)
    body = {
        "amount": {"value": "10.00", "currency": "RUB"},
        "capture": True,
        "save_payment_method": True,
        "payment_method_data": {"type": "bank_card"},
        "confirmation": {"type": "redirect", "return_url": "https://r"},
    }
    status, created = state.idempotent(
        "1", "k1", "POST", "/v3/payments", body, lambda: state.create_payment("1", body, "k1")
    )
    assert status == 200
    assert state.checkout_payment(created["id"], "5555555555554444", "12", "2030", "123") == (
        "https://r"
    )
    state.script_outcomes(created["id"], ["insufficient_funds"])
    state.set_notification_url("1", "http://hook")
    assert path.exists()
    assert not list(tmp_path.glob(".emulator.json.*"))  # no temp files left behind

    reloaded = EmulatorState({"1": "s"}, clock=clock, state_file=path)
    assert reloaded.payments() == state.payments()
    _, replayed = reloaded.idempotent(
        "1", "k1", "POST", "/v3/payments", body, lambda: {"unexpected": True}
    )
    assert replayed["id"] == created["id"]
    auto = reloaded.create_payment(
        "1",
        {
            "amount": {"value": "10.00", "currency": "RUB"},
            "capture": True,
            "payment_method_id": created["id"],
        },
    )
    assert auto["cancellation_details"]["reason"] == "insufficient_funds"
    assert "5555555555554444" not in path.read_text()
    state.close()
    reloaded.close()
