from __future__ import annotations

from core.errors import Conflict, NotFound


class WebhookEndpointNotFound(NotFound):
    type_slug = "webhook-endpoint-not-found"
    title = "Webhook endpoint not found"


class EventNotFound(NotFound):
    type_slug = "event-not-found"
    title = "Event not found"


class DeliveryNotFound(NotFound):
    type_slug = "delivery-not-found"
    title = "Delivery not found"


class WebhookEndpointDisabled(Conflict):
    type_slug = "webhook-endpoint-disabled"
    title = "Webhook endpoint is disabled"
