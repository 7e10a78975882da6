"""Shared fixtures: real PostgreSQL built by the migrations, the emulator over loopback HTTP,
the application served on loopback, in-process dramatiq workers, and a manual clock."""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dramatiq
import httpx
import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from core.clock import Clock, ManualClock
from core.faults import FaultPoints
from core.logging import EMAIL_PATTERN, PHONE_PATTERN, configure_logging, luhn_valid
from core.networks import LOOPBACK_NETWORKS, YOOKASSA_NOTIFICATION_NETWORKS, parse_networks
from core.serving import BackgroundServer
from core.settings import Settings, normalize_database_url
from members.schemas import MemberUpsert, OrganizationCreate
from members.service import Principal
from payments.charges.models import Charge, ChargeAttempt
from payments.gateway.emulator import EmulatorServer, EmulatorState, Notifier
from payments.gateway.emulator.testing import complete_checkout
from payments.subscriptions.schemas import SubscriptionCreate
from vznos.app import create_app
from vznos.broker import QUEUE_PAYMENTS, QUEUE_WEBHOOKS, build_broker
from vznos.container import Container, GatewayConfig, build_container
from vznos.embedded import EmbeddedPostgres
from vznos.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
SHOP_ID = "100500"
SECRET_KEY = "test_secret_for_vznos_tests"
# Fixed test keys, so operator commands run as subprocesses read what the tests wrote.
MASTER_KEY = "test1:y7MXtBGce7sVfk-_KOxlZY8MY9M9EtQVqGY0yikIDCM"
BLIND_INDEX_KEY = "ojaly0swmZrRTb_IlYY25aWmhhpfXU1gJ0SOgQBMRGw"
LINK_SECRET = "test-link-secret-for-vznos-member-pages"
# A Monday morning in Moscow; billing tests move the clock from here.
START = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


# -- T24: logs never carry personal data, card numbers or secrets ---------------------------
# Every test's log records (all threads: the API server, workers, the emulator) are scanned for
# the fixtures' member names, anything shaped like an email or a phone number, Luhn-valid card
# numbers, and the test secrets. A hit fails the test that logged it.
MEMBER_NAMES = (
    "Анна Смирнова",
    "Иван Петров",
    "Мария Иванова",
    "Олег Кузнецов",
    "Смирнова",
    "Петров",
)
SECRETS = (
    SECRET_KEY,
    MASTER_KEY.split(":", 1)[1],
    BLIND_INDEX_KEY,
)
SECRET_PATTERNS = re.compile(r"\bvz_[A-Za-z0-9_-]{20,}|whsec_[A-Za-z0-9+/=]{20,}")
CARD_PATTERN = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")


def sensitive_hits(text: str) -> list[str]:
    """What in `text` is personal data, a card number or a secret."""
    hits = [name for name in (*MEMBER_NAMES, *SECRETS) if name in text]
    hits += EMAIL_PATTERN.findall(text) + PHONE_PATTERN.findall(text)
    hits += SECRET_PATTERNS.findall(text)
    hits += [run for run in CARD_PATTERN.findall(text) if luhn_valid(run)]
    return hits


class LogScan(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.hits: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            text = str(record.msg)
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.hits += [f"{record.name}: {hit!r} in {text[:300]!r}" for hit in sensitive_hits(text)]


@pytest.fixture(scope="session", autouse=True)
def structured_logs() -> None:
    """Logs as production makes them: structlog through the standard library, redacted."""
    configure_logging("json", "INFO")


@pytest.fixture(autouse=True)
def log_hygiene() -> Iterator[LogScan]:
    scan = LogScan()
    root = logging.getLogger()
    root.addHandler(scan)
    try:
        yield scan
    finally:
        root.removeHandler(scan)
    if scan.hits:
        pytest.fail("sensitive data in logs:\n" + "\n".join(scan.hits[:20]), pytrace=False)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database for this test session, on the server named by VZNOS_DATABASE_URL /
    DATABASE_URL, or on an embedded PostgreSQL when none is named."""
    named = os.environ.get("VZNOS_DATABASE_URL") or os.environ.get("DATABASE_URL")
    embedded: EmbeddedPostgres | None = None
    if named:
        server_url = normalize_database_url(named)
        sys.stderr.write(f"\ntests use PostgreSQL at {make_url(server_url).host}\n")
    else:
        embedded = EmbeddedPostgres(ROOT / "var" / "test-postgres")
        server_url = embedded.start()
        sys.stderr.write("\ntests use an embedded PostgreSQL (pgserver)\n")
    name = f"vznos_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        if embedded is not None:
            embedded.stop()


@pytest.fixture(scope="session")
def all_tables(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        names = connection.scalars(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ).all()
    engine.dispose()
    return list(names)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def emulator(clock: Clock) -> Iterator[EmulatorServer]:
    state = EmulatorState(
        {SHOP_ID: SECRET_KEY}, clock=clock, notifier=Notifier(backoff=(0.05, 0.2, 0.5))
    )
    server = EmulatorServer(state).start()
    try:
        yield server
    finally:
        server.stop()
        state.close()


@pytest.fixture
def faults() -> FaultPoints:
    return FaultPoints()


@pytest.fixture
def precharge_notice_days() -> int:
    """Most tests are not about the pre-charge notice: a charge goes out as soon as it is
    announced. tests/payments/test_recurring_engine.py runs with the real default; a module
    about the notice overrides this fixture."""
    return 0


@pytest.fixture
def container(
    database_url: str,
    all_tables: list[str],
    clock: Clock,
    emulator: EmulatorServer,
    faults: FaultPoints,
    precharge_notice_days: int,
) -> Iterator[Container]:
    settings = Settings(
        broker_url=None,
        database_url=None,
        precharge_notice_days=precharge_notice_days,
        master_key=MASTER_KEY,
        blind_index_key=BLIND_INDEX_KEY,
        link_secret=LINK_SECRET,
        # The emulator and the tests post notifications from loopback.
        yookassa_notification_networks=parse_networks(
            (*YOOKASSA_NOTIFICATION_NETWORKS, *LOOPBACK_NETWORKS)
        ),
    )
    built = build_container(
        settings,
        database_url=database_url,
        gateway=GatewayConfig(SHOP_ID, SECRET_KEY, emulator.api_url),
        clock=clock,
        broker=build_broker(None),
        faults=faults,
    )
    try:
        yield built
    finally:
        built.close()
        engine = create_engine(database_url)
        with engine.begin() as connection:
            # Truncating only the tables a test wrote to is several times faster than all.
            dirty = connection.scalars(
                text(
                    " UNION ALL ".join(
                        f"SELECT '{table}' WHERE EXISTS (SELECT 1 FROM {table})"
                        for table in all_tables
                    )
                )
            ).all()
            if dirty:
                connection.execute(text(f"TRUNCATE {', '.join(dirty)} RESTART IDENTITY CASCADE"))
        engine.dispose()


@dataclass
class Workers:
    broker: StubBroker
    worker: dramatiq.Worker

    def drain(self) -> None:
        """Wait until every queued task (and what those tasks queued) has run."""
        for _ in range(5):
            for queue in (QUEUE_PAYMENTS, QUEUE_WEBHOOKS):
                self.broker.join(queue, fail_fast=True, timeout=30_000)
            self.worker.join()


@pytest.fixture
def workers(container: Container) -> Iterator[Workers]:
    assert isinstance(container.broker, StubBroker)
    worker = dramatiq.Worker(container.broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        yield Workers(container.broker, worker)
    finally:
        worker.stop()


@pytest.fixture
def api_server(container: Container, emulator: EmulatorServer) -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_app(container), name="vznos-api")
    server.start()
    emulator.state.set_notification_url(SHOP_ID, server.url + "/webhooks/yookassa")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def org_code(container: Container) -> str:
    container.organizations.create(
        OrganizationCreate(code="ppo-1", name="ППО завода / Plant union", timezone="Europe/Moscow"),
        None,
    )
    return "ppo-1"


@pytest.fixture
def api_key(container: Container, org_code: str) -> str:
    return container.access.create_api_key(org_code, "tests", ["admin"])[1]


def with_idempotency_key(request: httpx.Request) -> None:
    """What a well-behaved CRM does: a fresh Idempotency-Key on every POST it did not key
    itself (a test that needs none builds its own client)."""
    if request.method == "POST" and "idempotency-key" not in request.headers:
        request.headers["Idempotency-Key"] = f"test-{uuid.uuid4()}"


@pytest.fixture
def client(api_server: BackgroundServer, api_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=api_server.url,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
        event_hooks={"request": [with_idempotency_key]},
    ) as http:
        yield http


@pytest.fixture
def subscription_body() -> Callable[..., dict[str, object]]:
    def body(**overrides: object) -> dict[str, object]:
        data: dict[str, object] = {
            "amount": {"value": "350.00", "currency": "RUB"},
            "billing_day": 5,
            "consent": {"text_version": "2026-11", "accepted_at": "2026-11-23T06:55:00Z"},
            "return_url": "https://crm.example.org/dues/thanks",
        }
        data.update(overrides)
        return data

    return body


Subscribe = Callable[..., uuid.UUID]


@pytest.fixture
def principal(container: Container, api_key: str) -> Principal:
    return container.access.authenticate(api_key)


@pytest.fixture
def subscribe(
    container: Container,
    api_key: str,
    subscription_body: Callable[..., dict[str, object]],
) -> Subscribe:
    """Start auto-pay for a member, pay the first month at checkout, and apply the outcome the
    way the notification's worker would. Returns the subscription id."""

    def make(external_id: str = "m-1", org_code: str = "ppo-1", **body: object) -> uuid.UUID:
        principal = container.access.authenticate(api_key)  # sees organisations made since
        container.members.upsert(
            principal,
            external_id,
            MemberUpsert(organization_code=org_code, full_name="Анна Смирнова"),
        )
        started = container.subscriptions.start(
            principal, external_id, SubscriptionCreate.model_validate(subscription_body(**body))
        )
        assert started.confirmation_url
        assert complete_checkout(started.confirmation_url).status_code == 303
        with container.sessions() as session:
            attempt_id = session.scalar(
                select(ChargeAttempt.id)
                .join(Charge, Charge.id == ChargeAttempt.charge_id)
                .where(Charge.subscription_id == started.id)
            )
        assert attempt_id is not None
        container.charges.resolve(attempt_id)
        assert container.subscriptions.get(principal, started.id).status == "active"
        return started.id

    return make


def saved_card_token(container: Container) -> str:
    """The gateway token of the one saved card, decrypted as the charge path does."""
    from payments.charges.service import card_token
    from payments.subscriptions.models import PaymentMethod

    with container.sessions() as session:
        method = session.scalars(select(PaymentMethod)).one()
        return card_token(session, container.vault, method)


@pytest.fixture
def cli_env(database_url: str, emulator: EmulatorServer) -> dict[str, str]:
    """The environment an operator's `vznos …` command gets: this test's database and shop."""
    return {
        "VZNOS_DATABASE_URL": database_url,
        "VZNOS_YOOKASSA_SHOP_ID": SHOP_ID,
        "VZNOS_YOOKASSA_SECRET_KEY": SECRET_KEY,
        "VZNOS_YOOKASSA_API_URL": emulator.api_url,
        "VZNOS_BROKER_URL": "",
        "VZNOS_PRECHARGE_NOTICE_DAYS": "0",
        "VZNOS_LOG_FORMAT": "json",
        "VZNOS_MASTER_KEY": MASTER_KEY,
        "VZNOS_BLIND_INDEX_KEY": BLIND_INDEX_KEY,
        "VZNOS_LINK_SECRET": LINK_SECRET,
    }
