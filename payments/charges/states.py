"""Charge and charge-attempt lifecycles.

A charge is what a member owes through auto-pay for one month. An attempt is one payment at the
gateway; its own id is its Idempotence-Key. `submitting` means the request may have reached the
gateway and the outcome is unknown: only asking the gateway (or replaying the same key) settles it.
"""

from __future__ import annotations

from enum import StrEnum

from core.states import check_transition


class ChargeStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # Withdrawn before any attempt: the subscription was paused, canceled or lost its card
    # between the pre-charge notice and the charge.
    CANCELED = "canceled"


class ChargeKind(StrEnum):
    INITIAL = "initial"  # the first payment, made by the member on the acquirer's page
    RECURRING = "recurring"  # a saved card charged without the member
    # Started by the member on the self-service pages; neither is the month's charge.
    CARD_CHANGE = "card_change"  # a small first payment that saves a new card
    ARREARS = "arrears"  # one payment covering the overdue months (`covered_months`)
    SHORTFALL = "shortfall"  # a standby card charged what payroll missed in a month


MONTHLY_KINDS = frozenset({ChargeKind.INITIAL, ChargeKind.RECURRING})
SELF_SERVICE_KINDS = frozenset({ChargeKind.CARD_CHANGE, ChargeKind.ARREARS})


class AttemptStatus(StrEnum):
    CREATED = "created"  # key committed, nothing sent yet
    SUBMITTING = "submitting"  # sent (or about to be); outcome unknown
    PENDING = "pending"  # the gateway has it and waits (e.g. for the member's confirmation)
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


TERMINAL_ATTEMPT_STATUSES = frozenset({AttemptStatus.SUCCEEDED, AttemptStatus.CANCELED})

CHARGE_TRANSITIONS: dict[ChargeStatus, frozenset[ChargeStatus]] = {
    ChargeStatus.PENDING: frozenset(
        {ChargeStatus.SUCCEEDED, ChargeStatus.FAILED, ChargeStatus.CANCELED}
    ),
    ChargeStatus.SUCCEEDED: frozenset(),
    ChargeStatus.FAILED: frozenset(),
    ChargeStatus.CANCELED: frozenset(),
}

ATTEMPT_TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    AttemptStatus.CREATED: frozenset({AttemptStatus.SUBMITTING}),
    AttemptStatus.SUBMITTING: frozenset(
        {AttemptStatus.PENDING, AttemptStatus.SUCCEEDED, AttemptStatus.CANCELED}
    ),
    AttemptStatus.PENDING: frozenset({AttemptStatus.SUCCEEDED, AttemptStatus.CANCELED}),
    AttemptStatus.SUCCEEDED: frozenset(),
    AttemptStatus.CANCELED: frozenset(),
}


def charge_transition(current: ChargeStatus, target: ChargeStatus) -> ChargeStatus:
    return check_transition("charge", CHARGE_TRANSITIONS, current, target)


def attempt_transition(current: AttemptStatus, target: AttemptStatus) -> AttemptStatus:
    return check_transition("charge_attempt", ATTEMPT_TRANSITIONS, current, target)
