"""HTTP for a member's payments. Thin: parse, call, map."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from core.http import problem_responses
from core.pagination import DEFAULT_PAGE_SIZE, CreatedFrom, CreatedTo, Limit, StartingAfter
from members.access.dependencies import require
from members.scopes import Scope
from members.service import Principal
from payments.charges.states import ChargeStatus
from payments.history.schemas import PaymentOut, PaymentPage
from payments.history.service import PaymentFilter, PaymentReads

PaymentsReader = Annotated[Principal, Depends(require(Scope.PAYMENTS_READ))]


def build_router(*, payments: PaymentReads) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["payments"])

    @router.get("/payments", responses=problem_responses(401, 403, 404, 422))
    def list_payments(
        caller: PaymentsReader,
        member: Annotated[
            str,
            Query(
                min_length=1,
                max_length=128,
                pattern=r"^[A-Za-z0-9_.:-]+$",
                description="The member's external id (the CRM's own)",
            ),
        ],
        status: Annotated[ChargeStatus | None, Query(description="Only payments in it")] = None,
        created_from: CreatedFrom = None,
        created_to: CreatedTo = None,
        starting_after: StartingAfter = None,
        limit: Limit = DEFAULT_PAGE_SIZE,
    ) -> PaymentPage:
        """A member's card payments, newest first: amount, status, months, masked card,
        decline reason, attempts and refunds. Page on with `starting_after`."""
        return payments.list_for_member(
            caller,
            member,
            where=PaymentFilter(status=status, created_from=created_from, created_to=created_to),
            starting_after=starting_after,
            limit=limit,
        )

    @router.get("/payments/{payment_id}", responses=problem_responses(401, 403, 404, 422))
    def get_payment(payment_id: uuid.UUID, caller: PaymentsReader) -> PaymentOut:
        """One card payment (a month's charge) with its attempts at the gateway."""
        return payments.get(caller, payment_id)

    return router
