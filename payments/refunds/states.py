"""The refund lifecycle.

A refund is one refund at the gateway; its own id is its Idempotence-Key. `submitting` means
the request may have reached the gateway and the outcome is unknown: only asking the gateway
(GET by refund id, or replaying the same key) settles it. YooKassa notifies `refund.succeeded`
only (there is no `refund.canceled`), so pending refunds are polled by the sweeper.
"""

from __future__ import annotations

from enum import StrEnum

from core.states import check_transition


class RefundStatus(StrEnum):
    CREATED = "created"  # key committed, nothing sent yet
    SUBMITTING = "submitting"  # sent (or about to be); outcome unknown
    PENDING = "pending"  # the gateway has it and is still processing
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


OPEN_REFUND_STATUSES = (RefundStatus.CREATED, RefundStatus.SUBMITTING, RefundStatus.PENDING)
TERMINAL_REFUND_STATUSES = frozenset({RefundStatus.SUCCEEDED, RefundStatus.CANCELED})

REFUND_TRANSITIONS: dict[RefundStatus, frozenset[RefundStatus]] = {
    RefundStatus.CREATED: frozenset({RefundStatus.SUBMITTING}),
    RefundStatus.SUBMITTING: frozenset(
        {RefundStatus.PENDING, RefundStatus.SUCCEEDED, RefundStatus.CANCELED}
    ),
    RefundStatus.PENDING: frozenset({RefundStatus.SUCCEEDED, RefundStatus.CANCELED}),
    RefundStatus.SUCCEEDED: frozenset(),
    RefundStatus.CANCELED: frozenset(),
}


def refund_transition(current: RefundStatus, target: RefundStatus) -> RefundStatus:
    return check_transition("refund", REFUND_TRANSITIONS, current, target)
