"""Start-up: resolve the database (embedded or named), migrate, wire the gateway and services."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import structlog

from core.networks import LOOPBACK_NETWORKS, parse_networks
from core.settings import YOOKASSA_API_URL, Settings
from payments.gateway.emulator.server import EmulatorServer
from payments.gateway.emulator.state import EmulatorState
from vznos.container import Container, GatewayConfig, build_container
from vznos.embedded import EmbeddedPostgres
from vznos.keys import build_keyring
from vznos.migrate import upgrade

log = structlog.get_logger("vznos.runtime")

EMULATOR_SHOP_ID = "100500"
# The emulator's own test credentials: printed at start, they guard nothing real.
EMULATOR_SECRET_KEY = "test_vznos_emulator_secret"  # noqa: S105


@dataclass
class Runtime:
    container: Container
    emulator: EmulatorServer | None = None
    embedded_postgres: EmbeddedPostgres | None = None
    notes: dict[str, str] = field(default_factory=dict)


def resolve_database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    if settings.database_url:
        return settings.database_url, None
    embedded = EmbeddedPostgres(settings.data_dir / "postgres")
    return embedded.start(), embedded


def public_url(settings: Settings) -> str:
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


class ConfigurationError(Exception):
    pass


def gateway_config(settings: Settings) -> GatewayConfig:
    """The shop to talk to. Without credentials, a separately running `vznos emulator` named
    by VZNOS_YOOKASSA_API_URL (with the emulator's default shop) stands in for YooKassa."""
    if settings.yookassa_shop_id and settings.yookassa_secret_key:
        return GatewayConfig(
            settings.yookassa_shop_id,
            settings.yookassa_secret_key.get_secret_value(),
            settings.yookassa_api_url,
        )
    if settings.yookassa_api_url == YOOKASSA_API_URL:
        raise ConfigurationError(
            "set VZNOS_YOOKASSA_SHOP_ID and VZNOS_YOOKASSA_SECRET_KEY, or point "
            "VZNOS_YOOKASSA_API_URL at a running `vznos emulator` (…/v3)"
        )
    return GatewayConfig(EMULATOR_SHOP_ID, EMULATOR_SECRET_KEY, settings.yookassa_api_url)


@contextmanager
def runtime(settings: Settings, *, with_emulator: bool | None = None) -> Iterator[Runtime]:
    """Everything a process needs; the emulator only where no shop credentials are set."""
    database_url, embedded = resolve_database_url(settings)
    emulator: EmulatorServer | None = None
    try:
        keyring = build_keyring(settings)
        upgrade(database_url, keyring=keyring)
        if with_emulator is None:
            with_emulator = settings.uses_emulator
        if with_emulator:
            state = EmulatorState(shops={EMULATOR_SHOP_ID: EMULATOR_SECRET_KEY})
            state.set_notification_url(
                EMULATOR_SHOP_ID, public_url(settings) + "/webhooks/yookassa"
            )
            emulator = EmulatorServer(
                state, host=settings.host, port=settings.emulator_port or settings.port + 1
            )
            emulator.start()
            gateway = GatewayConfig(EMULATOR_SHOP_ID, EMULATOR_SECRET_KEY, emulator.api_url)
            # The in-process emulator posts its notifications from this machine: believe
            # loopback too, but only here, never when talking to the real YooKassa.
            settings = settings.model_copy(
                update={
                    "yookassa_notification_networks": (
                        *settings.yookassa_notification_networks,
                        *parse_networks(LOOPBACK_NETWORKS),
                    )
                }
            )
        else:
            gateway = gateway_config(settings)
        container = build_container(
            settings, database_url=database_url, gateway=gateway, keyring=keyring
        )
        try:
            yield Runtime(container=container, emulator=emulator, embedded_postgres=embedded)
        finally:
            container.close()
    finally:
        if emulator is not None:
            emulator.stop()
            emulator.state.close()
        if embedded is not None:
            embedded.stop()
