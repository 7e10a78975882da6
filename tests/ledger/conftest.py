"""A union tree to keep books for: federation → sectoral → territorial → primary (ppo-1)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest

from members.schemas import OrganizationCreate
from tests.conftest import with_idempotency_key
from vznos.container import Container


@dataclass(frozen=True)
class Tree:
    federation: uuid.UUID
    sectoral: uuid.UUID
    territorial: uuid.UUID
    primary: uuid.UUID


@pytest.fixture
def tree(container: Container) -> Tree:
    made = {}
    parent = None
    for code, name in (
        ("fed", "Федерация"),
        ("sect", "Отраслевой профсоюз"),
        ("terr", "Территориальная организация"),
        ("ppo-1", "Первичная организация"),
    ):
        org = container.organizations.create(
            OrganizationCreate(code=code, name=name, parent_code=parent), None
        )
        made[code] = org.id
        parent = code
    return Tree(made["fed"], made["sect"], made["terr"], made["ppo-1"])


@pytest.fixture
def fed_key(container: Container, tree: Tree) -> str:
    return container.access.create_api_key("fed", "federation CRM", ["admin"])[1]


@pytest.fixture
def books(api_server: object, fed_key: str) -> httpx.Client:
    """The API as a federation-level CRM (it sees the whole tree)."""
    from core.serving import BackgroundServer

    assert isinstance(api_server, BackgroundServer)

    return httpx.Client(
        base_url=api_server.url,
        headers={"Authorization": f"Bearer {fed_key}"},
        timeout=30,
        event_hooks={"request": [with_idempotency_key]},
    )
