from __future__ import annotations

from core.errors import Conflict, InvalidInput, NotFound


class PaymentNotFound(NotFound):
    type_slug = "payment-not-found"
    title = "Payment not found"


class RefundNotFound(NotFound):
    type_slug = "refund-not-found"
    title = "Refund not found"


class PaymentNotRefundable(Conflict):
    type_slug = "payment-not-refundable"
    title = "Only a succeeded payment can be refunded"


class RefundExceedsPayment(InvalidInput):
    type_slug = "refund-exceeds-payment"
    title = "The refund is more than what is left of the payment"


class RefundKeyReused(InvalidInput):
    # The same type and status (422) as the HTTP idempotency layer's `IdempotencyKeyReused`:
    # this is the same mistake, caught by the refund row once the stored answer is gone.
    type_slug = "idempotency-key-reused"
    title = "The Idempotency-Key was used for a different refund"
