"""Auth, request validation and error bodies in YooKassa's shape."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from tests.payments.gateway.emulator.conftest import Harness


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["type"] == "error"
    assert body["code"] == code
    assert len(body["id"]) == 36
    assert body["description"]
    return body


@pytest.mark.parametrize("auth", [None, ("100500", "wrong"), ("nobody", "x")])
def test_bad_credentials_are_401(harness: Harness, auth: tuple[str, str] | None) -> None:
    response = httpx.get(f"{harness.server.api_url}/payments", auth=auth)
    _assert_error(response, 401, "invalid_credentials")


@pytest.mark.parametrize(
    ("amount", "parameter"),
    [
        ({"value": "350.505", "currency": "RUB"}, "amount.value"),
        ({"value": 350.5, "currency": "RUB"}, "amount.value"),
        ({"value": "0.00", "currency": "RUB"}, "amount.value"),
        ({"value": "0.99", "currency": "RUB"}, "amount.value"),
        ({"value": "350000.01", "currency": "RUB"}, "amount.value"),
        ({"value": "350,00", "currency": "RUB"}, "amount.value"),
        ({"value": "350.00", "currency": "USD"}, "amount.currency"),
        ({"value": "350.00", "currency": "XXX"}, "amount.currency"),
        ("350.00", "amount"),
    ],
)
def test_bad_amounts(
    harness: Harness, new_key: Callable[[], str], amount: Any, parameter: str
) -> None:
    response = harness.create(harness.first_payment_body(amount=amount), new_key())
    assert _assert_error(response, 400, "invalid_request")["parameter"] == parameter
    assert harness.state.payments() == []


@pytest.mark.parametrize(
    ("overrides", "parameter"),
    [
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k" * 33: "v"}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata"),
        ({"metadata": {"k": 5}}, "metadata"),
        ({"description": "д" * 129}, "description"),
        ({"confirmation": {"type": "redirect"}}, "confirmation.return_url"),
        (
            {"confirmation": {"type": "redirect", "return_url": "https://x/" + "a" * 2048}},
            "confirmation.return_url",
        ),
        ({"confirmation": None}, "confirmation"),
        ({"payment_method_id": "abc"}, "payment_method_id"),
        ({"capture": "true"}, "capture"),
    ],
)
def test_bad_fields(
    harness: Harness, new_key: Callable[[], str], overrides: dict[str, Any], parameter: str
) -> None:
    response = harness.create(harness.first_payment_body(**overrides), new_key())
    assert _assert_error(response, 400, "invalid_request")["parameter"] == parameter


def test_sdk_extras_are_accepted(harness: Harness, new_key: Callable[[], str]) -> None:
    metadata = {f"k{i}": "v" for i in range(15)} | {"cms_name": "yookassa_sdk_python"}
    body = harness.first_payment_body(metadata=metadata, statements=[], transfers=[])
    response = harness.create(body, new_key())
    assert response.status_code == 200, response.text
    assert response.json()["metadata"]["cms_name"] == "yookassa_sdk_python"


def test_boundary_amounts_accepted(harness: Harness, new_key: Callable[[], str]) -> None:
    for value in ("1.00", "350000.00", "99.9", "100"):
        body = harness.first_payment_body(amount={"value": value, "currency": "RUB"})
        response = harness.create(body, new_key())
        assert response.status_code == 200, (value, response.text)
    assert response.json()["amount"] == {"value": "100.00", "currency": "RUB"}


def test_raw_card_data_is_forbidden(harness: Harness, new_key: Callable[[], str]) -> None:
    data = {"type": "bank_card", "card": {"number": "5555555555554444"}}
    response = harness.create(harness.first_payment_body(payment_method_data=data), new_key())
    _assert_error(response, 403, "forbidden")


def test_invalid_json_and_unknown_ids(harness: Harness, new_key: Callable[[], str]) -> None:
    with harness.api() as api:
        broken = api.post(
            "/v3/payments",
            content=b"{not json",
            headers={"Idempotence-Key": new_key(), "Content-Type": "application/json"},
        )
        _assert_error(broken, 400, "invalid_request")
        missing = str(uuid.uuid4())
        _assert_error(api.get(f"/v3/payments/{missing}"), 404, "not_found")
        _assert_error(api.get(f"/v3/refunds/{missing}"), 404, "not_found")
        _assert_error(api.get(f"/v3/payment_methods/{missing}"), 404, "not_found")
        _assert_error(
            api.post(f"/v3/payments/{missing}/capture", headers={"Idempotence-Key": new_key()}),
            404,
            "not_found",
        )
        _assert_error(api.get("/v3/no-such-thing"), 404, "not_found")


def test_other_shops_payment_is_not_found(harness: Harness, new_key: Callable[[], str]) -> None:
    created = harness.create(harness.first_payment_body(), new_key()).json()
    with harness.api(harness.other_shop, harness.other_secret) as other:
        _assert_error(other.get(f"/v3/payments/{created['id']}"), 404, "not_found")


def test_refund_rules(harness: Harness, new_key: Callable[[], str]) -> None:
    created = harness.create(harness.first_payment_body(), new_key()).json()
    refund = {"payment_id": created["id"], "amount": {"value": "100.00", "currency": "RUB"}}
    pending = harness.post("/v3/refunds", refund, new_key())
    assert _assert_error(pending, 400, "invalid_request")["parameter"] == "payment_id"
    harness.checkout(created["confirmation"]["confirmation_url"])
    assert harness.post("/v3/refunds", refund, new_key()).status_code == 200
    too_much = {"payment_id": created["id"], "amount": {"value": "250.01", "currency": "RUB"}}
    assert (
        _assert_error(harness.post("/v3/refunds", too_much, new_key()), 400, "invalid_request")[
            "parameter"
        ]
        == "amount.value"
    )
    rest = {"payment_id": created["id"], "amount": {"value": "250.00", "currency": "RUB"}}
    assert harness.post("/v3/refunds", rest, new_key()).status_code == 200
    payment = harness.state.get_payment(harness.shop, created["id"])
    assert payment["refunded_amount"] == {"value": "350.00", "currency": "RUB"}
    assert payment["refundable"] is False


def test_list_limits(harness: Harness) -> None:
    with harness.api() as api:
        for bad in ("0", "101", "x"):
            response = api.get("/v3/payments", params={"limit": bad})
            assert _assert_error(response, 400, "invalid_request")["parameter"] == "limit"
        bad_date = api.get("/v3/payments", params={"created_at.gte": "yesterday"})
        assert _assert_error(bad_date, 400, "invalid_request")["parameter"] == "created_at.gte"
        assert api.get("/v3/payments", params={"cursor": "@@"}).status_code == 400
