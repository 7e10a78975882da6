"""The fault seam: make the next N matching API requests misbehave.

A fault wraps the processing of one request. Each kind decides whether the request is processed,
what the client gets back, and when:

- `error_before`: answer `status` without processing (500, 429 with a `Retry-After` header, 202
  with `retry_after` in the body as YooKassa does);
- `error_after`: process (the payment exists, its key is stored), then answer `status`;
- `delay`: wait `seconds`, then process and answer (a client with a shorter read timeout gives
  up first, and the request is processed after it left);
- `delay_after`: process, then wait `seconds` before answering (slow reply past the timeout);
- `drop_before`: close the connection without processing and without an HTTP response;
- `drop_after`: process, then close the connection without an HTTP response (the reply is lost;
  the client sees a disconnect, not an HTTP error);
- `reset_mid_body`: process, send the status line, the headers (with the full Content-Length)
  and half of the body, then cut the connection (the client has begun to read a reply it never
  completes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast, get_args

from payments.gateway.emulator.errors import CODE_BY_STATUS, error_body

FaultKind = Literal[
    "error_before",
    "error_after",
    "delay",
    "delay_after",
    "drop_before",
    "drop_after",
    "reset_mid_body",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

# YooKassa's own default hint in a 202 body (milliseconds), and a modest 429 hint (seconds).
DEFAULT_RETRY_AFTER_MS = 1800
DEFAULT_RETRY_AFTER_SECONDS = 1

Answer = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class DropConnection(Exception):
    """The HTTP layer must close the connection without sending any response."""


class ResetMidBody(Exception):
    """The HTTP layer must send `reply`'s head and half its body, then cut the connection."""

    def __init__(self, reply: Reply) -> None:
        super().__init__("reset mid-body")
        self.reply = reply


@dataclass
class Fault:
    method: str
    path_prefix: str
    kind: FaultKind
    times: int = 1
    status: int = 500
    seconds: float = 0.0
    # The hint sent with a 202 (body `retry_after`, ms) or a 429 (`Retry-After` header, s).
    retry_after_ms: int | None = None
    retry_after_seconds: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {FAULT_KINDS}")
        if self.times < 1:
            raise ValueError("times must be at least 1")
        if self.seconds < 0:
            raise ValueError("seconds must not be negative")
        self.method = self.method.upper()

    def matches(self, method: str, path: str) -> bool:
        return method.upper() == self.method and path.startswith(self.path_prefix)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Fault:
        kind = str(raw.get("kind", ""))
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {FAULT_KINDS}")
        ms = raw.get("retry_after_ms")
        secs = raw.get("retry_after_seconds")
        return cls(
            method=str(raw["method"]),
            path_prefix=str(raw["path_prefix"]),
            kind=cast(FaultKind, kind),
            times=int(raw.get("times", 1)),
            status=int(raw.get("status", 500)),
            seconds=float(raw.get("seconds", 0.0)),
            retry_after_ms=int(ms) if ms is not None else None,
            retry_after_seconds=int(secs) if secs is not None else None,
        )


class FaultRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [Fault(**f.as_json()) for f in self._faults]

    def take(self, method: str, path: str) -> Fault | None:
        """Consumes one use of the first matching fault."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None


def fault_reply(fault: Fault) -> Reply:
    status = fault.status
    if status == 202:
        return Reply(
            202,
            {
                "type": "processing",
                "description": "Request accepted but not processed yet (emulated fault)",
                "retry_after": fault.retry_after_ms or DEFAULT_RETRY_AFTER_MS,
            },
            {},
        )
    code = CODE_BY_STATUS.get(status, "internal_server_error")
    headers: dict[str, str] = {}
    if status == 429 or fault.retry_after_seconds is not None:
        headers["Retry-After"] = str(fault.retry_after_seconds or DEFAULT_RETRY_AFTER_SECONDS)
    return Reply(status, error_body(code, "Emulated fault"), headers)


def apply_fault(fault: Fault | None, process: Callable[[], Answer]) -> Reply:
    """Runs `process` (one request's real work) as the fault dictates. Raises DropConnection
    when the client must get no response at all."""
    if fault is None:
        return Reply(*process(), {})
    if fault.kind == "error_before":
        return fault_reply(fault)
    if fault.kind == "drop_before":
        raise DropConnection
    if fault.kind == "delay":
        time.sleep(fault.seconds)
        return Reply(*process(), {})
    # The remaining kinds do the work, including the stored idempotent answer; only the reply
    # suffers.
    answer = process()
    if fault.kind == "error_after":
        return fault_reply(fault)
    if fault.kind == "delay_after":
        time.sleep(fault.seconds)
        return Reply(*answer, {})
    if fault.kind == "drop_after":
        raise DropConnection
    if fault.kind == "reset_mid_body":
        raise ResetMidBody(Reply(*answer, {}))
    raise AssertionError(f"unhandled fault kind {fault.kind}")
