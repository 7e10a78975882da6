"""The process shapes: everything in one (`run`), or API, worker and scheduler apart."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import date

import dramatiq
import structlog
import uvicorn
from dramatiq.brokers.stub import StubBroker

from core.settings import YOOKASSA_API_URL, Settings
from members.errors import OrganizationExists
from members.schemas import OrganizationCreate
from members.scopes import Scope
from payments.charges.billing import BillingResult
from vznos.app import create_app
from vznos.broker import QUEUE_PAYMENTS, QUEUE_WEBHOOKS
from vznos.container import Container
from vznos.runtime import public_url, runtime
from vznos.scheduler import run_forever

log = structlog.get_logger("vznos.processes")

DEMO_ORG_CODE = "demo"


def install_signal_handlers(stop: threading.Event) -> None:
    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)


def ensure_demo_org(container: Container) -> None:
    with suppress(OrganizationExists):
        container.organizations.create(
            OrganizationCreate(code=DEMO_ORG_CODE, name="Демо-профсоюз / Demo union"), None
        )


def banner(settings: Settings, api_key: str, emulator_url: str | None) -> str:
    base = public_url(settings)
    lines = [
        "",
        "Vznos is running / Взнос запущен",
        f"  API:              {base}/v1   (docs: {base}/docs)",
        f"  Demo organization: {DEMO_ORG_CODE}",
        f"  Demo API key:      {api_key}",
    ]
    if emulator_url:
        lines += [
            f"  YooKassa emulator: {emulator_url}/v3",
            "  Test card / тестовая карта: 5555 5555 5555 4444, any future expiry, any CVC",
        ]
    lines += [
        "",
        "Try it:",
        f"  export KEY={api_key}",
        f'  curl -X PUT {base}/v1/members/m-1 -H "Authorization: Bearer $KEY" \\',
        "       -H 'Content-Type: application/json' \\",
        f'       -d \'{{"organization_code": "{DEMO_ORG_CODE}", "full_name": "Иван Петров"}}\'',
        f'  curl -X POST {base}/v1/members/m-1/subscriptions -H "Authorization: Bearer $KEY" \\',
        "       -H 'Idempotency-Key: try-the-money-loop-m-1' \\",
        '       -H \'Content-Type: application/json\' -d \'{"amount": {"value": "350.00", '
        '"currency": "RUB"}, "billing_day": 5, "consent": {"text_version": "v1", '
        '"accepted_at": "2026-11-23T10:00:00Z"}, "return_url": "https://example.org/thanks"}\'',
        "  # open confirmation_url from the answer, pay with the test card, then:",
        f'  curl {base}/v1/members/m-1/account -H "Authorization: Bearer $KEY"',
        "  vznos billing run --period YYYY-MM   # charge the next month now",
        "",
    ]
    return "\n".join(lines)


# What the README's try-it commands need (members, auto-pay, standby, shortfalls, accounts,
# refunds, webhooks), named one by one: a key is never given scopes it was not asked for, and
# the demo key does not mint keys (`admin`).
DEMO_SCOPES = tuple(sorted(scope.value for scope in Scope if scope is not Scope.ADMIN))


def run_all(settings: Settings) -> None:
    with runtime(settings) as rt:
        container = rt.container
        ensure_demo_org(container)
        _, api_key = container.access.create_api_key(DEMO_ORG_CODE, "demo (vznos run)", DEMO_SCOPES)
        worker = dramatiq.Worker(container.broker, worker_threads=settings.worker_threads)
        worker.start()
        stop = threading.Event()
        scheduler = threading.Thread(
            target=run_forever,
            args=(container, stop, settings.scheduler_interval_seconds),
            name="vznos-scheduler",
            daemon=True,
        )
        scheduler.start()
        print(banner(settings, api_key, rt.emulator.url if rt.emulator else None), flush=True)
        try:
            uvicorn.run(
                create_app(container),
                host=settings.host,
                port=settings.port,
                log_config=None,
                # The app resolves X-Forwarded-For itself from VZNOS_TRUSTED_PROXIES; uvicorn's
                # default would also believe the header from any loopback peer.
                proxy_headers=False,
            )
        finally:
            stop.set()
            worker.stop()


def serve_api(settings: Settings) -> None:
    with runtime(settings, with_emulator=False) as rt:
        uvicorn.run(
            create_app(rt.container),
            host=settings.host,
            port=settings.port,
            log_config=None,
            proxy_headers=False,
        )


def run_worker(settings: Settings) -> None:
    with runtime(settings, with_emulator=False) as rt:
        worker = dramatiq.Worker(rt.container.broker, worker_threads=settings.worker_threads)
        stop = threading.Event()
        install_signal_handlers(stop)
        worker.start()
        log.info("worker.started", threads=settings.worker_threads)
        stop.wait()
        worker.stop()


def run_scheduler(settings: Settings) -> None:
    with runtime(settings, with_emulator=False) as rt:
        stop = threading.Event()
        install_signal_handlers(stop)
        run_forever(rt.container, stop, settings.scheduler_interval_seconds)


def _operator_settings(settings: Settings) -> Settings:
    """An operator command beside `vznos run` talks to that run's emulator."""
    if settings.uses_emulator and settings.yookassa_api_url == YOOKASSA_API_URL:
        port = settings.emulator_port or settings.port + 1
        return settings.model_copy(update={"yookassa_api_url": f"http://{settings.host}:{port}/v3"})
    return settings


@contextmanager
def operator_container(settings: Settings) -> Iterator[Container]:
    with runtime(_operator_settings(settings), with_emulator=False) as rt:
        yield rt.container


def drain_in_process(container: Container) -> None:
    """With the in-process broker, an operator command does its queued work before exiting."""
    broker = container.broker
    if not isinstance(broker, StubBroker):
        return
    worker = dramatiq.Worker(broker, worker_threads=2)
    worker.start()
    try:
        for queue in (QUEUE_PAYMENTS, QUEUE_WEBHOOKS):
            broker.join(queue, fail_fast=True)
        worker.join()
    finally:
        worker.stop()


def billing_now(settings: Settings, period_month: date) -> BillingResult:
    with operator_container(settings) as container:
        result = container.billing.run(period_month)
        drain_in_process(container)
        return result
