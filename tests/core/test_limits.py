"""Resource limits at the API edge (OWASP API4, reliability T25): body size, page size, per-key
rate limits; each a problem+json, nothing changed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import text

from core.limits import RateLimiter
from core.serving import BackgroundServer
from vznos.app import create_app
from vznos.container import Container

PROBLEM_JSON = "application/problem+json"


def test_a_body_over_the_limit_is_413(client: httpx.Client, container: Container) -> None:
    limit = container.settings.api_max_body_bytes
    body = b'{"code": "ppo-2", "name": "' + b"x" * limit + b'"}'
    answer = client.post(
        "/v1/organizations", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"].startswith(PROBLEM_JSON)
    assert answer.json()["field"] == "body"
    assert answer.json()["type"].endswith("/payload-too-large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield body[: limit // 2]
        yield body[limit // 2 :]

    streamed = client.post(
        "/v1/organizations", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    with container.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM organizations")).scalar_one() == 1


def test_a_page_over_100_is_422(client: httpx.Client) -> None:
    answer = client.get("/v1/payments", params={"member": "m-1", "limit": 101})
    assert answer.status_code == 422
    assert answer.json()["field"] == "limit"


@pytest.fixture
def limited_api(container: Container) -> Iterator[BackgroundServer]:
    container.rate_limiter = RateLimiter("5/minute")
    server = BackgroundServer(create_app(container), name="vznos-limited")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_too_many_requests_per_key_is_429_with_retry_after(
    limited_api: BackgroundServer, api_key: str
) -> None:
    with httpx.Client(
        base_url=limited_api.url, headers={"Authorization": f"Bearer {api_key}"}
    ) as http:
        answers = [http.get("/v1/webhook-endpoints") for _ in range(7)]
        assert [a.status_code for a in answers[:5]] == [200] * 5
        refused = answers[5]
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith(PROBLEM_JSON)
        assert refused.json()["type"].endswith("/rate-limited")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # Health checks are not the API: never limited.
        assert http.get("/healthz").status_code == 200
    # Another key has its own budget.
    with httpx.Client(
        base_url=limited_api.url, headers={"Authorization": "Bearer vz_not_a_key"}
    ) as other:
        assert other.get("/v1/webhook-endpoints").status_code == 401
