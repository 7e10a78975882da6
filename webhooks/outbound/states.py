"""Lifecycles of a CRM webhook endpoint and of one event's delivery to it."""

from __future__ import annotations

from enum import StrEnum

from core.states import check_transition


class EndpointStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"  # by the CRM, by a 410, or after failing for days
    DELETED = "deleted"  # kept for the delivery log, invisible to the API


class DisabledReason(StrEnum):
    BY_CRM = "by_crm"
    GONE = "gone"  # the endpoint answered 410 Gone
    FAILING = "failing"  # every attempt failed for the whole threshold


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the retry schedule ran out, or the endpoint said 410
    CANCELED = "canceled"  # the endpoint was disabled or deleted before it succeeded


ENDPOINT_TRANSITIONS: dict[EndpointStatus, frozenset[EndpointStatus]] = {
    EndpointStatus.ACTIVE: frozenset({EndpointStatus.DISABLED, EndpointStatus.DELETED}),
    EndpointStatus.DISABLED: frozenset({EndpointStatus.ACTIVE, EndpointStatus.DELETED}),
    EndpointStatus.DELETED: frozenset(),
}

# A finished delivery starts over only when the CRM asks (redeliver, replay).
DELIVERY_TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.PENDING: frozenset(
        {DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED, DeliveryStatus.CANCELED}
    ),
    DeliveryStatus.SUCCEEDED: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.FAILED: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.CANCELED: frozenset({DeliveryStatus.PENDING}),
}


def endpoint_transition(current: EndpointStatus, target: EndpointStatus) -> EndpointStatus:
    return check_transition("webhook_endpoint", ENDPOINT_TRANSITIONS, current, target)


def delivery_transition(current: DeliveryStatus, target: DeliveryStatus) -> DeliveryStatus:
    return check_transition("webhook_delivery", DELIVERY_TRANSITIONS, current, target)
