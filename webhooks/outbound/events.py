"""The delivery bodies the CRM receives, one schema per event type, each with an example
(published as OpenAPI `webhooks` by `webhooks/outbound/contract.py`).

Every body is the envelope `{id, type, occurred_at, organization_id, data}`; `data` is the
event's thin payload (ids, the CRM's member id, amounts, statuses, reasons; never names, emails
or phones). Schemas describe what the code emits (a test checks real payloads against them);
CRMs must ignore keys they do not know, since new ones may be added.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.money import MoneyOut
from core.outbox import EventType
from payments.charges.states import ChargeStatus
from payments.standby.states import LatePayrollRule, UncoveredReason
from payments.subscriptions.states import Cause, SubscriptionStatus
from webhooks.outbound.states import DisabledReason

Period = Annotated[str, Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", examples=["2026-12"])]
ExternalId = Annotated[
    str | None, Field(description="The CRM's own member id", examples=["m-1024"])
]

# -- data: the payload of each event type ---------------------------------------------------


class SubscriptionEventData(BaseModel):
    subscription_id: uuid.UUID
    member_id: uuid.UUID
    member_external_id: ExternalId
    status: SubscriptionStatus
    previous_status: SubscriptionStatus
    cause: Cause
    amount: MoneyOut
    billing_day: int | None
    reason: str | None = Field(
        default=None, description="The gateway's decline reason, when a decline caused it"
    )
    paused_until: date | None = Field(
        default=None, description="`subscription.paused` only: null means until resumed"
    )
    action: Literal["save_new_card"] | None = Field(
        default=None, description="`subscription.needs_payment_method` only"
    )


class SubscriptionChangedData(BaseModel):
    subscription_id: uuid.UUID
    member_id: uuid.UUID
    member_external_id: ExternalId
    amount: MoneyOut
    effective_from: Period


class ChargeUpcomingData(BaseModel):
    charge_id: uuid.UUID | None = Field(
        default=None, description="Absent for a payroll shortfall's charge (see shortfall_id)"
    )
    subscription_id: uuid.UUID
    member_id: uuid.UUID
    member_external_id: ExternalId
    period: Period
    amount: MoneyOut
    charge_on: date
    charge_not_before: datetime | None = None
    shortfall_id: uuid.UUID | None = Field(
        default=None, description="Present when the charge covers a payroll shortfall"
    )


class PaymentEventData(BaseModel):
    charge_id: uuid.UUID
    subscription_id: uuid.UUID
    member_id: uuid.UUID
    member_external_id: ExternalId
    period: Period
    amount: MoneyOut
    status: ChargeStatus
    gateway_payment_id: str | None
    reason: str | None = Field(default=None, description="`payment.failed`: the decline reason")


class PaymentRefundedData(BaseModel):
    charge_id: uuid.UUID
    subscription_id: uuid.UUID
    member_id: uuid.UUID
    member_external_id: ExternalId
    period: Period
    amount: MoneyOut = Field(description="The payment's amount")
    gateway_payment_id: str | None
    refund_id: uuid.UUID
    refunded: MoneyOut = Field(description="This refund")
    refunded_total: MoneyOut = Field(description="Every refund of the payment so far")


class Card(BaseModel):
    last4: str | None
    expiry_month: int | None
    expiry_year: int | None


class CardExpiringData(BaseModel):
    subscription_id: uuid.UUID
    member_id: uuid.UUID
    member_external_id: ExternalId
    card: Card
    next_charge_on: date


class ArrearsChangedData(BaseModel):
    member_id: uuid.UUID
    member_external_id: ExternalId
    months_owed: int = Field(ge=0, description="Months accrued and not fully paid")
    amount_owed: MoneyOut = Field(description="What those months still owe")
    oldest_unpaid_period: Period | None
    previous_months_owed: int = Field(ge=0)
    previous_amount_owed: MoneyOut


class ShortfallUncoveredData(BaseModel):
    shortfall_id: uuid.UUID
    member_id: uuid.UUID
    member_external_id: ExternalId
    period: Period
    amount: MoneyOut
    reason: UncoveredReason


class LatePayrollData(BaseModel):
    shortfall_id: uuid.UUID
    member_id: uuid.UUID
    member_external_id: ExternalId
    period: Period
    charge_id: uuid.UUID
    credit: MoneyOut
    rule: LatePayrollRule
    applied: LatePayrollRule
    refund_id: str | None


class EndpointDisabledData(BaseModel):
    endpoint_id: uuid.UUID
    reason: DisabledReason
    failing_since: datetime | None


# -- examples ---------------------------------------------------------------------------------

_ORG = "8a0c2f4e-1b7d-4c61-9f3e-2d5a6b7c8d90"
_MEMBER = {
    "member_id": "3f1e9c2a-7b4d-4e8f-a1c2-d3e4f5a6b7c8",
    "member_external_id": "m-1024",
}
_SUBSCRIPTION = {"subscription_id": "5b6c7d8e-9f01-4a2b-8c3d-4e5f6a7b8c9d", **_MEMBER}
_RUB_350 = {"value": "350.00", "currency": "RUB"}
_CHARGE = {
    "charge_id": "0d1e2f3a-4b5c-4d6e-8f7a-8b9c0d1e2f3a",
    **_SUBSCRIPTION,
    "period": "2026-12",
    "amount": _RUB_350,
    "gateway_payment_id": "2f6b1c3a-000f-5000-9000-1a2b3c4d5e6f",
}
_SUBSCRIPTION_CHANGE = {**_SUBSCRIPTION, "amount": _RUB_350, "billing_day": 5}

EXAMPLES: dict[EventType, dict[str, Any]] = {
    EventType.SUBSCRIPTION_ACTIVATED: {
        **_SUBSCRIPTION_CHANGE,
        "status": "active",
        "previous_status": "pending_confirmation",
        "cause": "first_payment_succeeded",
    },
    EventType.SUBSCRIPTION_PAST_DUE: {
        **_SUBSCRIPTION_CHANGE,
        "status": "past_due",
        "previous_status": "active",
        "cause": "charge_declined",
        "reason": "insufficient_funds",
    },
    EventType.SUBSCRIPTION_CANCELED: {
        **_SUBSCRIPTION_CHANGE,
        "status": "canceled",
        "previous_status": "active",
        "cause": "by_crm",
    },
    EventType.SUBSCRIPTION_NEEDS_PAYMENT_METHOD: {
        **_SUBSCRIPTION_CHANGE,
        "status": "needs_payment_method",
        "previous_status": "past_due",
        "cause": "card_expired",
        "action": "save_new_card",
    },
    EventType.SUBSCRIPTION_PAUSED: {
        **_SUBSCRIPTION_CHANGE,
        "status": "paused",
        "previous_status": "active",
        "cause": "paused_by_crm",
        "paused_until": "2027-03-01",
    },
    EventType.SUBSCRIPTION_RESUMED: {
        **_SUBSCRIPTION_CHANGE,
        "status": "active",
        "previous_status": "paused",
        "cause": "resume_date_reached",
    },
    EventType.SUBSCRIPTION_STANDBY: {
        **_SUBSCRIPTION_CHANGE,
        "status": "standby",
        "previous_status": "pending_confirmation",
        "cause": "card_saved",
    },
    EventType.SUBSCRIPTION_CHANGED: {
        **_SUBSCRIPTION,
        "amount": {"value": "400.00", "currency": "RUB"},
        "effective_from": "2027-01",
    },
    EventType.CHARGE_UPCOMING: {
        **{k: v for k, v in _CHARGE.items() if k != "gateway_payment_id"},
        "charge_on": "2026-12-05",
        "charge_not_before": "2026-12-05T06:00:00+00:00",
    },
    EventType.PAYMENT_SUCCEEDED: {**_CHARGE, "status": "succeeded"},
    EventType.PAYMENT_FAILED: {**_CHARGE, "status": "failed", "reason": "insufficient_funds"},
    EventType.PAYMENT_REFUNDED: {
        **_CHARGE,
        "refund_id": "7c8d9e0f-1a2b-4c3d-9e4f-5a6b7c8d9e0f",
        "refunded": {"value": "150.00", "currency": "RUB"},
        "refunded_total": {"value": "150.00", "currency": "RUB"},
    },
    EventType.CARD_EXPIRING: {
        **_SUBSCRIPTION,
        "card": {"last4": "4444", "expiry_month": 12, "expiry_year": 2026},
        "next_charge_on": "2027-01-05",
    },
    EventType.MEMBER_ARREARS_CHANGED: {
        **_MEMBER,
        "months_owed": 2,
        "amount_owed": {"value": "700.00", "currency": "RUB"},
        "oldest_unpaid_period": "2026-11",
        "previous_months_owed": 1,
        "previous_amount_owed": _RUB_350,
    },
    EventType.MEMBER_SHORTFALL_UNCOVERED: {
        "shortfall_id": "9e0f1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b",
        **_MEMBER,
        "period": "2026-12",
        "amount": _RUB_350,
        "reason": "no_standby_card",
    },
    EventType.SHORTFALL_LATE_PAYROLL: {
        "shortfall_id": "9e0f1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b",
        **_MEMBER,
        "period": "2026-12",
        "charge_id": _CHARGE["charge_id"],
        "credit": _RUB_350,
        "rule": "refund",
        "applied": "refund",
        "refund_id": "7c8d9e0f-1a2b-4c3d-9e4f-5a6b7c8d9e0f",
    },
    EventType.WEBHOOK_ENDPOINT_DISABLED: {
        "endpoint_id": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "reason": "failing",
        "failing_since": "2026-11-18T09:30:00+00:00",
    },
}


def example(event_type: EventType) -> dict[str, Any]:
    """A delivery body as the CRM receives it."""
    return {
        "id": "01937a5e-8b2c-7d4e-9f10-a1b2c3d4e5f6",
        "type": str(event_type),
        "occurred_at": "2026-12-05T06:00:02.512Z",
        "organization_id": _ORG,
        "data": EXAMPLES[event_type],
    }


# -- envelopes: one per event type, so each webhook names its exact `type` and `data` --------


class _Envelope(BaseModel):
    id: uuid.UUID = Field(
        description="The event's stable id, also sent as `webhook-id` on every retry and "
        "redelivery: deduplicate on it"
    )
    occurred_at: datetime
    organization_id: uuid.UUID = Field(description="The organisation the event belongs to")


def _examples(event_type: EventType) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example(event_type)]})


class SubscriptionActivated(_Envelope):
    model_config = _examples(EventType.SUBSCRIPTION_ACTIVATED)
    type: Literal["subscription.activated"]
    data: SubscriptionEventData


class SubscriptionPastDue(_Envelope):
    model_config = _examples(EventType.SUBSCRIPTION_PAST_DUE)
    type: Literal["subscription.past_due"]
    data: SubscriptionEventData


class SubscriptionCanceled(_Envelope):
    model_config = _examples(EventType.SUBSCRIPTION_CANCELED)
    type: Literal["subscription.canceled"]
    data: SubscriptionEventData


class SubscriptionNeedsPaymentMethod(_Envelope):
    model_config = _examples(EventType.SUBSCRIPTION_NEEDS_PAYMENT_METHOD)
    type: Literal["subscription.needs_payment_method"]
    data: SubscriptionEventData


class SubscriptionPaused(_Envelope):
    model_config = _examples(EventType.SUBSCRIPTION_PAUSED)
    type: Literal["subscription.paused"]
    data: SubscriptionEventData


class SubscriptionResumed(_Envelope):
    model_config = _examples(EventType.SUBSCRIPTION_RESUMED)
    type: Literal["subscription.resumed"]
    data: SubscriptionEventData


class SubscriptionStandby(_Envelope):
    model_config = _examples(EventType.SUBSCRIPTION_STANDBY)
    type: Literal["subscription.standby"]
    data: SubscriptionEventData


class SubscriptionChanged(_Envelope):
    model_config = _examples(EventType.SUBSCRIPTION_CHANGED)
    type: Literal["subscription.changed"]
    data: SubscriptionChangedData


class ChargeUpcoming(_Envelope):
    model_config = _examples(EventType.CHARGE_UPCOMING)
    type: Literal["charge.upcoming"]
    data: ChargeUpcomingData


class PaymentSucceeded(_Envelope):
    model_config = _examples(EventType.PAYMENT_SUCCEEDED)
    type: Literal["payment.succeeded"]
    data: PaymentEventData


class PaymentFailed(_Envelope):
    model_config = _examples(EventType.PAYMENT_FAILED)
    type: Literal["payment.failed"]
    data: PaymentEventData


class PaymentRefunded(_Envelope):
    model_config = _examples(EventType.PAYMENT_REFUNDED)
    type: Literal["payment.refunded"]
    data: PaymentRefundedData


class CardExpiring(_Envelope):
    model_config = _examples(EventType.CARD_EXPIRING)
    type: Literal["card.expiring"]
    data: CardExpiringData


class MemberArrearsChanged(_Envelope):
    model_config = _examples(EventType.MEMBER_ARREARS_CHANGED)
    type: Literal["member.arrears_changed"]
    data: ArrearsChangedData


class MemberShortfallUncovered(_Envelope):
    model_config = _examples(EventType.MEMBER_SHORTFALL_UNCOVERED)
    type: Literal["member.shortfall_uncovered"]
    data: ShortfallUncoveredData


class ShortfallLatePayroll(_Envelope):
    model_config = _examples(EventType.SHORTFALL_LATE_PAYROLL)
    type: Literal["payroll_shortfall.late_payroll"]
    data: LatePayrollData


class WebhookEndpointDisabled(_Envelope):
    model_config = _examples(EventType.WEBHOOK_ENDPOINT_DISABLED)
    type: Literal["webhook_endpoint.disabled"]
    data: EndpointDisabledData


ENVELOPES: dict[EventType, type[_Envelope]] = {
    EventType.SUBSCRIPTION_ACTIVATED: SubscriptionActivated,
    EventType.SUBSCRIPTION_PAST_DUE: SubscriptionPastDue,
    EventType.SUBSCRIPTION_CANCELED: SubscriptionCanceled,
    EventType.SUBSCRIPTION_NEEDS_PAYMENT_METHOD: SubscriptionNeedsPaymentMethod,
    EventType.SUBSCRIPTION_PAUSED: SubscriptionPaused,
    EventType.SUBSCRIPTION_RESUMED: SubscriptionResumed,
    EventType.SUBSCRIPTION_STANDBY: SubscriptionStandby,
    EventType.SUBSCRIPTION_CHANGED: SubscriptionChanged,
    EventType.CHARGE_UPCOMING: ChargeUpcoming,
    EventType.PAYMENT_SUCCEEDED: PaymentSucceeded,
    EventType.PAYMENT_FAILED: PaymentFailed,
    EventType.PAYMENT_REFUNDED: PaymentRefunded,
    EventType.CARD_EXPIRING: CardExpiring,
    EventType.MEMBER_ARREARS_CHANGED: MemberArrearsChanged,
    EventType.MEMBER_SHORTFALL_UNCOVERED: MemberShortfallUncovered,
    EventType.SHORTFALL_LATE_PAYROLL: ShortfallLatePayroll,
    EventType.WEBHOOK_ENDPOINT_DISABLED: WebhookEndpointDisabled,
}
