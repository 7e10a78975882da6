"""T15: hostile CRM URLs are refused at registration and again at connect time; redirects are
failed deliveries, never followed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import select

from core.clock import ManualClock
from core.db import transaction
from core.outbox import EventType, emit
from core.ssrf import UnsafeUrl, UrlGuard
from vznos.container import Container
from webhooks.outbound.models import WebhookDeliveryAttempt
from webhooks.outbound.schemas import WebhookEndpointCreated

from .conftest import CRM_IP, CRM_URL, Outbound, StubResolver

# Names the stub resolver maps to unsafe addresses (DNS under an attacker's control).
EVIL_DNS = {
    "loopback.evil.test": ["127.0.0.1"],
    "private.evil.test": ["10.1.2.3"],
    "metadata.evil.test": ["169.254.169.254"],
    "mixed.evil.test": ["93.184.216.34", "192.168.1.1"],
    "v6.evil.test": ["::1"],
    "mapped.evil.test": ["::ffff:10.0.0.1"],
    "cgnat.evil.test": ["100.64.0.1"],
}

HOSTILE = [
    "https://127.0.0.1/hook",
    "https://127.1/hook",
    "https://127.255.255.254/hook",
    "http://2130706433/hook",
    "https://2130706433/hook",
    "https://0x7f000001/hook",
    "https://017700000001/hook",
    "https://0x7f.0.0.1/hook",
    "https://0177.0.0.1/hook",
    "https://localhost/hook",
    "https://LOCALHOST./hook",
    "https://api.localhost/hook",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::ffff:7f00:1]/hook",
    "https://[::ffff:10.0.0.1]/hook",
    "https://[::ffff:169.254.169.254]/hook",
    "https://10.0.0.1/hook",
    "https://10.255.255.255:8443/hook",
    "https://172.16.0.1/hook",
    "https://172.31.255.254/hook",
    "https://192.168.0.1/hook",
    "https://192.168.1.1:9999/hook",
    "https://100.64.0.1/hook",
    "https://100.127.255.254/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://169.254.0.1/hook",
    "https://[fc00::1]/hook",
    "https://[fd12:3456::1]/hook",
    "https://[fe80::1]/hook",
    "https://[fe80::1%25eth0]/hook",
    "https://0.0.0.0/hook",
    "https://0/hook",
    "https://[::]/hook",
    "https://224.0.0.1/hook",
    "https://[ff02::1]/hook",
    "https://240.0.0.1/hook",
    "https://255.255.255.255/hook",
    "https://198.18.0.1/hook",
    "https://[2002:7f00:1::1]/hook",
    "https://[64:ff9b::7f00:1]/hook",
    "https://a@crm.example.org/hook",
    "https://user:pass@crm.example.org/hook",
    "https://crm.example.org@127.0.0.1/hook",
    "http://crm.example.org/hook",
    "ftp://crm.example.org/hook",
    "file:///etc/passwd",
    "gopher://crm.example.org/hook",
    "javascript:alert(1)",
    "https:///hook",
    "https://crm.example.org:99999/hook",
    "https://crm.exa mple.org/hook",
    "https://unknown-name.test/hook",
    *(f"https://{name}/hook" for name in EVIL_DNS),
]


@pytest.fixture
def guard() -> UrlGuard:
    return UrlGuard(resolve=StubResolver({"crm.example.org": [CRM_IP], **EVIL_DNS}))


def test_there_are_at_least_forty_hostile_urls() -> None:
    assert len(HOSTILE) >= 40


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_url_is_refused(guard: UrlGuard, url: str) -> None:
    with pytest.raises(UnsafeUrl) as refused:
        guard.vet(url)
    assert refused.value.status == 422
    assert refused.value.field == "url"


def test_public_https_urls_pass_with_odd_ports(guard: UrlGuard) -> None:
    assert str(guard.vet("https://crm.example.org:8443/x?y=1").address) == CRM_IP
    assert str(guard.vet("https://93.184.216.34/hook").address) == CRM_IP
    assert guard.vet("https://[2606:2800:220:1:248:1893:25c8:1946]/h").port == 443


def test_private_targets_can_be_allowed_for_development_but_metadata_never() -> None:
    dev = UrlGuard(allow_private_targets=True, resolve=StubResolver({}))
    assert dev.vet("http://127.0.0.1:8080/hook").port == 8080
    assert dev.vet("https://10.0.0.5/hook").scheme == "https"
    for url in ("http://169.254.169.254/", "http://0.0.0.0/", "ftp://127.0.0.1/"):
        with pytest.raises(UnsafeUrl):
            dev.vet(url)


def test_registration_refuses_names_that_resolve_privately(
    register: Callable[..., WebhookEndpointCreated],
    resolver: StubResolver,
) -> None:
    resolver.table.update(EVIL_DNS)
    for name in EVIL_DNS:
        with pytest.raises(UnsafeUrl):
            register(f"https://{name}/hook")


def _emit_one(container: Container, org_id: Any, clock: ManualClock) -> None:
    with transaction(container.sessions) as session:
        emit(
            session,
            type=EventType.PAYMENT_SUCCEEDED,
            organization_id=org_id,
            occurred_at=clock.now(),
            payload={"charge_id": "c"},
        )


def _outcomes(container: Container) -> list[str]:
    with container.sessions() as session:
        return list(
            session.scalars(
                select(WebhookDeliveryAttempt.outcome).order_by(WebhookDeliveryAttempt.attempted_at)
            )
        )


def test_dns_rebinding_after_registration_is_refused_at_connect_time(
    container: Container,
    clock: ManualClock,
    outbound: Outbound,
    register: Callable[..., WebhookEndpointCreated],
    resolver: StubResolver,
    org_id: Any,
) -> None:
    register()  # crm.example.org resolves to a public address now
    resolver.table["crm.example.org"] = ["127.0.0.1"]  # ...and to loopback at connect time
    _emit_one(container, org_id, clock)
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        route = mock.route().mock(return_value=httpx.Response(200))
        outbound.run_due()
        resolver.table["crm.example.org"] = [CRM_IP, "10.0.0.7"]  # one bad answer is enough
        clock.advance(timedelta(seconds=6))
        outbound.run_due()
    assert route.call_count == 0
    assert _outcomes(container) == ["blocked_target", "blocked_target"]


def test_a_redirect_to_a_private_address_is_a_failed_delivery_not_followed(
    container: Container,
    clock: ManualClock,
    outbound: Outbound,
    register: Callable[..., WebhookEndpointCreated],
    org_id: Any,
) -> None:
    register()
    _emit_one(container, org_id, clock)
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        crm = mock.post(f"https://{CRM_IP}/hooks/vznos").mock(
            return_value=httpx.Response(302, headers={"Location": "http://127.0.0.1/admin"})
        )
        inside = mock.route(host="127.0.0.1").mock(return_value=httpx.Response(200))
        outbound.run_due()
    assert crm.call_count == 1
    assert inside.call_count == 0
    assert _outcomes(container) == ["redirect"]
    assert CRM_URL.startswith("https://crm.example.org")
