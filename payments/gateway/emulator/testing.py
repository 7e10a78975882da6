"""Helpers for scripts and tests driving the emulator: complete a checkout, receive webhooks."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx

SUCCESS_CARD = "5555555555554444"
THREE_DS_FIELD = "three_ds_code"


def complete_checkout(
    confirmation_url: str,
    card_number: str = SUCCESS_CARD,
    expiry_month: str = "12",
    expiry_year: str = "2030",
    csc: str = "123",
    timeout: float = 10.0,
    three_ds: str = "confirm",
) -> httpx.Response:
    """Submits the checkout form as a member would; a success answers 303 to the return_url.
    When the issuer's 3-D Secure page follows, answers it too (`confirm` or `cancel`)."""
    form = {
        "card_number": card_number,
        "expiry_month": expiry_month,
        "expiry_year": expiry_year,
        "csc": csc,
    }
    answer = httpx.post(confirmation_url, data=form, follow_redirects=False, timeout=timeout)
    if answer.status_code == 200 and THREE_DS_FIELD in answer.text:
        answer = httpx.post(
            confirmation_url.rstrip("/") + "/3ds",
            data={THREE_DS_FIELD: "123456", "action": three_ds},
            follow_redirects=False,
            timeout=timeout,
        )
    return answer


@dataclass
class WebhookReceiver:
    """A local notification endpoint: records each POST, answers the next scripted status or 200."""

    host: str = "127.0.0.1"
    path: str = "/yookassa/webhook"
    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _httpd: ThreadingHTTPServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("receiver not started")
        return f"http://{self.host}:{self._httpd.server_address[1]}{self.path}"

    def events(self) -> list[str]:
        with self._lock:
            return [str(n["event"]) for n in self.received]

    def notifications(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.received)

    def _record(self, payload: dict[str, Any]) -> int:
        with self._lock:
            self.received.append(payload)
            status = self.statuses.pop(0) if self.statuses else 200
            self.answered.append(status)
            return status

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                status = receiver._record(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        self._httpd = ThreadingHTTPServer((self.host, 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
