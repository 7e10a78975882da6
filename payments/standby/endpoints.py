"""HTTP for standby auto-pay. Thin: parse, call, map."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from core.http import problem_responses
from core.idempotency import MOVES_MONEY
from members.access.dependencies import require
from members.endpoints import ExternalId
from members.scopes import Scope
from members.service import Principal
from payments.standby.enrollment import StandbyEnrollment
from payments.standby.schemas import (
    ShortfallIn,
    ShortfallOut,
    StandbyCreate,
    StandbyPolicyIn,
    StandbyPolicyOut,
)
from payments.standby.shortfalls import ShortfallService
from payments.subscriptions.schemas import SubscriptionOut

Code = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]

SubscriptionsWriter = Annotated[Principal, Depends(require(Scope.SUBSCRIPTIONS_WRITE))]
Bookkeeper = Annotated[Principal, Depends(require(Scope.RECONCILIATION_WRITE))]
StandbyReader = Annotated[
    Principal,
    Depends(require(Scope.RECONCILIATION_WRITE, Scope.SUBSCRIPTIONS_WRITE, Scope.PAYMENTS_READ)),
]


def build_router(
    *,
    enrollment: StandbyEnrollment,
    shortfalls: ShortfallService,
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["standby auto-pay"])

    @router.post(
        "/members/{external_id}/standby",
        status_code=status.HTTP_201_CREATED,
        responses=problem_responses(401, 403, 404, 409, 422),
        openapi_extra=MOVES_MONEY,
    )
    def enroll_standby(
        external_id: ExternalId, body: StandbyCreate, caller: SubscriptionsWriter
    ) -> SubscriptionOut:
        """Save the member's card in standby, with their consent to the standby terms and no
        payment. Send the member to `confirmation_url` to confirm the card; once saved the
        subscription is `standby` (event `subscription.standby`). The card is charged only for
        payroll shortfalls. If the acquirer did not answer in time, `confirmation_url` is null:
        read the subscription again shortly."""
        return enrollment.enroll(caller, external_id, body)

    @router.post(
        "/members/{external_id}/payroll-shortfalls",
        status_code=status.HTTP_201_CREATED,
        responses={
            200: {"description": "The same shortfall was recorded before (a replay)"},
            **problem_responses(401, 403, 404, 409, 422),
        },
        openapi_extra=MOVES_MONEY,
    )
    def record_shortfall(
        external_id: ExternalId, body: ShortfallIn, caller: Bookkeeper, response: Response
    ) -> ShortfallOut:
        """Payroll did not cover `amount` of the member's dues for `period`. A member in standby
        is told (`charge.upcoming`) and the card is charged exactly that after the notice
        period; a member without a standby card is reported (`member.shortfall_uncovered`).
        One shortfall per member and month: the same body again answers 200 and changes
        nothing; another amount for the same month is a 409."""
        recorded = shortfalls.record(caller, external_id, body)
        if not recorded.created:
            response.status_code = status.HTTP_200_OK
        return recorded.shortfall

    @router.get(
        "/members/{external_id}/payroll-shortfalls", responses=problem_responses(401, 403, 404, 422)
    )
    def list_shortfalls(external_id: ExternalId, caller: StandbyReader) -> list[ShortfallOut]:
        """The member's payroll shortfalls, newest month first."""
        return shortfalls.list_for_member(caller, external_id)

    @router.get(
        "/payroll-shortfalls/{shortfall_id}", responses=problem_responses(401, 403, 404, 422)
    )
    def get_shortfall(shortfall_id: uuid.UUID, caller: StandbyReader) -> ShortfallOut:
        """One payroll shortfall and the standby card charge that covers it."""
        return shortfalls.get(caller, shortfall_id)

    @router.get(
        "/organizations/{code}/standby-policy", responses=problem_responses(401, 403, 404, 422)
    )
    def get_standby_policy(code: Code, caller: StandbyReader) -> StandbyPolicyOut:
        """The organisation's standby rules (its own, a higher level's, or the default)."""
        return shortfalls.get_policy(caller, code)

    @router.put(
        "/organizations/{code}/standby-policy", responses=problem_responses(401, 403, 404, 422)
    )
    def set_standby_policy(
        code: Code, body: StandbyPolicyIn, caller: Bookkeeper
    ) -> StandbyPolicyOut:
        """What happens to payroll money that arrives for a month the card already paid:
        `carry_forward` (default: the credit pays the next months) or `refund`."""
        return shortfalls.set_policy(caller, code, body)

    return router
