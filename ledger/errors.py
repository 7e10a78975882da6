from __future__ import annotations

from core.errors import Conflict, InvalidInput, NotFound


class UnbalancedEntry(InvalidInput):
    type_slug = "ledger-unbalanced-entry"
    title = "Journal entry does not balance"


class IdempotencyKeyReused(Conflict):
    type_slug = "ledger-idempotency-key-reused"
    title = "Idempotency key already used for a different entry"


class PeriodClosed(Conflict):
    type_slug = "ledger-period-closed"
    title = "The accounting month is closed"


class InvalidShares(InvalidInput):
    type_slug = "ledger-invalid-shares"
    title = "Shares do not add up"


class EntryNotFound(NotFound):
    type_slug = "ledger-entry-not-found"
    title = "Journal entry not found"


class AlreadyReversed(Conflict):
    type_slug = "ledger-already-reversed"
    title = "The entry is already reversed"
