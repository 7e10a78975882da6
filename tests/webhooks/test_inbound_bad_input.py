"""Bad input at `POST /webhooks/yookassa` (no auth): a 4xx `application/problem+json` naming the
field and nothing stored in the inbox. A well-formed notification of an event Vznos does not act
on is stored and answered 200, so YooKassa stops retrying."""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import text

from core.serving import BackgroundServer
from vznos.container import Container

PROBLEM_JSON = "application/problem+json"
PATH = "/webhooks/yookassa"
PAYMENT_ID = "2d6f0c2a-000f-5000-9000-1b68e7b15f3f"

Logs = list[MutableMapping[str, Any]]


def payment_object(**fields: object) -> dict[str, object]:
    obj: dict[str, object] = {
        "id": PAYMENT_ID,
        "status": "succeeded",
        "paid": True,
        "amount": {"value": "350.00", "currency": "RUB"},
        "metadata": {},
    }
    obj.update(fields)
    return obj


def notification(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "type": "notification",
        "event": "payment.succeeded",
        "object": payment_object(),
    }
    body.update(overrides)
    return body


def without(key: str) -> dict[str, object]:
    body = notification()
    del body[key]
    return body


def with_object(**fields: object) -> dict[str, object]:
    return notification(object=payment_object(**fields))


def json_bytes(body: object) -> bytes:
    return json.dumps(body).encode()


def inbox_count(container: Container) -> int:
    with container.engine.connect() as connection:
        count: int = connection.execute(text("SELECT count(*) FROM webhook_inbox")).scalar_one()
    return count


@pytest.fixture
def gateway(api_server: BackgroundServer) -> Iterator[httpx.Client]:
    """YooKassa's side of the webhook: no API key."""
    with httpx.Client(base_url=api_server.url, timeout=30) as http:
        yield http


@pytest.fixture
def logs() -> Iterator[Logs]:
    with structlog.testing.capture_logs() as captured:
        yield captured


BAD_NOTIFICATIONS = [
    pytest.param(b"{not json", "body", id="not-json"),
    pytest.param(b"", "body", id="empty"),
    pytest.param(b"\xff\xfe\x00{", "body", id="not-utf8"),
    pytest.param('{"type": "notification"}'.encode("utf-16"), "body", id="utf16"),
    pytest.param(json_bytes([notification()]), "type", id="json-array"),
    pytest.param(json_bytes("notification"), "type", id="json-string"),
    pytest.param(json_bytes(None), "type", id="json-null"),
    pytest.param(json_bytes(without("type")), "type", id="missing-type"),
    pytest.param(json_bytes(notification(type="payment")), "type", id="wrong-type"),
    pytest.param(json_bytes(without("event")), "event", id="missing-event"),
    pytest.param(json_bytes(notification(event="")), "event", id="empty-event"),
    pytest.param(json_bytes(notification(event=7)), "event", id="event-not-string"),
    pytest.param(json_bytes(notification(event="x" * 65)), "event", id="event-too-long"),
    pytest.param(json_bytes(without("object")), "object", id="missing-object"),
    pytest.param(json_bytes(notification(object=PAYMENT_ID)), "object", id="object-is-string"),
    pytest.param(json_bytes(notification(object=[PAYMENT_ID])), "object", id="object-is-list"),
    pytest.param(json_bytes(with_object(id=None)), "object.id", id="object-id-null"),
    pytest.param(json_bytes(notification(object={})), "object.id", id="object-id-missing"),
    pytest.param(json_bytes(with_object(id="")), "object.id", id="object-id-empty"),
    pytest.param(json_bytes(with_object(id=12345)), "object.id", id="object-id-number"),
    pytest.param(json_bytes(with_object(id="x" * 65)), "object.id", id="object-id-too-long"),
    pytest.param(json_bytes(notification()), "object.id", id="unknown-payment-succeeded"),
    pytest.param(
        json_bytes(notification(event="payment.canceled")),
        "object.id",
        id="unknown-payment-canceled",
    ),
    pytest.param(
        json_bytes(with_object(metadata={"vznos_attempt_id": "not-a-uuid"})),
        "object.id",
        id="unknown-payment-bad-attempt-id",
    ),
    pytest.param(
        json_bytes(
            with_object(metadata={"vznos_attempt_id": "0b0f6c1e-9d1c-4b7e-8d5e-2f1a3c4d5e6f"})
        ),
        "object.id",
        id="unknown-payment-unknown-attempt-id",
    ),
    pytest.param(
        json_bytes(notification(event="payout.succeeded\x00")),
        "event",
        id="nul-in-event",
    ),
    pytest.param(
        json_bytes(notification(event="payout.succeeded", object={"id": "po-1\x00"})),
        "object.id",
        id="nul-in-object-id",
    ),
    pytest.param(
        json_bytes(
            notification(event="payout.succeeded", object={"id": "po-1", "description": "a\x00"})
        ),
        "body",
        id="nul-elsewhere",
    ),
    pytest.param(
        b'{"type": "notification", "event": "payout.succeeded",'
        b' "object": {"id": "po-1", "description": "\\ud800"}}',
        "body",
        id="lone-surrogate",
    ),
]


@pytest.mark.parametrize(("content", "field"), BAD_NOTIFICATIONS)
def test_bad_notification_is_refused_and_not_stored(
    gateway: httpx.Client,
    container: Container,
    logs: Logs,
    content: bytes,
    field: str,
) -> None:
    response = gateway.post(PATH, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code != 500, response.text
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    problem = response.json()
    assert problem["status"] == response.status_code
    assert problem.get("field") == field, problem
    assert any(e["event"] == "request.refused" and e.get("field") == field for e in logs), logs
    assert inbox_count(container) == 0


def test_unknown_payment_is_404(gateway: httpx.Client, container: Container) -> None:
    response = gateway.post(PATH, json=notification())
    assert response.status_code == 404, response.text
    assert response.json()["field"] == "object.id"
    assert inbox_count(container) == 0


@pytest.mark.parametrize(
    "event", ["payout.succeeded", "refund.succeeded", "deal.closed"], ids=lambda e: e
)
def test_well_formed_notification_of_an_unhandled_event_is_stored_and_acknowledged(
    gateway: httpx.Client, container: Container, event: str
) -> None:
    body = notification(event=event, object={"id": "po-2d6f0c2a", "status": "succeeded"})
    response = gateway.post(PATH, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted", "duplicate": False}
    assert inbox_count(container) == 1

    again = gateway.post(PATH, json=body)
    assert again.status_code == 200, again.text
    assert again.json() == {"status": "accepted", "duplicate": True}
    assert inbox_count(container) == 1
