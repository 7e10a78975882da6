"""The events the CRM receives, published in `openapi.yaml` as OpenAPI 3.1 `webhooks`: one
operation per event type, with the delivery body's schema and an example.

These operations document what Vznos sends; nothing is served at these names. Included into
`app.webhooks` by `vznos/app.py`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from core.outbox import EventType
from webhooks.outbound.catalog import PAYLOADS
from webhooks.outbound.events import (
    CardExpiring,
    ChargeUpcoming,
    MemberArrearsChanged,
    MemberShortfallUncovered,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    ShortfallLatePayroll,
    SubscriptionActivated,
    SubscriptionCanceled,
    SubscriptionChanged,
    SubscriptionNeedsPaymentMethod,
    SubscriptionPastDue,
    SubscriptionPaused,
    SubscriptionResumed,
    SubscriptionStandby,
    WebhookEndpointDisabled,
)

DELIVERY = (
    "Sent as a signed POST (Standard Webhooks: `webhook-id`, `webhook-timestamp`, "
    "`webhook-signature`) to every active endpoint of the organisation's lineage that hears "
    "this type. Answer 2xx to acknowledge; anything else, a timeout or a redirect is retried "
    "for about three days with the same `webhook-id`; 410 disables the endpoint."
)


SUMMARIES: dict[EventType, str] = {
    EventType.SUBSCRIPTION_ACTIVATED: "Auto-pay started or is healthy again",
    EventType.SUBSCRIPTION_PAST_DUE: "A monthly charge was declined; retries follow",
    EventType.SUBSCRIPTION_CANCELED: "Auto-pay was canceled",
    EventType.SUBSCRIPTION_NEEDS_PAYMENT_METHOD: "The saved card can no longer be charged",
    EventType.SUBSCRIPTION_PAUSED: "Auto-pay was paused",
    EventType.SUBSCRIPTION_RESUMED: "Auto-pay came back from a pause",
    EventType.SUBSCRIPTION_STANDBY: "A standby card was saved",
    EventType.SUBSCRIPTION_CHANGED: "The monthly amount changes from a month on",
    EventType.CHARGE_UPCOMING: "A card charge is coming (the pre-charge notice)",
    EventType.PAYMENT_SUCCEEDED: "A card payment went through",
    EventType.PAYMENT_FAILED: "A card payment failed",
    EventType.PAYMENT_REFUNDED: "A card payment was refunded, in part or in full",
    EventType.CARD_EXPIRING: "The saved card expires before the next charge",
    EventType.MEMBER_ARREARS_CHANGED: "What the member owes changed",
    EventType.MEMBER_SHORTFALL_UNCOVERED: "A payroll shortfall has no card to cover it",
    EventType.SHORTFALL_LATE_PAYROLL: "Payroll paid a month the card had already paid",
    EventType.WEBHOOK_ENDPOINT_DISABLED: "A webhook endpoint was disabled",
}


def _operation(event_type: EventType) -> dict[str, Any]:
    return {
        "summary": SUMMARIES[event_type],
        "description": f"`data`: {PAYLOADS[event_type]}\n\n{DELIVERY}",
        "operation_id": f"webhook_{event_type.replace('.', '_')}",
        "response_class": Response,
        "status_code": 200,
        "responses": {
            200: {"description": "Acknowledged (any 2xx)"},
            410: {"description": "Gone: Vznos disables the endpoint and stops sending"},
            "4XX": {"description": "Not acknowledged: retried on the schedule"},
            "5XX": {"description": "Not acknowledged: retried on the schedule"},
        },
    }


def build_webhooks_router() -> APIRouter:
    """The outbound events as webhook operations, for `app.webhooks`."""
    router = APIRouter(tags=["events"])

    @router.post(
        EventType.SUBSCRIPTION_ACTIVATED,
        **_operation(EventType.SUBSCRIPTION_ACTIVATED),
    )
    def subscription_activated(event: SubscriptionActivated) -> None: ...

    @router.post(
        EventType.SUBSCRIPTION_PAST_DUE,
        **_operation(EventType.SUBSCRIPTION_PAST_DUE),
    )
    def subscription_past_due(event: SubscriptionPastDue) -> None: ...

    @router.post(
        EventType.SUBSCRIPTION_CANCELED,
        **_operation(EventType.SUBSCRIPTION_CANCELED),
    )
    def subscription_canceled(event: SubscriptionCanceled) -> None: ...

    @router.post(
        EventType.SUBSCRIPTION_NEEDS_PAYMENT_METHOD,
        **_operation(EventType.SUBSCRIPTION_NEEDS_PAYMENT_METHOD),
    )
    def subscription_needs_payment_method(event: SubscriptionNeedsPaymentMethod) -> None: ...

    @router.post(
        EventType.SUBSCRIPTION_PAUSED,
        **_operation(EventType.SUBSCRIPTION_PAUSED),
    )
    def subscription_paused(event: SubscriptionPaused) -> None: ...

    @router.post(
        EventType.SUBSCRIPTION_RESUMED,
        **_operation(EventType.SUBSCRIPTION_RESUMED),
    )
    def subscription_resumed(event: SubscriptionResumed) -> None: ...

    @router.post(
        EventType.SUBSCRIPTION_STANDBY,
        **_operation(EventType.SUBSCRIPTION_STANDBY),
    )
    def subscription_standby(event: SubscriptionStandby) -> None: ...

    @router.post(
        EventType.SUBSCRIPTION_CHANGED,
        **_operation(EventType.SUBSCRIPTION_CHANGED),
    )
    def subscription_changed(event: SubscriptionChanged) -> None: ...

    @router.post(
        EventType.CHARGE_UPCOMING,
        **_operation(EventType.CHARGE_UPCOMING),
    )
    def charge_upcoming(event: ChargeUpcoming) -> None: ...

    @router.post(
        EventType.PAYMENT_SUCCEEDED,
        **_operation(EventType.PAYMENT_SUCCEEDED),
    )
    def payment_succeeded(event: PaymentSucceeded) -> None: ...

    @router.post(EventType.PAYMENT_FAILED, **_operation(EventType.PAYMENT_FAILED))
    def payment_failed(event: PaymentFailed) -> None: ...

    @router.post(
        EventType.PAYMENT_REFUNDED,
        **_operation(EventType.PAYMENT_REFUNDED),
    )
    def payment_refunded(event: PaymentRefunded) -> None: ...

    @router.post(
        EventType.CARD_EXPIRING,
        **_operation(EventType.CARD_EXPIRING),
    )
    def card_expiring(event: CardExpiring) -> None: ...

    @router.post(
        EventType.MEMBER_ARREARS_CHANGED,
        **_operation(EventType.MEMBER_ARREARS_CHANGED),
    )
    def member_arrears_changed(event: MemberArrearsChanged) -> None: ...

    @router.post(
        EventType.MEMBER_SHORTFALL_UNCOVERED,
        **_operation(EventType.MEMBER_SHORTFALL_UNCOVERED),
    )
    def member_shortfall_uncovered(event: MemberShortfallUncovered) -> None: ...

    @router.post(
        EventType.SHORTFALL_LATE_PAYROLL,
        **_operation(EventType.SHORTFALL_LATE_PAYROLL),
    )
    def shortfall_late_payroll(event: ShortfallLatePayroll) -> None: ...

    @router.post(
        EventType.WEBHOOK_ENDPOINT_DISABLED,
        **_operation(EventType.WEBHOOK_ENDPOINT_DISABLED),
    )
    def webhook_endpoint_disabled(event: WebhookEndpointDisabled) -> None: ...

    return router
