"""HTTP for refunds. Thin: parse, call, map."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, status

from core.http import problem_responses
from core.idempotency import MOVES_MONEY
from members.access.dependencies import require
from members.scopes import Scope
from members.service import Principal
from payments.refunds.schemas import RefundCreate, RefundList, RefundOut
from payments.refunds.service import RefundService

RefundsWriter = Annotated[Principal, Depends(require(Scope.REFUNDS_WRITE))]
RefundsReader = Annotated[Principal, Depends(require(Scope.REFUNDS_WRITE, Scope.PAYMENTS_READ))]


def build_router(*, refunds: RefundService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["payments"])

    @router.post(
        "/payments/{payment_id}/refunds",
        status_code=status.HTTP_201_CREATED,
        responses=problem_responses(401, 403, 404, 409, 422),
        openapi_extra=MOVES_MONEY,
    )
    def create_refund(
        payment_id: uuid.UUID,
        body: RefundCreate,
        caller: RefundsWriter,
        idempotency_key: Annotated[
            str | None,
            # Documented and checked by the API's idempotency layer (vznos/edge.py); the
            # service also keeps it on the refund, so a retry finds its refund after expiry.
            Header(alias="Idempotency-Key", max_length=200, include_in_schema=False),
        ] = None,
    ) -> RefundOut:
        """Give (part of) a succeeded card payment back: the whole rest when `amount` is
        omitted. The answer's `status` is `succeeded` when the gateway confirmed it at once;
        `pending` or `submitting` settle later (read the refund again). The books get a
        reversing entry and the CRM a `payment.refunded` event when the gateway confirms."""
        return refunds.request(caller, payment_id, body, client_key=idempotency_key)

    @router.get("/payments/{payment_id}/refunds", responses=problem_responses(401, 403, 404, 422))
    def list_refunds(payment_id: uuid.UUID, caller: RefundsReader) -> RefundList:
        """Every refund of the payment, oldest first."""
        return refunds.list_for_payment(caller, payment_id)

    @router.get(
        "/payments/{payment_id}/refunds/{refund_id}",
        responses=problem_responses(401, 403, 404, 422),
    )
    def get_refund(payment_id: uuid.UUID, refund_id: uuid.UUID, caller: RefundsReader) -> RefundOut:
        """One refund; `status` moves from `pending` to `succeeded` or `canceled` when the
        gateway settles it."""
        return refunds.get(caller, payment_id, refund_id)

    return router
