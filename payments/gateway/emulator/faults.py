"""The fault seam: make the next N matching API requests misbehave.

A fault wraps the processing of one request. New kinds slot into `apply_fault` without touching the
engine: each kind decides whether to process, what to answer, and when.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast, get_args

from payments.gateway.emulator.errors import CODE_BY_STATUS, error_body

FaultKind = Literal["error_before", "error_after", "delay"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

Answer = tuple[int, dict[str, Any]]


@dataclass
class Fault:
    method: str
    path_prefix: str
    kind: FaultKind
    times: int = 1
    status: int = 500
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {FAULT_KINDS}")
        if self.times < 1:
            raise ValueError("times must be at least 1")
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
        return cls(
            method=str(raw["method"]),
            path_prefix=str(raw["path_prefix"]),
            kind=cast(FaultKind, kind),
            times=int(raw.get("times", 1)),
            status=int(raw.get("status", 500)),
            seconds=float(raw.get("seconds", 0.0)),
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


def _fault_answer(status: int) -> Answer:
    if status == 202:
        return 202, {
            "type": "processing",
            "description": "Request accepted but not processed yet (emulated fault)",
            "retry_after": 1800,
        }
    code = CODE_BY_STATUS.get(status, "internal_server_error")
    return status, error_body(code, "Emulated fault")


def apply_fault(fault: Fault | None, process: Callable[[], Answer]) -> Answer:
    """Runs `process` (one request's real work) as the fault dictates."""
    if fault is None:
        return process()
    if fault.kind == "error_before":
        return _fault_answer(fault.status)
    if fault.kind == "delay":
        time.sleep(fault.seconds)
        return process()
    if fault.kind == "error_after":
        # The work, including the stored idempotent answer, happens; only the reply is lost.
        process()
        return _fault_answer(fault.status)
    raise AssertionError(f"unhandled fault kind {fault.kind}")
