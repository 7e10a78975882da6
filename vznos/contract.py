"""The API contract: `openapi.yaml` is what the application generates, kept equal by a test."""

from __future__ import annotations

from typing import Any

import yaml

from core.settings import Settings
from vznos.app import create_app
from vznos.broker import build_broker
from vznos.container import GatewayConfig, build_container


def generated_openapi() -> dict[str, Any]:
    # Building the app connects to nothing: engines and HTTP clients are lazy.
    container = build_container(
        Settings(broker_url=None, database_url=None),
        database_url="postgresql+psycopg://contract@localhost/contract",
        gateway=GatewayConfig("contract", "contract", "http://localhost/v3"),
        broker=build_broker(None),
    )
    try:
        schema: dict[str, Any] = create_app(container).openapi()
        return schema
    finally:
        container.close()


def render_openapi() -> str:
    return yaml.safe_dump(generated_openapi(), sort_keys=False, allow_unicode=True, width=100)
