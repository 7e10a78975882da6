"""Production brokers: with VZNOS_BROKER_URL set to RabbitMQ or Redis, the same tasks run on
real dramatiq workers. Skips with a printed reason where the broker is not running (CI has both)."""

from __future__ import annotations

import socket
import time
from datetime import date

import dramatiq
import pytest
from sqlalchemy import select

from core.settings import Settings
from payments.charges.models import Charge
from payments.gateway.emulator import EmulatorServer
from tests.conftest import SECRET_KEY, SHOP_ID, Subscribe
from vznos.broker import build_broker
from vznos.container import Container, GatewayConfig, build_container

pytestmark = pytest.mark.broker

BROKERS = {
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672", 5672),
    "redis": ("redis://127.0.0.1:6379/15", 6379),
}


def reachable(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("name", sorted(BROKERS))
def test_billing_runs_on_a_real_broker(
    name: str,
    container: Container,
    database_url: str,
    emulator: EmulatorServer,
    subscribe: Subscribe,
) -> None:
    url, port = BROKERS[name]
    if not reachable(port):
        pytest.skip(f"{name} is not running on 127.0.0.1:{port}")
    subscribe()
    broker = build_broker(url)
    production = build_container(
        Settings(broker_url=url, database_url=None, precharge_notice_days=0),
        database_url=database_url,
        gateway=GatewayConfig(SHOP_ID, SECRET_KEY, emulator.api_url),
        clock=container.clock,
        broker=broker,
        keyring=container.keyring,
    )
    broker.flush_all()
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        assert production.billing.run(date(2026, 12, 1)).charges_created == 1
        deadline = time.monotonic() + 30
        while True:
            with production.sessions() as session:
                status = session.scalar(
                    select(Charge.status).where(Charge.period_month == date(2026, 12, 1))
                )
            if status == "succeeded" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == "succeeded"
        december = [p for p in emulator.state.payments() if "12.2026" in str(p["description"])]
        assert len(december) == 1
    finally:
        worker.stop()
        production.close()
