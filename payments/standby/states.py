"""Lifecycles of standby auto-pay: saving the card, and each payroll shortfall."""

from __future__ import annotations

from enum import StrEnum

from core.states import check_transition


class BindingStatus(StrEnum):
    """Saving a card with no payment. `submitting`: the outcome at the gateway is unknown."""

    CREATED = "created"  # key committed, nothing sent yet
    SUBMITTING = "submitting"
    PENDING = "pending"  # waits for the member on the acquirer's page
    ACTIVE = "active"  # the card is saved
    INACTIVE = "inactive"  # declined, abandoned or refused: no card


OPEN_BINDING_STATUSES = frozenset(
    {BindingStatus.CREATED, BindingStatus.SUBMITTING, BindingStatus.PENDING}
)

BINDING_TRANSITIONS: dict[BindingStatus, frozenset[BindingStatus]] = {
    BindingStatus.CREATED: frozenset({BindingStatus.SUBMITTING}),
    BindingStatus.SUBMITTING: frozenset(
        {BindingStatus.PENDING, BindingStatus.ACTIVE, BindingStatus.INACTIVE}
    ),
    BindingStatus.PENDING: frozenset({BindingStatus.ACTIVE, BindingStatus.INACTIVE}),
    BindingStatus.ACTIVE: frozenset(),
    BindingStatus.INACTIVE: frozenset(),
}


def binding_transition(current: BindingStatus, target: BindingStatus) -> BindingStatus:
    return check_transition("card_binding", BINDING_TRANSITIONS, current, target)


class ShortfallStatus(StrEnum):
    """A month payroll did not (fully) cover. Once `charging`, the charge's own status says
    how it went (pending → succeeded | failed)."""

    SCHEDULED = "scheduled"  # the member was told (`charge.upcoming`); the card waits
    CHARGING = "charging"  # the charge exists and goes through the attempt machinery
    UNCOVERED = "uncovered"  # no standby card: the CRM was told to invite the member


SHORTFALL_TRANSITIONS: dict[ShortfallStatus, frozenset[ShortfallStatus]] = {
    ShortfallStatus.SCHEDULED: frozenset({ShortfallStatus.CHARGING, ShortfallStatus.UNCOVERED}),
    ShortfallStatus.CHARGING: frozenset(),
    ShortfallStatus.UNCOVERED: frozenset(),
}


def shortfall_transition(current: ShortfallStatus, target: ShortfallStatus) -> ShortfallStatus:
    return check_transition("payroll_shortfall", SHORTFALL_TRANSITIONS, current, target)


class UncoveredReason(StrEnum):
    NO_STANDBY_CARD = "no_standby_card"  # the member has no standby subscription with a card
    STANDBY_ENDED = "standby_ended"  # it was canceled during the notice period


class LatePayrollRule(StrEnum):
    """What happens when payroll money arrives for a month the card already paid."""

    CARRY_FORWARD = "carry_forward"  # the credit pays the next months (the default)
    REFUND = "refund"  # the card payment is refunded through the gateway
