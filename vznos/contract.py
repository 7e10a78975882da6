"""The API contract: `openapi.yaml` is what the application generates, kept equal by a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml
from fastapi import FastAPI

from core.settings import Settings
from vznos.app import create_app
from vznos.broker import build_broker
from vznos.container import GatewayConfig, build_container


@contextmanager
def built_app() -> Iterator[FastAPI]:
    # Building the app connects to nothing: engines and HTTP clients are lazy.
    container = build_container(
        Settings(broker_url=None, database_url=None),
        database_url="postgresql+psycopg://contract@localhost/contract",
        gateway=GatewayConfig("contract", "contract", "http://localhost/v3"),
        broker=build_broker(None),
    )
    try:
        yield create_app(container)
    finally:
        container.close()


def generated_openapi() -> dict[str, Any]:
    with built_app() as app:
        schema: dict[str, Any] = app.openapi()
        return schema


def render_openapi() -> str:
    return yaml.safe_dump(generated_openapi(), sort_keys=False, allow_unicode=True, width=100)
