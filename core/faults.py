"""Named fault points, off unless a test (or `VZNOS_FAULTS`) arms them.

They let a test stop a process exactly between two lines that matter, e.g. after the gateway
answered and before the answer is committed, the way FoundationDB's `buggify` does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable


class SimulatedCrash(BaseException):
    """Raised at an armed fault point. A BaseException so that no `except Exception` hides it."""


class FaultPoints:
    def __init__(self, armed: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._armed: dict[str, int] = {name: 1 for name in armed if name}

    def arm(self, name: str, times: int = 1) -> None:
        with self._lock:
            self._armed[name] = times

    def disarm_all(self) -> None:
        with self._lock:
            self._armed.clear()

    def hit(self, name: str) -> None:
        with self._lock:
            remaining = self._armed.get(name, 0)
            if remaining <= 0:
                return
            self._armed[name] = remaining - 1
        raise SimulatedCrash(name)

    @classmethod
    def from_setting(cls, value: str) -> FaultPoints:
        return cls(part.strip() for part in value.split(","))
