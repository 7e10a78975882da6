"""The port through which use cases ask for background work. Messages carry ids only."""

from __future__ import annotations

from typing import Protocol


class TaskQueue(Protocol):
    def enqueue(self, task: str, *, delay_seconds: float | None = None, **ids: str) -> None:
        """Ask for `task` to run with these ids. Losing a message delays work, never loses it."""
        ...
