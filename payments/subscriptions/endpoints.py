"""HTTP for subscriptions. Thin: parse, call, map."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from core.http import problem_responses
from core.idempotency import MOVES_MONEY
from members.access.dependencies import require
from members.endpoints import ExternalId
from members.scopes import Scope
from members.service import Principal
from payments.subscriptions.erasure import ErasureService
from payments.subscriptions.schemas import (
    CancelIn,
    MemberErasureOut,
    PauseIn,
    SubscriptionChange,
    SubscriptionCreate,
    SubscriptionOut,
)
from payments.subscriptions.service import SubscriptionService
from payments.subscriptions.states import Cause

SubscriptionsWriter = Annotated[Principal, Depends(require(Scope.SUBSCRIPTIONS_WRITE))]
SubscriptionsReader = Annotated[
    Principal, Depends(require(Scope.SUBSCRIPTIONS_WRITE, Scope.PAYMENTS_READ))
]


def build_router(*, subscriptions: SubscriptionService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["subscriptions"])

    @router.post(
        "/members/{external_id}/subscriptions",
        status_code=status.HTTP_201_CREATED,
        responses=problem_responses(401, 403, 404, 409, 422),
        openapi_extra=MOVES_MONEY,
    )
    def start_subscription(
        external_id: ExternalId, body: SubscriptionCreate, caller: SubscriptionsWriter
    ) -> SubscriptionOut:
        """Start card auto-pay. Send the member to `confirmation_url` to pay the first month
        and save the card. If the acquirer did not answer in time, `confirmation_url` is null:
        read the subscription again shortly."""
        return subscriptions.start(caller, external_id, body)

    @router.get("/subscriptions/{subscription_id}", responses=problem_responses(401, 403, 404, 422))
    def get_subscription(
        subscription_id: uuid.UUID, caller: SubscriptionsReader
    ) -> SubscriptionOut:
        """The subscription with its status, amount, saved card, last charge and what changed
        when (status and amount history)."""
        return subscriptions.get(caller, subscription_id)

    @router.patch(
        "/subscriptions/{subscription_id}", responses=problem_responses(401, 404, 409, 422)
    )
    def change_subscription(
        subscription_id: uuid.UUID, body: SubscriptionChange, caller: SubscriptionsWriter
    ) -> SubscriptionOut:
        """Change the monthly amount from a month on (this month or later, not yet charged or
        announced). Sending the same change again changes nothing."""
        return subscriptions.change_amount(caller, subscription_id, body)

    @router.post(
        "/subscriptions/{subscription_id}/cancel", responses=problem_responses(401, 403, 404, 422)
    )
    def cancel_subscription(
        subscription_id: uuid.UUID, caller: SubscriptionsWriter, body: CancelIn | None = None
    ) -> SubscriptionOut:
        """Stop auto-pay at once. Canceling again changes nothing (200, not an error)."""
        cause = Cause(body.cause) if body is not None else Cause.BY_CRM
        return subscriptions.cancel(caller, subscription_id, cause)

    @router.post(
        "/subscriptions/{subscription_id}/pause", responses=problem_responses(401, 404, 409, 422)
    )
    def pause_subscription(
        subscription_id: uuid.UUID, body: PauseIn, caller: SubscriptionsWriter
    ) -> SubscriptionOut:
        """Pause auto-pay (leave, exemption): nothing is charged until `resume_on` (the
        scheduler resumes it that day) or until resumed. Pausing again moves the date."""
        return subscriptions.pause(caller, subscription_id, body.resume_on)

    @router.post(
        "/subscriptions/{subscription_id}/resume", responses=problem_responses(401, 404, 409, 422)
    )
    def resume_subscription(
        subscription_id: uuid.UUID, caller: SubscriptionsWriter
    ) -> SubscriptionOut:
        """Resume a paused subscription to the status it was paused from. Resuming one that is
        not paused changes nothing."""
        return subscriptions.resume(caller, subscription_id)

    return router


def build_erasure_router(*, erasure: ErasureService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["members"])
    Caller = Annotated[Principal, Depends(require(Scope.MEMBERS_WRITE))]

    @router.delete("/members/{external_id}", responses=problem_responses(401, 404, 410, 422))
    def erase_member(external_id: ExternalId, caller: Caller) -> MemberErasureOut:
        """Erase the member for good (crypto-shredding): live subscriptions are canceled and
        the member's data key is destroyed, so their name, contacts and saved card can never be
        read again. The books keep the amounts under `pseudonym`; the external id is forgotten
        (reading it again is 404, reading the pseudonym is 410)."""
        done = erasure.erase(caller, external_id)
        return MemberErasureOut(
            member_id=done.member_id,
            pseudonym=done.pseudonym,
            erased_at=done.erased_at,
            subscriptions_canceled=done.subscriptions_canceled,
        )

    return router
