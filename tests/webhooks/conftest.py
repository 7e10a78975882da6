"""Webhook fixtures: an application whose inbox believes a given sender policy."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

from core.networks import YOOKASSA_NOTIFICATION_NETWORKS, parse_networks
from core.serving import BackgroundServer
from tests.conftest import SHOP_ID
from vznos.container import Container
from webhooks.inbound.policy import InboundPolicy
from webhooks.inbound.service import InboxService

PUBLISHED = parse_networks(YOOKASSA_NOTIFICATION_NETWORKS)


def with_policy(container: Container, policy: InboundPolicy) -> Container:
    """The same services, with an inbox that judges senders by `policy`. The worker's task
    still runs the original inbox's `process`, which does not depend on the policy."""
    inbox = InboxService(
        sessions=container.sessions,
        clock=container.clock,
        queue=container.queue,
        charges=container.charges,
        refunds=container.refunds,
        standby=container.standby,
        default_shop_id=SHOP_ID,
        policy=policy,
    )
    return dataclasses.replace(container, inbox=inbox)


ServeWith = Callable[[InboundPolicy], BackgroundServer]


@pytest.fixture
def serve_with(container: Container) -> Iterator[ServeWith]:
    """Serve the real application (uvicorn on loopback) with an inbox believing `policy`."""
    from vznos.app import create_app

    servers: list[BackgroundServer] = []

    def serve(policy: InboundPolicy) -> BackgroundServer:
        server = BackgroundServer(create_app(with_policy(container, policy)), name="vznos-api")
        server.start()
        servers.append(server)
        return server

    try:
        yield serve
    finally:
        for server in servers:
            server.stop()
