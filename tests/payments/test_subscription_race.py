"""Ten CRM retries racing to start auto-pay for one member: one subscription, one payment."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from core.serving import BackgroundServer
from payments.gateway.emulator import EmulatorServer
from tests.conftest import with_idempotency_key


def test_concurrent_starts_make_one_subscription(
    client: httpx.Client,
    api_server: BackgroundServer,
    api_key: str,
    emulator: EmulatorServer,
    subscription_body: Callable[..., dict[str, object]],
) -> None:
    client.put("/v1/members/m-race", json={"organization_code": "ppo-1", "full_name": "Гонка"})

    def start(_: int) -> int:
        with httpx.Client(
            base_url=api_server.url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=30,
            event_hooks={"request": [with_idempotency_key]},
        ) as http:
            return http.post(
                "/v1/members/m-race/subscriptions", json=subscription_body()
            ).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = sorted(pool.map(start, range(10)))
    assert codes == [201] + [409] * 9
    assert len(emulator.state.payments()) == 1
