"""HTTP for subscriptions. Thin: parse, call, map."""

import uuid
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, status

from core.http import problem_responses
from core.idempotency import MOVES_MONEY
from members.endpoints import ExternalId
from members.service import Principal
from payments.subscriptions.schemas import SubscriptionCreate, SubscriptionOut
from payments.subscriptions.service import SubscriptionService


def build_router(
    *, subscriptions: SubscriptionService, principal: Callable[..., Principal]
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["subscriptions"])
    Caller = Annotated[Principal, Depends(principal)]

    @router.post(
        "/members/{external_id}/subscriptions",
        status_code=status.HTTP_201_CREATED,
        responses=problem_responses(401, 404, 409, 422),
        openapi_extra=MOVES_MONEY,
    )
    def start_subscription(
        external_id: ExternalId, body: SubscriptionCreate, caller: Caller
    ) -> SubscriptionOut:
        """Start card auto-pay. Send the member to `confirmation_url` to pay the first month
        and save the card. If the acquirer did not answer in time, `confirmation_url` is null:
        read the subscription again shortly."""
        return subscriptions.start(caller, external_id, body)

    @router.get("/subscriptions/{subscription_id}", responses=problem_responses(401, 404, 422))
    def get_subscription(subscription_id: uuid.UUID, caller: Caller) -> SubscriptionOut:
        return subscriptions.get(caller, subscription_id)

    @router.post(
        "/subscriptions/{subscription_id}/cancel", responses=problem_responses(401, 404, 422)
    )
    def cancel_subscription(subscription_id: uuid.UUID, caller: Caller) -> SubscriptionOut:
        """Stop auto-pay at once. Canceling again changes nothing."""
        return subscriptions.cancel(caller, subscription_id)

    return router
