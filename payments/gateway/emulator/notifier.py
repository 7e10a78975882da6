"""Delivers YooKassa-style HTTP notifications from a background thread.

Only HTTP 200 acknowledges (as with YooKassa); anything else is retried on a short, configurable
schedule and then given up, so a test never waits YooKassa's real 24 hours.

YooKassa promises neither order nor uniqueness, so tests can script the next notifications to be
duplicated, delayed, reordered (held, then sent newest first) or dropped.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast, get_args

import httpx

logger = logging.getLogger(__name__)

DEFAULT_BACKOFF: tuple[float, ...] = (0.5, 2.0, 5.0)
# Held notifications leave in reverse order, this far apart, so one delivery thread keeps it.
_REORDER_GAP_SECONDS = 0.02

NotificationFaultKind = Literal["duplicate", "delay", "reorder", "drop"]
NOTIFICATION_FAULT_KINDS: tuple[str, ...] = get_args(NotificationFaultKind)


@dataclass
class NotificationFault:
    """Applies to the next `times` notifications whose event starts with `event`."""

    kind: NotificationFaultKind
    event: str = ""
    times: int = 1
    copies: int = 2  # duplicate: how many deliveries in all
    seconds: float = 0.0  # delay

    def __post_init__(self) -> None:
        if self.kind not in NOTIFICATION_FAULT_KINDS:
            raise ValueError(
                f"unknown notification fault {self.kind!r}; known: {NOTIFICATION_FAULT_KINDS}"
            )
        if self.times < 1 or self.copies < 1 or self.seconds < 0:
            raise ValueError("times and copies must be at least 1, seconds not negative")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> NotificationFault:
        return cls(
            kind=cast(NotificationFaultKind, str(raw.get("kind", ""))),
            event=str(raw.get("event", "")),
            times=int(raw.get("times", 1)),
            copies=int(raw.get("copies", 2)),
            seconds=float(raw.get("seconds", 0.0)),
        )


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
        self._faults: list[NotificationFault] = []
        self._held: list[_Delivery] = []
        self.dropped = 0

    def script(self, fault: NotificationFault) -> None:
        with self._cond:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()
            self._release_held()

    def pending_faults(self) -> list[NotificationFault]:
        with self._cond:
            return [NotificationFault(**f.as_json()) for f in self._faults]

    def _take_fault(self, event: str) -> tuple[NotificationFault | None, bool]:
        """The fault for this notification, and whether it was the fault's last use."""
        for fault in self._faults:
            if event.startswith(fault.event):
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                    return fault, True
                return fault, False
        return None, False

    def enqueue(self, url: str, event: str, obj: dict[str, Any]) -> None:
        payload = {"type": "notification", "event": event, "object": copy.deepcopy(obj)}
        with self._cond:
            if self._closed:
                logger.warning("notifier closed; dropping %s for %s", event, obj.get("id"))
                return
            fault, last = self._take_fault(event)
            now = time.monotonic()
            kind = fault.kind if fault else None
            if kind == "drop":
                self.dropped += 1
                return
            copies = fault.copies if fault and kind == "duplicate" else 1
            due = now + (fault.seconds if fault and kind == "delay" else 0.0)
            for _ in range(copies):
                payload_copy = copy.deepcopy(payload)
                delivery = _Delivery(due, next(self._seq), url, payload_copy)
                self._unfinished += 1
                if kind == "reorder":
                    self._held.append(delivery)
                else:
                    heapq.heappush(self._heap, delivery)
            if kind == "reorder" and last:
                self._release_held()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="yookassa-emulator-notifier", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def _release_held(self) -> None:
        """Sends what `reorder` held back, newest first. Caller holds the lock."""
        now = time.monotonic()
        for i, delivery in enumerate(reversed(self._held)):
            delivery.due = now + i * _REORDER_GAP_SECONDS
            heapq.heappush(self._heap, delivery)
        self._held.clear()
        self._cond.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Waits until every queued notification is delivered or given up; False on timeout.
        Notifications still held for reordering are released first."""
        with self._cond:
            self._release_held()
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
            self._unfinished -= len(self._heap) + len(self._held)
            self._heap.clear()
            self._held.clear()
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
