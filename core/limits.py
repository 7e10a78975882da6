"""Resource limits at the API edge (OWASP API4): request body size and per-caller rate limits.
Both answer with `application/problem+json` before any endpoint, database or thread runs.

Rate limits use the `limits` library: a moving window per caller, kept in this process's
memory by default (`memory://`), so every API process enforces the limit on its own. Behind
several processes either divide the limit by their number, or point the storage at Redis
(`redis://…`) to share one count.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import Any

import structlog
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import PayloadTooLarge, TooManyRequests
from core.http import PROBLEM_JSON
from core.idempotency import BODY_STATE

log = structlog.get_logger("limits")

# Content types that carry files (reconciliation imports) get the larger upload limit.
UPLOAD_MEDIA_TYPES = ("multipart/form-data", "text/csv", "application/octet-stream")


async def _refuse(send: Send, error: PayloadTooLarge | TooManyRequests) -> None:
    body = json.dumps(error.problem(), ensure_ascii=False).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class BodyLimit:
    """Read the whole body of an API request up to a limit (413 past it), keep it for the
    idempotency fingerprint, and hand it on unchanged."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, max_upload_bytes: int, prefix: str = "/v1/"
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_upload_bytes
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        content_type = (_header(scope, b"content-type") or "").lower()
        limit = (
            self.max_upload_bytes if content_type.startswith(UPLOAD_MEDIA_TYPES) else self.max_bytes
        )
        too_large = PayloadTooLarge(f"the body is larger than {limit} bytes", field="body")
        declared = _header(scope, b"content-length") or ""
        if declared.isdigit() and int(declared) > limit:
            log.info("request.refused", path=scope["path"], status=413, field="body")
            await _refuse(send, too_large)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                log.info("request.refused", path=scope["path"], status=413, field="body")
                await _refuse(send, too_large)
                return
            if not message.get("more_body", False):
                break
        data = bytes(body)
        scope.setdefault("state", {})[BODY_STATE] = data
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RateLimiter:
    """Per-caller limits like `"20/second;600/minute"`; the caller is its credential (a hash of
    the Authorization header) or, without one, its address."""

    def __init__(self, rules: str, storage_url: str = "memory://") -> None:
        self.items: list[RateLimitItem] = parse_many(rules)
        self.storage = storage_from_string(storage_url)
        self._strategy = MovingWindowRateLimiter(self.storage)
        self._local = isinstance(self.storage, MemoryStorage)

    def retry_after(self, identity: str) -> int | None:
        """Count one request; None when allowed, else the seconds to wait."""
        for item in self.items:
            if not self._strategy.hit(item, identity):
                reset_at, _remaining = self._strategy.get_window_stats(item, identity)
                return max(1, math.ceil(reset_at - time.time()))
        return None

    async def check(self, identity: str) -> int | None:
        if self._local:
            return self.retry_after(identity)
        return await run_in_threadpool(self.retry_after, identity)

    def reset(self) -> None:
        self.storage.reset()


class SignInThrottle:
    """Sign-in attempts counted per login and per client address: a password guesser is slowed
    on one account and across accounts, each answer a 429 with Retry-After."""

    def __init__(self, per_login: RateLimiter, per_address: RateLimiter) -> None:
        self.per_login = per_login
        self.per_address = per_address

    def check(self, login: str, address: str | None) -> None:
        waits = [
            self.per_login.retry_after(
                "login:" + hashlib.sha256(login.lower().encode()).hexdigest()
            ),
            self.per_address.retry_after("addr:" + (address or "unknown")),
        ]
        wait = max((w for w in waits if w is not None), default=None)
        if wait is not None:
            log.info("sign_in.rate_limited", retry_after_seconds=wait)
            raise TooManyRequests(
                f"too many sign-in attempts; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )


def caller_identity(scope: Scope) -> str:
    authorization = _header(scope, b"authorization")
    if authorization:
        return "key:" + hashlib.sha256(authorization.encode()).hexdigest()[:32]
    client: Any = scope.get("client")
    return "addr:" + (str(client[0]) if client else "unknown")


class RateLimit:
    def __init__(self, app: ASGIApp, *, limiter: RateLimiter, prefix: str = "/v1/") -> None:
        self.app = app
        self.limiter = limiter
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        wait = await self.limiter.check(caller_identity(scope))
        if wait is not None:
            log.info("request.rate_limited", path=scope["path"], retry_after_seconds=wait)
            await _refuse(
                send,
                TooManyRequests(
                    f"too many requests from this API key; retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                ),
            )
            return
        await self.app(scope, receive, send)
