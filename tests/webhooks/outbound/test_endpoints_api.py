"""The endpoint API over HTTP: the secret shown once, scope 404s, validation 422s."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from core.db import transaction
from core.outbox import EventType, emit
from members.schemas import OrganizationCreate
from tests.conftest import with_idempotency_key
from vznos.container import Container

from .conftest import CRM_URL, StubResolver


@pytest.fixture(autouse=True)
def _stub_dns(container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        container.url_guard,
        "resolve",
        StubResolver({"crm.example.org": ["93.184.216.34"], "evil.test": ["10.0.0.1"]}),
    )


@pytest.fixture
def other_client(container: Container, client: httpx.Client) -> httpx.Client:
    """A caller from another organisation tree."""
    container.organizations.create(
        OrganizationCreate(code="other", name="Другой / Other", timezone="Europe/Moscow"), None
    )
    key = container.access.create_api_key("other", "tests", ["admin"])[1]
    return httpx.Client(
        base_url=client.base_url,
        headers={"Authorization": f"Bearer {key}"},
        event_hooks={"request": [with_idempotency_key]},
    )


def test_endpoint_lifecycle_shows_the_secret_once(client: httpx.Client) -> None:
    created = client.post(
        "/v1/webhook-endpoints",
        json={"url": CRM_URL, "event_types": ["payment.succeeded"], "description": "CRM"},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_")
    endpoint_id = body["id"]
    one = client.get(f"/v1/webhook-endpoints/{endpoint_id}")
    assert one.status_code == 200 and "secret" not in one.json()
    listed = client.get("/v1/webhook-endpoints").json()["data"]
    assert [e["id"] for e in listed] == [endpoint_id] and "secret" not in listed[0]
    rotated = client.post(f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret").json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != body["secret"]
    assert client.post(f"/v1/webhook-endpoints/{endpoint_id}/disable").json()["status"] == (
        "disabled"
    )
    assert (
        client.post(
            f"/v1/webhook-endpoints/{endpoint_id}/replay", json={"since": "2026-11-01T00:00:00Z"}
        ).status_code
        == 409
    )
    assert client.post(f"/v1/webhook-endpoints/{endpoint_id}/enable").json()["status"] == ("active")
    replay = client.post(
        f"/v1/webhook-endpoints/{endpoint_id}/replay", json={"since": "2026-11-01T00:00:00Z"}
    )
    assert replay.status_code == 202 and replay.json()["queued"] == 0
    deliveries = client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries?limit=100")
    assert deliveries.status_code == 200 and deliveries.json() == {"data": [], "has_more": False}
    assert client.delete(f"/v1/webhook-endpoints/{endpoint_id}").status_code == 204
    assert client.get(f"/v1/webhook-endpoints/{endpoint_id}").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://evil.test/hook"},
        {"url": "http://127.0.0.1/hook"},
        {"url": "https://a@crm.example.org/hook"},
        {"url": CRM_URL, "event_types": ["payment.exploded"]},
        {"url": CRM_URL, "secret": "whsec_mine"},
        {"url": CRM_URL, "organization_id": str(uuid.uuid4())},
        {"url": "x" * 3000},
        {},
    ],
)
def test_bad_input_is_422_problem_json(client: httpx.Client, body: dict[str, Any]) -> None:
    response = client.post("/v1/webhook-endpoints", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert client.get("/v1/webhook-endpoints").json()["data"] == []


def test_bad_paging_and_replay_are_422(client: httpx.Client) -> None:
    endpoint_id = client.post("/v1/webhook-endpoints", json={"url": CRM_URL}).json()["id"]
    assert (
        client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries?limit=101").status_code == 422
    )
    assert (
        client.post(
            f"/v1/webhook-endpoints/{endpoint_id}/replay", json={"since": "2026-11-01T00:00:00"}
        ).status_code
        == 422
    )


def test_another_tree_sees_nothing(
    container: Container, client: httpx.Client, other_client: httpx.Client, org_id: Any
) -> None:
    endpoint_id = client.post("/v1/webhook-endpoints", json={"url": CRM_URL}).json()["id"]
    with transaction(container.sessions) as session:
        event_id = emit(
            session,
            type=EventType.PAYMENT_SUCCEEDED,
            organization_id=org_id,
            occurred_at=container.clock.now(),
            payload={},
        )
    for method, path in [
        ("GET", f"/v1/webhook-endpoints/{endpoint_id}"),
        ("GET", f"/v1/webhook-endpoints/{endpoint_id}/deliveries"),
        ("POST", f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret"),
        ("POST", f"/v1/webhook-endpoints/{endpoint_id}/disable"),
        ("DELETE", f"/v1/webhook-endpoints/{endpoint_id}"),
        ("POST", f"/v1/events/{event_id}/redeliver"),
        ("POST", f"/v1/events/{uuid.uuid4()}/redeliver"),
    ]:
        assert other_client.request(method, path).status_code == 404, path
    assert other_client.get("/v1/webhook-endpoints").json()["data"] == []
    # The owner can redeliver its own event: relayed or not, it gets a delivery.
    redelivered = client.post(f"/v1/events/{event_id}/redeliver")
    assert redelivered.status_code == 202 and redelivered.json()["queued"] == 1
