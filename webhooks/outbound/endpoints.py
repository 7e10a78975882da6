"""HTTP for the CRM's webhook endpoints and events. Thin: parse, call, map."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from core.http import problem_responses
from core.pagination import (
    DEFAULT_PAGE_SIZE,
    CreatedFrom,
    CreatedTo,
    Limit,
    StartingAfter,
)
from members.access.dependencies import require
from members.scopes import Scope
from members.service import Principal
from webhooks.outbound.catalog import describe
from webhooks.outbound.schemas import (
    DeliveryPage,
    Queued,
    ReplayQueued,
    ReplayRequest,
    SecretRotated,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointList,
    WebhookEndpointOut,
)
from webhooks.outbound.service import WebhookEndpointService
from webhooks.outbound.states import DeliveryStatus

SIGNING = """
Every delivery is a `POST` of JSON `{"id", "type", "occurred_at", "organization_id", "data"}`
signed by the Standard Webhooks scheme: headers `webhook-id` (the event id, the same on every
retry: use it to drop duplicates), `webhook-timestamp` (unix seconds, new on each attempt) and
`webhook-signature` (`v1,<base64 HMAC-SHA256>`; two of them, space-separated, while a rotated
secret overlaps). Answer 2xx to accept; a 410 disables the endpoint; anything else is retried
for about three days. Note: the reference Python verifier raises `ValueError` (not
`WebhookVerificationError`) on a malformed signature header; treat both as a rejection.
"""

WebhooksManager = Annotated[Principal, Depends(require(Scope.WEBHOOKS_MANAGE))]


def build_router(*, endpoints: WebhookEndpointService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["webhooks"])

    @router.post(
        "/webhook-endpoints",
        status_code=status.HTTP_201_CREATED,
        responses=problem_responses(401, 403, 422),
        description=(
            "Register a CRM endpoint for the caller's organisation; it receives events of the "
            "whole subtree. The `whsec_…` signing secret is in this response only.\n"
            + SIGNING
            + "\n"
            + describe()
        ),
    )
    def create_webhook_endpoint(
        body: WebhookEndpointCreate, caller: WebhooksManager
    ) -> WebhookEndpointCreated:
        return endpoints.create(caller, body)

    @router.get("/webhook-endpoints", responses=problem_responses(401, 403))
    def list_webhook_endpoints(caller: WebhooksManager) -> WebhookEndpointList:
        """Endpoints of the caller's subtree, without their secrets."""
        return WebhookEndpointList(data=endpoints.list(caller))

    @router.get("/webhook-endpoints/{endpoint_id}", responses=problem_responses(401, 403, 404, 422))
    def get_webhook_endpoint(endpoint_id: uuid.UUID, caller: WebhooksManager) -> WebhookEndpointOut:
        """One endpoint with its status and event types (never its secret)."""
        return endpoints.get(caller, endpoint_id)

    @router.delete(
        "/webhook-endpoints/{endpoint_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        responses=problem_responses(401, 403, 404, 422),
    )
    def delete_webhook_endpoint(endpoint_id: uuid.UUID, caller: WebhooksManager) -> Response:
        """Stop sending to the endpoint and forget it; pending deliveries are canceled."""
        endpoints.delete(caller, endpoint_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post(
        "/webhook-endpoints/{endpoint_id}/rotate-secret",
        responses=problem_responses(401, 403, 404, 422),
    )
    def rotate_webhook_secret(endpoint_id: uuid.UUID, caller: WebhooksManager) -> SecretRotated:
        """A new signing secret, shown once. Until `previous_secret_expires_at` every delivery
        carries signatures by both the old and the new secret."""
        return endpoints.rotate_secret(caller, endpoint_id)

    @router.post(
        "/webhook-endpoints/{endpoint_id}/disable", responses=problem_responses(401, 403, 404, 422)
    )
    def disable_webhook_endpoint(
        endpoint_id: uuid.UUID, caller: WebhooksManager
    ) -> WebhookEndpointOut:
        """Stop deliveries; pending ones are canceled (replay re-sends them)."""
        return endpoints.disable(caller, endpoint_id)

    @router.post(
        "/webhook-endpoints/{endpoint_id}/enable", responses=problem_responses(401, 403, 404, 422)
    )
    def enable_webhook_endpoint(
        endpoint_id: uuid.UUID, caller: WebhooksManager
    ) -> WebhookEndpointOut:
        """Resume deliveries to a disabled endpoint; its URL is checked again."""
        return endpoints.enable(caller, endpoint_id)

    @router.get(
        "/webhook-endpoints/{endpoint_id}/deliveries",
        responses=problem_responses(401, 403, 404, 422),
    )
    def list_webhook_deliveries(
        endpoint_id: uuid.UUID,
        caller: WebhooksManager,
        starting_after: StartingAfter = None,
        limit: Limit = DEFAULT_PAGE_SIZE,
        status: Annotated[
            DeliveryStatus | None, Query(description="Only deliveries in this status")
        ] = None,
        created_from: CreatedFrom = None,
        created_to: CreatedTo = None,
    ) -> DeliveryPage:
        """The delivery log, newest first: status code, duration and up to 1 KiB of the answer
        for every attempt."""
        return endpoints.deliveries(
            caller,
            endpoint_id,
            starting_after=starting_after,
            limit=limit,
            status=status,
            created_from=created_from,
            created_to=created_to,
        )

    @router.post(
        "/webhook-endpoints/{endpoint_id}/replay",
        status_code=status.HTTP_202_ACCEPTED,
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    def replay_webhook_events(
        endpoint_id: uuid.UUID, body: ReplayRequest, caller: WebhooksManager
    ) -> ReplayQueued:
        """Re-send every event the endpoint hears recorded since `since` (oldest first, same
        `webhook-id`s), for a CRM that was down."""
        return endpoints.replay(caller, endpoint_id, body.since)

    @router.post(
        "/events/{event_id}/redeliver",
        status_code=status.HTTP_202_ACCEPTED,
        responses=problem_responses(401, 403, 404, 422),
    )
    def redeliver_event(event_id: uuid.UUID, caller: WebhooksManager) -> Queued:
        """Send one event again to every active endpoint of the caller's subtree that hears
        it, with the same `webhook-id`."""
        return endpoints.redeliver(caller, event_id)

    return router
