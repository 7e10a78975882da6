"""The one way a status changes: through a transition table that rejects illegal moves."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

S = TypeVar("S", bound=StrEnum)


class IllegalTransition(Exception):
    def __init__(self, machine: str, current: StrEnum, target: StrEnum) -> None:
        super().__init__(f"{machine}: {current} → {target} is not allowed")
        self.current = current
        self.target = target


def check_transition(machine: str, table: Mapping[S, frozenset[S]], current: S, target: S) -> S:
    if target not in table.get(current, frozenset()):
        raise IllegalTransition(machine, current, target)
    return target
