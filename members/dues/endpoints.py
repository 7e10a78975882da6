"""HTTP for dues plans and a treasurer's bookkeeping. Thin: parse, call, map."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from core.http import problem_responses
from core.idempotency import MOVES_MONEY
from core.periods import PERIOD_PATTERN
from members.access.dependencies import require
from members.dues.schemas import (
    DuesPlanIn,
    DuesPlanOut,
    EntryOut,
    ManualPaymentIn,
    MemberPlanIn,
    MemberPlanOut,
    PeriodCloseIn,
    ReversalIn,
    SharesIn,
    TransferIn,
)
from members.dues.service import DuesService
from members.dues.treasury import TreasuryService
from members.endpoints import ExternalId
from members.scopes import Scope
from members.service import Principal

Code = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Period = Annotated[str, Path(pattern=PERIOD_PATTERN, examples=["2026-12"])]

MembersWriter = Annotated[Principal, Depends(require(Scope.MEMBERS_WRITE))]
Bookkeeper = Annotated[Principal, Depends(require(Scope.RECONCILIATION_WRITE))]


def build_router(*, dues: DuesService, treasury: TreasuryService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["dues and ledger"])

    @router.put("/dues-plans/{code}", responses=problem_responses(401, 403, 404, 422))
    def upsert_dues_plan(code: Code, body: DuesPlanIn, caller: MembersWriter) -> DuesPlanOut:
        """Create or change a dues plan: fixed, a percentage of the declared wage, or exempt."""
        return dues.upsert_plan(caller, code, body)

    @router.put("/members/{external_id}/dues-plan", responses=problem_responses(401, 403, 404, 422))
    def set_member_dues_plan(
        external_id: ExternalId, body: MemberPlanIn, caller: MembersWriter
    ) -> MemberPlanOut:
        """From a month on, the member pays by this plan."""
        return dues.set_member_plan(caller, external_id, body)

    @router.post(
        "/members/{external_id}/payments",
        status_code=status.HTTP_201_CREATED,
        responses=problem_responses(401, 403, 404, 409, 422),
        openapi_extra=MOVES_MONEY,
    )
    def record_payment(
        external_id: ExternalId, body: ManualPaymentIn, caller: Bookkeeper
    ) -> EntryOut:
        """Dues that arrived by payroll deduction, bank transfer or cash, recorded by a
        treasurer. It pays the member's oldest unpaid month first. 409 if its month is closed."""
        return treasury.record_payment(caller, external_id, body)

    @router.post(
        "/ledger/entries/{entry_id}/reverse",
        status_code=status.HTTP_201_CREATED,
        responses=problem_responses(401, 403, 404, 409, 422),
        openapi_extra=MOVES_MONEY,
    )
    def reverse_entry(entry_id: uuid.UUID, body: ReversalIn, caller: Bookkeeper) -> EntryOut:
        """Correct a mistake with an entry that posts the opposite amounts and points at it."""
        return treasury.reverse(caller, entry_id, body)

    @router.post(
        "/organizations/{code}/periods/{period}/close",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=problem_responses(401, 403, 404, 422),
    )
    def close_period(code: Code, period: Period, body: PeriodCloseIn, caller: Bookkeeper) -> None:
        """Close a month: later postings dated in it go to the next open month."""
        treasury.close(caller, code, period, body)

    @router.put(
        "/organizations/{code}/shares",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=problem_responses(401, 403, 404, 422),
    )
    def set_shares(code: Code, body: SharesIn, caller: Bookkeeper) -> None:
        """How the organisation's received dues are shared with its higher levels from a month
        on. The percentages must sum to 100."""
        treasury.set_shares(caller, code, body)

    @router.post(
        "/organizations/{code}/transfers",
        status_code=status.HTTP_201_CREATED,
        responses=problem_responses(401, 403, 404, 409, 422),
        openapi_extra=MOVES_MONEY,
    )
    def transfer_upward(code: Code, body: TransferIn, caller: Bookkeeper) -> EntryOut:
        """Money the organisation sent to a higher level, settling what it owes it."""
        return treasury.transfer_upward(caller, code, body)

    return router
