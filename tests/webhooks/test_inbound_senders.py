"""Only YooKassa's networks may post notifications, a forged X-Forwarded-For proves nothing, a
lying body changes nothing, and a huge body is refused without being read (T10, T12).

The thousand forgeries go through the whole ASGI application in-process (Starlette's
TestClient with the forger's address as the socket peer): every layer a request meets runs, at
a few milliseconds each. The proxy cases then go through a real uvicorn on loopback, with the
client bound to 127.0.0.2 (our "proxy") or 127.0.0.3 (a stranger), so the peer address is the
kernel's, not something the test wrote into a scope."""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import anyio
import httpx
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from starlette.requests import Request
from starlette.testclient import TestClient
from starlette.types import Message

from core.networks import address_in, parse_networks
from members.schemas import MemberUpsert
from members.service import Principal
from payments.charges.models import ChargeAttempt
from payments.gateway.emulator import EmulatorServer
from payments.subscriptions.schemas import SubscriptionCreate
from tests.conftest import Workers
from tests.webhooks.conftest import PUBLISHED, ServeWith, with_policy
from vznos.app import create_app
from vznos.container import Container
from webhooks.inbound.endpoints import read_body
from webhooks.inbound.errors import NotificationTooLarge, UnknownPayment
from webhooks.inbound.models import InboxItem
from webhooks.inbound.policy import InboundPolicy

PATH = "/webhooks/yookassa"
PROBLEM_JSON = "application/problem+json"
PROXY = "127.0.0.2"
STRANGER = "127.0.0.3"
YOOKASSA = "185.71.76.5"
BEHIND_PROXY = InboundPolicy(trusted_proxies=parse_networks(f"{PROXY}/32"))

Logs = list[MutableMapping[str, Any]]


@pytest.fixture
def logs() -> Iterator[Logs]:
    with structlog.testing.capture_logs() as captured:
        yield captured


@pytest.fixture
def pending_payment(
    container: Container,
    emulator: EmulatorServer,
    principal: Principal,
    subscription_body: Callable[..., dict[str, object]],
) -> dict[str, Any]:
    """A member at checkout: our attempt and the gateway's payment are both `pending`."""
    container.members.upsert(
        principal, "m-1", MemberUpsert(organization_code="ppo-1", full_name="Анна Смирнова")
    )
    container.subscriptions.start(
        principal, "m-1", SubscriptionCreate.model_validate(subscription_body())
    )
    [payment] = emulator.state.payments()
    assert payment["status"] == "pending"
    obj = payment["object"]
    assert isinstance(obj, dict)
    return obj


def lying(obj: dict[str, Any]) -> dict[str, Any]:
    """The notification a forger would send: the real payment, claimed paid."""
    return {
        "type": "notification",
        "event": "payment.succeeded",
        "object": {**obj, "status": "succeeded", "paid": True},
    }


def state_of(container: Container) -> tuple[object, ...]:
    """Everything a notification could change."""
    with container.engine.connect() as connection:
        return (
            connection.execute(text("SELECT count(*) FROM webhook_inbox")).scalar_one(),
            connection.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one(),
            connection.execute(text("SELECT count(*) FROM ledger_postings")).scalar_one(),
            tuple(
                connection.execute(
                    text(
                        "SELECT id, status, gateway_payment_id, settled_at, last_error "
                        "FROM charge_attempts ORDER BY id"
                    )
                ).all()
            ),
            tuple(connection.execute(text("SELECT id, status FROM charges ORDER BY id")).all()),
            tuple(
                connection.execute(text("SELECT id, status FROM subscriptions ORDER BY id")).all()
            ),
        )


# -- a thousand forgeries -------------------------------------------------------------------

PROXIES = parse_networks("10.0.0.0/8")


def outside_the_list(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return not address_in(mapped or address, PUBLISHED) and not address_in(address, PROXIES)


forgers = st.ip_addresses().filter(outside_the_list).map(str)
yookassa_addresses = st.sampled_from(
    ["185.71.76.5", "185.71.77.31", "77.75.156.11", "77.75.153.127", "2a02:5180:0:1509::1"]
)
proxies = st.ip_addresses(network="10.0.0.0/8").map(str)


@st.composite
def forgeries(draw: st.DrawFn) -> tuple[str, list[str]]:
    """(socket peer, X-Forwarded-For values) that must all be refused."""
    shape = draw(st.sampled_from(["direct", "spoofed", "behind-proxy"]))
    if shape == "direct":
        return draw(forgers), []
    if shape == "spoofed":
        # A stranger claims to be forwarding for YooKassa.
        claimed = draw(st.lists(yookassa_addresses | proxies, min_size=1, max_size=3))
        return draw(forgers), [", ".join(claimed)]
    # Through our own proxy: whatever the forger wrote left of its own address is ignored.
    claimed = draw(st.lists(yookassa_addresses, max_size=2))
    hops = [*claimed, draw(forgers), *draw(st.lists(proxies, max_size=2))]
    return draw(proxies), [", ".join(hops)]


def test_a_thousand_forged_notifications_change_nothing(
    container: Container, pending_payment: dict[str, Any], logs: Logs
) -> None:
    forged_at = with_policy(container, InboundPolicy(trusted_proxies=PROXIES))
    app = create_app(forged_at)
    before = state_of(container)
    events = st.sampled_from(["payment.succeeded", "payment.canceled", "refund.succeeded"])
    sent = 0

    @settings(
        max_examples=1000,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(sender=forgeries(), event=events)
    def forge(sender: tuple[str, list[str]], event: str) -> None:
        nonlocal sent
        peer, forwarded_for = sender
        body = {**lying(pending_payment), "event": event}
        with TestClient(app, client=(peer, 443)) as http:
            headers = [("x-forwarded-for", value) for value in forwarded_for]
            response = http.post(PATH, content=json.dumps(body), headers=headers)
        sent += 1
        assert response.status_code == 403, (peer, forwarded_for, response.text)
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
        assert "185." not in response.text and "77.75" not in response.text

    forge()
    assert sent >= 1000
    assert state_of(container) == before
    assert forged_at.inbox.forbidden_senders.value == sent
    refused = [e for e in logs if e["event"] == "webhook.forbidden_sender"]
    assert len(refused) == sent


def test_the_same_request_from_yookassa_is_accepted(
    container: Container, pending_payment: dict[str, Any]
) -> None:
    # The control for the test above: the forgeries fail for their sender, not their body.
    app = create_app(with_policy(container, InboundPolicy(trusted_proxies=PROXIES)))
    with TestClient(app, client=("::ffff:185.71.76.5", 443)) as http:
        assert http.post(PATH, json=lying(pending_payment)).status_code == 200
    with TestClient(app, client=("10.9.8.7", 443)) as http:
        response = http.post(
            PATH,
            json=lying(pending_payment),
            headers={"x-forwarded-for": "203.0.113.1, 77.75.156.11, 10.1.1.1"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["duplicate"] is True


# -- through a real server and a proxy ---------------------------------------------------------


def client_from(server_url: str, source: str) -> httpx.Client:
    """An HTTP client whose connections leave from `source`, a loopback address."""
    return httpx.Client(
        base_url=server_url, transport=httpx.HTTPTransport(local_address=source), timeout=30
    )


def test_yookassa_through_the_trusted_proxy_is_accepted_and_a_stranger_is_not(
    container: Container,
    serve_with: ServeWith,
    pending_payment: dict[str, Any],
    logs: Logs,
) -> None:
    server = serve_with(BEHIND_PROXY)
    before = state_of(container)
    headers = {"X-Forwarded-For": YOOKASSA}

    with client_from(server.url, STRANGER) as stranger:
        refused = stranger.post(PATH, json=lying(pending_payment), headers=headers)
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith(PROBLEM_JSON)
    assert YOOKASSA not in refused.text
    assert state_of(container) == before
    [forbidden] = [e for e in logs if e["event"] == "webhook.forbidden_sender"]
    assert forbidden["address"] == STRANGER

    with client_from(server.url, PROXY) as proxy:
        accepted = proxy.post(PATH, json=lying(pending_payment), headers=headers)
        # Our proxy with a stranger behind it: the stranger is the sender.
        forwarded_stranger = proxy.post(
            PATH, json=lying(pending_payment), headers={"X-Forwarded-For": "203.0.113.7"}
        )
    assert accepted.status_code == 200, accepted.text
    assert forwarded_stranger.status_code == 403, forwarded_stranger.text
    with container.sessions() as session:
        assert session.scalar(select(InboxItem.object_id)) == pending_payment["id"]


def test_a_payload_lying_about_the_status_changes_nothing(
    container: Container,
    serve_with: ServeWith,
    workers: Workers,
    pending_payment: dict[str, Any],
) -> None:
    server = serve_with(BEHIND_PROXY)
    before = state_of(container)
    with client_from(server.url, PROXY) as proxy:
        response = proxy.post(
            PATH, json=lying(pending_payment), headers={"X-Forwarded-For": YOOKASSA}
        )
    assert response.status_code == 200, response.text
    workers.drain()

    with container.sessions() as session:
        item = session.scalars(select(InboxItem)).one()
        assert item.processed_at is not None  # the gateway was asked and answered
        attempt = session.scalars(select(ChargeAttempt)).one()
        assert attempt.status == "pending"
    inbox_rows, *rest = state_of(container)
    assert inbox_rows == 1
    assert rest == list(before[1:])


# -- body size ---------------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A well-formed notification of exactly `size` bytes (an event Vznos only stores)."""
    body = json.dumps(
        {"type": "notification", "event": "payout.succeeded", "object": {"id": "po-1"}}
    )
    assert len(body) <= size
    return (body + " " * (size - len(body))).encode()


def inbox_count(container: Container) -> int:
    with container.engine.connect() as connection:
        count: int = connection.execute(text("SELECT count(*) FROM webhook_inbox")).scalar_one()
    return count


def test_an_oversized_body_is_413_and_one_at_the_limit_is_accepted(
    container: Container, serve_with: ServeWith
) -> None:
    limit = 64 * 1024
    assert container.inbox.policy.max_body_bytes == limit  # the default
    server = serve_with(container.inbox.policy)
    with httpx.Client(base_url=server.url, timeout=30) as gateway:
        too_big = gateway.post(PATH, content=padded(limit + 1))
        assert too_big.status_code == 413, too_big.text
        assert too_big.headers["content-type"].startswith(PROBLEM_JSON)
        assert too_big.json()["field"] == "body"

        # Without Content-Length (chunked), the limit is found while reading.
        chunks = iter([padded(limit + 1)[:40_000], padded(limit + 1)[40_000:]])
        chunked = gateway.post(PATH, content=chunks)
        assert chunked.status_code == 413, chunked.text
        assert inbox_count(container) == 0

        at_limit = gateway.post(PATH, content=padded(limit))
        assert at_limit.status_code == 200, at_limit.text
    assert inbox_count(container) == 1


def test_a_forbidden_sender_is_refused_before_its_body_is_judged(
    container: Container, serve_with: ServeWith
) -> None:
    server = serve_with(BEHIND_PROXY)
    with client_from(server.url, STRANGER) as stranger:
        assert stranger.post(PATH, content=padded(200_000)).status_code == 403
        assert stranger.post(PATH, content=b"{not json").status_code == 403
    assert inbox_count(container) == 0


def test_reading_stops_at_the_limit_without_buffering_the_rest() -> None:
    chunk = b"x" * 16 * 1024
    total_chunks = 100 * 1024 * 1024 // len(chunk)  # a 100 MiB body
    delivered = 0

    async def receive() -> Message:
        nonlocal delivered
        delivered += 1
        return {
            "type": "http.request",
            "body": chunk,
            "more_body": delivered < total_chunks,
        }

    def read(scope: dict[str, Any]) -> None:
        anyio.run(read_body, Request(scope, receive), 64 * 1024)

    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": PATH, "headers": []}
    with pytest.raises(NotificationTooLarge):
        read(scope)
    assert delivered == 5  # 4 chunks fill the limit exactly; the 5th passes it

    declared = {**scope, "headers": [(b"content-length", str(100 * 1024 * 1024).encode())]}
    delivered = 0
    with pytest.raises(NotificationTooLarge):
        read(declared)
    assert delivered == 0  # refused on the declared length alone


# -- saved cards (standby) ------------------------------------------------------------------


def test_a_payment_method_vznos_never_asked_for_is_refused_and_not_stored(
    container: Container,
) -> None:
    body = {
        "type": "notification",
        "event": "payment_method.active",
        "object": {"id": f"pm-{uuid.uuid4()}"},
    }
    with pytest.raises(UnknownPayment) as refused:
        container.inbox.receive(json.dumps(body).encode())
    assert refused.value.field == "object.id"
    with container.sessions() as session:
        assert session.scalars(select(InboxItem)).all() == []
