"""The event catalogue the CRM subscribes to, with each payload's shape.

Every delivery body is the envelope
`{"id", "type", "occurred_at", "organization_id", "data"}`, where `id` is also the
`webhook-id` header. Payloads are thin on purpose (Standard Webhooks' advice, and union
membership is sensitive): ids, the CRM's own member id, amounts as
`{"value": "350.00", "currency": "RUB"}`, statuses, periods and reasons. Never names, emails
or phones; the CRM reads those through the authenticated API.
"""

from __future__ import annotations

from core.outbox import EventType

_SUBSCRIPTION = (
    "subscription_id, member_id, member_external_id, status, previous_status, cause, "
    "reason (the gateway's decline reason, when a decline caused it), "
    "amount {value, currency}, billing_day"
)
_PAYMENT = (
    "charge_id, subscription_id, member_id, member_external_id, period (YYYY-MM), "
    "amount {value, currency}, gateway_payment_id"
)

PAYLOADS: dict[EventType, str] = {
    EventType.SUBSCRIPTION_ACTIVATED: _SUBSCRIPTION
    + " — the first payment went through, a past-due month was paid, or a new card was saved"
    " (cause first_payment_succeeded | charge_succeeded | card_saved)",
    EventType.SUBSCRIPTION_PAST_DUE: _SUBSCRIPTION
    + " — a monthly charge was declined for a reason that may pass; retries follow",
    EventType.SUBSCRIPTION_CANCELED: _SUBSCRIPTION
    + " — cause by_member | by_crm | membership_ended | first_payment_failed",
    EventType.SUBSCRIPTION_NEEDS_PAYMENT_METHOD: _SUBSCRIPTION
    + ", action = save_new_card — the saved card can no longer be charged (cause card_declined"
    " | card_expired | retries_exhausted): ask the member for a new card",
    EventType.SUBSCRIPTION_PAUSED: _SUBSCRIPTION
    + ", paused_until (date or null: until resumed) — cause paused_by_crm",
    EventType.SUBSCRIPTION_RESUMED: _SUBSCRIPTION
    + " — back from a pause to the status it was paused from (cause resumed_by_crm |"
    " resume_date_reached)",
    EventType.SUBSCRIPTION_STANDBY: _SUBSCRIPTION
    + " — a card is saved with no payment, idle while payroll pays the dues",
    EventType.SUBSCRIPTION_CHANGED: (
        "subscription_id, member_id, member_external_id, amount {value, currency}, "
        "effective_from (YYYY-MM) — the monthly amount changes from that month"
    ),
    EventType.CHARGE_UPCOMING: (
        "charge_id, subscription_id, member_id, member_external_id, period, "
        "amount {value, currency}, charge_on (date), charge_not_before, shortfall_id (a payroll "
        "shortfall charge) — raised before every automatic charge; the charge waits for it"
    ),
    EventType.PAYMENT_SUCCEEDED: _PAYMENT + ", status = succeeded",
    EventType.PAYMENT_FAILED: _PAYMENT + ", status = failed, reason (the decline reason)",
    EventType.PAYMENT_REFUNDED: _PAYMENT
    + ", refund_id, refunded {value, currency} (this refund), refunded_total {value, currency}",
    EventType.CARD_EXPIRING: (
        "subscription_id, member_id, member_external_id, card {last4, expiry_month, expiry_year},"
        " next_charge_on — once per card that expires before the next charge"
    ),
    EventType.MEMBER_ARREARS_CHANGED: (
        "member_id, member_external_id, months_owed (months not fully paid), amount_owed "
        "{value, currency} (what those months still owe), oldest_unpaid_period (YYYY-MM or "
        "null), previous_months_owed, previous_amount_owed {value, currency} — raised when a "
        "month is accrued or a payment, refund or correction changes what the member owes, "
        "only if the months or the amount owed actually changed"
    ),
    EventType.MEMBER_SHORTFALL_UNCOVERED: (
        "shortfall_id, member_id, member_external_id, period, amount {value, currency}, "
        "reason (no_standby_card | standby_ended) — invite the member to save a standby card"
    ),
    EventType.SHORTFALL_LATE_PAYROLL: (
        "shortfall_id, member_id, member_external_id, period, charge_id, "
        "credit {value, currency}, rule (carry_forward | refund), applied (carry_forward | "
        "refund), refund_id — payroll money arrived for a month the card already paid"
    ),
    EventType.WEBHOOK_ENDPOINT_DISABLED: "endpoint_id, reason (gone | failing), failing_since",
}

# What the code emits today; the rest arrive with the features behind them.
EMITTED: frozenset[EventType] = frozenset(
    {
        EventType.SUBSCRIPTION_ACTIVATED,
        EventType.SUBSCRIPTION_PAST_DUE,
        EventType.SUBSCRIPTION_CANCELED,
        EventType.SUBSCRIPTION_NEEDS_PAYMENT_METHOD,
        EventType.SUBSCRIPTION_PAUSED,
        EventType.SUBSCRIPTION_RESUMED,
        EventType.SUBSCRIPTION_STANDBY,
        EventType.SUBSCRIPTION_CHANGED,
        EventType.CHARGE_UPCOMING,
        EventType.CARD_EXPIRING,
        EventType.PAYMENT_SUCCEEDED,
        EventType.PAYMENT_FAILED,
        EventType.PAYMENT_REFUNDED,
        EventType.SUBSCRIPTION_STANDBY,
        EventType.CHARGE_UPCOMING,
        EventType.MEMBER_SHORTFALL_UNCOVERED,
        EventType.SHORTFALL_LATE_PAYROLL,
        EventType.WEBHOOK_ENDPOINT_DISABLED,
        EventType.MEMBER_ARREARS_CHANGED,
    }
)


def describe() -> str:
    """The catalogue as Markdown, for the API documentation."""
    lines = ["Event types and their `data`:", ""]
    for event_type in EventType:
        planned = "" if event_type in EMITTED else " *(catalogued; not emitted yet)*"
        lines.append(f"- `{event_type}`{planned}: {PAYLOADS[event_type]}")
    return "\n".join(lines)
