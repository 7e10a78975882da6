"""The application as it runs in production: connected as `vznos_app`, the role that is
neither owner nor superuser, so row-level security binds every query it makes."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from core.clock import Clock
from core.faults import FaultPoints
from core.settings import Settings
from payments.gateway.emulator import EmulatorServer
from tests.conftest import SECRET_KEY, SHOP_ID
from tests.webhooks.outbound.conftest import StubResolver
from vznos.app import create_app
from vznos.broker import build_broker
from vznos.container import Container, GatewayConfig, build_container

# Overridable only to prove the RLS tests fail as an owner or superuser.
APP_ROLE = os.environ.get("VZNOS_TEST_APP_ROLE", "vznos_app")
CLIENT_IP = "203.0.113.7"


@pytest.fixture
def app_container(
    container: Container,  # the owner's container: its teardown truncates what this one wrote
    database_url: str,
    clock: Clock,
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Container]:
    built = build_container(
        Settings(broker_url=None, database_url=None, database_role=APP_ROLE),
        database_url=database_url,
        gateway=GatewayConfig(SHOP_ID, SECRET_KEY, emulator.api_url),
        clock=clock,
        broker=build_broker(None),
        faults=FaultPoints(),
    )
    monkeypatch.setattr(
        built.url_guard, "resolve", StubResolver({"crm.example.org": ["93.184.216.34"]})
    )
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def app_http(app_container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(app_container), client=(CLIENT_IP, 50000)) as test_client:
        yield test_client
