"""Fixtures for outbound webhooks: a stub resolver, a queue that respects a manual clock, the
delivery services wired to them, and a verifier that reads the same manual clock."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import standardwebhooks.webhooks as standard
from sqlalchemy import select

from core.clock import ManualClock
from core.db import transaction
from core.ssrf import UrlGuard
from members.schemas import OrganizationCreate
from members.service import Principal
from payments.charges.models import Charge
from payments.charges.service import ChargeService
from payments.charges.states import ChargeKind, ChargeStatus
from payments.subscriptions.models import Subscription
from vznos.container import Container
from webhooks.outbound.delivery import TASK_DELIVER, OutboundDeliveries
from webhooks.outbound.models import WebhookEndpoint
from webhooks.outbound.schemas import WebhookEndpointCreate, WebhookEndpointCreated
from webhooks.outbound.sender import WebhookSender
from webhooks.outbound.service import WebhookEndpointService

CRM_HOST = "crm.example.org"
CRM_IP = "93.184.216.34"
CRM_URL = f"https://{CRM_HOST}/hooks/vznos"


class StubResolver:
    """getaddrinfo with a table we control, so tests can stage DNS rebinding."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = dict(table)
        self.calls: list[str] = []

    def __call__(self, host: str, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (ip, port),
            )
            for ip in self.table[host]
        ]


@dataclass
class ClockQueue:
    """The TaskQueue port holding messages until the manual clock reaches their delay."""

    clock: ManualClock
    messages: list[tuple[datetime, str, dict[str, str]]] = field(default_factory=list)

    def enqueue(self, task: str, *, delay_seconds: float | None = None, **ids: str) -> None:
        eta = self.clock.now() + timedelta(seconds=delay_seconds or 0)
        self.messages.append((eta, task, ids))

    def take_due(self) -> list[uuid.UUID]:
        now = self.clock.now()
        due = [m for m in self.messages if m[0] <= now]
        self.messages = [m for m in self.messages if m[0] > now]
        return [uuid.UUID(ids["delivery_id"]) for _, task, ids in due if task == TASK_DELIVER]


@dataclass
class Outbound:
    deliveries: OutboundDeliveries
    endpoints: WebhookEndpointService
    resolver: StubResolver
    guard: UrlGuard
    queue: ClockQueue
    clock: ManualClock

    def run_due(self) -> int:
        """What workers and the scheduler would do now: sweep, then run every due message."""
        self.deliveries.sweep()
        ran = 0
        while due := self.queue.take_due():
            for delivery_id in due:
                self.deliveries.deliver(delivery_id)
                ran += 1
        return ran


@pytest.fixture
def resolver() -> StubResolver:
    return StubResolver({CRM_HOST: [CRM_IP], "crm2.example.org": ["93.184.216.35"]})


@pytest.fixture
def outbound(
    container: Container, clock: ManualClock, resolver: StubResolver
) -> Iterator[Outbound]:
    guard = UrlGuard(resolve=resolver)
    queue = ClockQueue(clock)
    sender = WebhookSender(guard=guard)
    deliveries = OutboundDeliveries(
        sessions=container.sessions,
        clock=clock,
        queue=queue,
        sender=sender,
        keyring=container.keyring,
    )
    endpoints = WebhookEndpointService(
        sessions=container.sessions,
        clock=clock,
        guard=guard,
        deliveries=deliveries,
        keyring=container.keyring,
    )
    try:
        yield Outbound(deliveries, endpoints, resolver, guard, queue, clock)
    finally:
        sender.close()


@pytest.fixture
def register(outbound: Outbound, principal: Principal) -> Callable[..., WebhookEndpointCreated]:
    def make(url: str = CRM_URL, **fields: Any) -> WebhookEndpointCreated:
        return outbound.endpoints.create(
            principal, WebhookEndpointCreate.model_validate({"url": url, **fields})
        )

    return make


@pytest.fixture
def verify_now(
    monkeypatch: pytest.MonkeyPatch, clock: ManualClock
) -> Callable[[str, bytes, dict[str, str]], Any]:
    """The reference verifier, with its 5-minute tolerance measured on the manual clock."""

    class ClockDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> ClockDatetime:
            instant = clock.now()
            return cls.fromtimestamp(instant.timestamp(), tz=tz)

    monkeypatch.setattr(standard, "datetime", ClockDatetime)

    def verify(secret: str, body: bytes, headers: dict[str, str]) -> Any:
        return standard.Webhook(secret).verify(body, headers)

    return verify


@pytest.fixture
def org_id(container: Container, org_code: str) -> uuid.UUID:
    from members.models import Organization

    with container.sessions() as session:
        found = session.scalar(select(Organization.id).where(Organization.code == org_code))
    assert found is not None
    return found


@pytest.fixture
def child_org(container: Container, principal: Principal) -> str:
    container.organizations.create(
        OrganizationCreate(code="ppo-1-shop", name="Цех / Shop", timezone="Europe/Moscow"),
        principal,
    )
    return "ppo-1-shop"


def endpoint_row(container: Container, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    with container.sessions() as session:
        row = session.get(WebhookEndpoint, endpoint_id)
        assert row is not None
        return row


def decline_a_later_month(container: Container, subscription_id: uuid.UUID, now: datetime) -> None:
    """January 2027's charge of this subscription is declined (insufficient funds): one
    transaction fails it and records its events, as the engine does."""
    with transaction(container.sessions) as session:
        subscription = session.get(Subscription, subscription_id)
        assert subscription is not None
        charge = Charge(
            id=subscription_id,
            subscription_id=subscription_id,
            member_id=subscription.member_id,
            organization_id=subscription.organization_id,
            period_month=date(2027, 1, 1),
            kind=ChargeKind.RECURRING,
            status=ChargeStatus.PENDING,
            amount_kopecks=35000,
            currency="RUB",
            created_at=now,
        )
        session.add(charge)
        session.flush()
        ChargeService.fail_charge(charge, subscription, "insufficient_funds", now)
