"""Delivers YooKassa-style HTTP notifications from a background thread.

Only HTTP 200 acknowledges (as with YooKassa); anything else is retried on a short, configurable
schedule and then given up, so a test never waits YooKassa's real 24 hours.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

logger = logging.getLogger(__name__)

DEFAULT_BACKOFF: tuple[float, ...] = (0.5, 2.0, 5.0)


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    url: str = field(compare=False)
    payload: dict[str, Any] = field(compare=False)
    attempt: int = field(default=0, compare=False)


@dataclass(frozen=True)
class DeliveryRecord:
    """One attempt, kept so tests and operators can see what was sent and how it went."""

    url: str
    event: str
    object_id: str
    attempt: int
    status_code: int | None
    error: str | None


class Notifier:
    def __init__(self, backoff: Sequence[float] = DEFAULT_BACKOFF, timeout: float = 5.0) -> None:
        self.backoff = tuple(backoff)
        self._timeout = timeout
        self._cond = threading.Condition()
        self._heap: list[_Delivery] = []
        self._seq = itertools.count()
        self._unfinished = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._history: list[DeliveryRecord] = []

    def enqueue(self, url: str, event: str, obj: dict[str, Any]) -> None:
        payload = {"type": "notification", "event": event, "object": copy.deepcopy(obj)}
        with self._cond:
            if self._closed:
                logger.warning("notifier closed; dropping %s for %s", event, obj.get("id"))
                return
            heapq.heappush(self._heap, _Delivery(time.monotonic(), next(self._seq), url, payload))
            self._unfinished += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="yookassa-emulator-notifier", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Waits until every queued notification is delivered or given up; False on timeout."""
        with self._cond:
            done = self._cond.wait_for(lambda: self._unfinished == 0, timeout)
        if not done:
            logger.warning("notifications still pending after %.1f s", timeout)
        return done

    def history(self) -> list[DeliveryRecord]:
        with self._cond:
            return list(self._history)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._unfinished -= len(self._heap)
            self._heap.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 1)

    def _next_due(self) -> _Delivery | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._heap:
                    wait = self._heap[0].due - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._heap)
                    self._cond.wait(wait)
                else:
                    self._cond.wait()

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout) as client:
            while (delivery := self._next_due()) is not None:
                self._attempt(client, delivery)

    def _attempt(self, client: httpx.Client, delivery: _Delivery) -> None:
        status: int | None = None
        error: str | None = None
        try:
            status = client.post(delivery.url, json=delivery.payload).status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        event = str(delivery.payload["event"])
        object_id = str(delivery.payload["object"].get("id", ""))
        record = DeliveryRecord(delivery.url, event, object_id, delivery.attempt, status, error)
        with self._cond:
            self._history.append(record)
            if status == 200:
                self._unfinished -= 1
            elif delivery.attempt < len(self.backoff):
                delivery.due = time.monotonic() + self.backoff[delivery.attempt]
                delivery.attempt += 1
                heapq.heappush(self._heap, delivery)
            else:
                self._unfinished -= 1
                logger.warning(
                    "giving up notification %s for %s to %s after %d attempts (last: %s)",
                    event,
                    object_id,
                    delivery.url,
                    delivery.attempt + 1,
                    error or status,
                )
            self._cond.notify_all()
