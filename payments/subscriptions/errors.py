from __future__ import annotations

from core.errors import Conflict, InvalidInput, NotFound


class SubscriptionNotFound(NotFound):
    type_slug = "subscription-not-found"
    title = "Subscription not found"


class LiveSubscriptionExists(Conflict):
    type_slug = "subscription-exists"
    title = "The member already has a live subscription"


class AmountOutOfRange(InvalidInput):
    type_slug = "amount-out-of-range"
    title = "Amount out of range"


class SubscriptionNotLive(Conflict):
    type_slug = "subscription-not-live"
    title = "Auto-pay is not on"


class NothingOverdue(Conflict):
    type_slug = "nothing-overdue"
    title = "Nothing is overdue"


class InvalidChange(InvalidInput):
    type_slug = "invalid-subscription-change"
    title = "Invalid subscription change"


class SubscriptionStateConflict(Conflict):
    type_slug = "subscription-state-conflict"
    title = "The subscription's status does not allow this"
