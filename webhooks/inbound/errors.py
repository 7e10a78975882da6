from __future__ import annotations

from core.errors import DomainError, Forbidden, InvalidInput, NotFound


class InvalidNotification(InvalidInput):
    status = 400
    type_slug = "invalid-notification"
    title = "Not a gateway notification"


class UnknownPayment(NotFound):
    type_slug = "unknown-payment"
    title = "Notification names an unknown payment"


class ForbiddenSender(Forbidden):
    # The detail names no networks: a forger learns nothing about the allow-list.
    type_slug = "forbidden-sender"
    title = "Not accepted from this sender"


class NotificationTooLarge(DomainError):
    status = 413
    type_slug = "notification-too-large"
    title = "Notification too large"


class UnknownInboxItem(NotFound):
    type_slug = "unknown-inbox-item"
    title = "No such inbox item"
