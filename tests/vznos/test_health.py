from __future__ import annotations

import httpx

from core.serving import BackgroundServer


def test_health_and_readiness(api_server: BackgroundServer) -> None:
    with httpx.Client(base_url=api_server.url) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}
        missing = http.get("/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
