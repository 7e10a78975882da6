"""One HTTP attempt at a CRM endpoint: Standard Webhooks signatures, SSRF-vetted and pinned.

The request goes to the address the guard just vetted, not to whatever the name resolves to a
moment later: the URL's host is replaced by that address, the `Host` header and the TLS SNI
(and so certificate verification) keep the original name.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from core.ssrf import UnsafeUrl, UrlGuard

MAX_LOGGED_BODY_BYTES = 1024
USER_AGENT = "Vznos-Webhooks/1"


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    outcome: str  # ok | http_error | gone | redirect | timeout | connect_error | blocked_target
    duration_ms: int
    response_body: str | None
    retry_after_seconds: int | None

    @property
    def succeeded(self) -> bool:
        return self.outcome == "ok"


def envelope(
    *,
    event_id: str,
    event_type: str,
    occurred_at: datetime,
    organization_id: str,
    data: dict[str, Any],
) -> str:
    """The delivery body. Compact and key-sorted, so it is the same bytes on every retry."""
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
            "organization_id": organization_id,
            "data": data,
        },
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """`v1,<sig>` per secret, space-separated: during rotation both the old and new secret
    sign, so a CRM that has either one verifies."""
    return " ".join(Webhook(secret).sign(msg_id, timestamp, body) for secret in secrets)


def parse_retry_after(value: str | None, now: datetime) -> int | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0, int((when - now).total_seconds()))


def _clipped(content: bytes) -> str:
    return content[:MAX_LOGGED_BODY_BYTES].decode("utf-8", errors="replace")


class WebhookSender:
    def __init__(
        self,
        *,
        guard: UrlGuard,
        http: httpx.Client | None = None,
        connect_timeout_seconds: float = 5.0,
        read_timeout_seconds: float = 15.0,
    ) -> None:
        self._guard = guard
        self._http = http or httpx.Client(
            timeout=httpx.Timeout(
                connect=connect_timeout_seconds,
                read=read_timeout_seconds,
                write=read_timeout_seconds,
                pool=connect_timeout_seconds,
            ),
            # A redirect is a failed delivery (Standard Webhooks), and following one would
            # let a vetted URL hand us an unvetted address.
            follow_redirects=False,
            # No proxies from the environment: the connection must go where the guard allowed.
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
        )

    def close(self) -> None:
        self._http.close()

    def send(
        self,
        *,
        url: str,
        msg_id: str,
        body: str,
        secrets: Sequence[str],
        timestamp: datetime,
    ) -> Outcome:
        started = time.monotonic()

        def outcome(
            kind: str,
            status: int | None = None,
            content: bytes | None = None,
            retry_after: int | None = None,
        ) -> Outcome:
            elapsed = int((time.monotonic() - started) * 1000)
            text = _clipped(content) if content is not None else None
            return Outcome(status, kind, elapsed, text, retry_after)

        try:
            target = self._guard.vet(url)
        except UnsafeUrl as exc:
            return outcome("blocked_target", content=exc.detail.encode())
        host_header = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
        # Pin the vetted address: a second lookup by the HTTP stack could be rebound.
        request_url = httpx.URL(url).copy_with(host=str(target.address))
        headers = {
            "Host": host_header,
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
        }
        try:
            with self._http.stream(
                "POST",
                request_url,
                content=body.encode(),
                headers=headers,
                extensions={"sni_hostname": target.host},
            ) as response:
                content = _read_some(response)
        except httpx.TimeoutException:
            return outcome("timeout")
        except httpx.TransportError as exc:
            return outcome("connect_error", content=type(exc).__name__.encode())
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"), timestamp)
        if 200 <= status < 300:
            kind = "ok"
        elif status == 410:
            kind = "gone"
        elif 300 <= status < 400:
            kind = "redirect"
        else:
            kind = "http_error"
        return outcome(kind, status, content, retry_after)


def _read_some(response: httpx.Response) -> bytes:
    """At most the logged 1 KiB: a hostile endpoint cannot make us buffer a huge answer."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_LOGGED_BODY_BYTES:
            break
    return b"".join(chunks)[:MAX_LOGGED_BODY_BYTES]
