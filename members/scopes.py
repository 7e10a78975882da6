"""What an API key or a treasurer may do. `admin` includes every other scope."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    MEMBERS_WRITE = "members:write"
    SUBSCRIPTIONS_WRITE = "subscriptions:write"
    PAYMENTS_READ = "payments:read"
    REFUNDS_WRITE = "refunds:write"
    RECONCILIATION_WRITE = "reconciliation:write"
    WEBHOOKS_MANAGE = "webhooks:manage"
    ADMIN = "admin"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)


def grants(held: frozenset[str], wanted: str) -> bool:
    return wanted in held or Scope.ADMIN in held
