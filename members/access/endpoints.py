"""HTTP for API keys, treasurer sign-in and the audit log. Thin: parse, call, map."""

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from core.http import problem_responses
from core.instants import Instant
from core.limits import SignInThrottle
from core.networks import client_address
from members.access.dependencies import authenticated, require
from members.access.schemas import (
    MAX_PAGE,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    ApiKeyPage,
    ApiKeyRotate,
    AuditEventPage,
    SessionCreate,
    SessionCreated,
)
from members.access.service import AccessService
from members.scopes import Scope
from members.service import Principal

Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
AnyCaller = Annotated[Principal, Depends(authenticated)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]


def build_router(*, access: AccessService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["access"])

    @router.post(
        "/api-keys",
        status_code=status.HTTP_201_CREATED,
        responses=problem_responses(401, 403, 404, 422),
    )
    def create_api_key(body: ApiKeyCreate, caller: Admin) -> ApiKeyCreated:
        """A new API key for an organisation of the caller's subtree, with scopes the caller
        holds. The key itself is in this response only; it is stored as a keyed hash."""
        return access.create_api_key_out(
            caller, body.organization_code, body.name, body.scopes, body.expires_at
        )

    @router.get("/api-keys", responses=problem_responses(401, 403, 404, 422))
    def list_api_keys(
        caller: Admin,
        starting_after: Annotated[
            uuid.UUID | None, Query(description="The last key id of the previous page")
        ] = None,
        limit: Limit = 20,
    ) -> ApiKeyPage:
        """The keys of the caller's subtree, newest first (never the keys themselves)."""
        return access.list_api_keys(caller, starting_after=starting_after, limit=limit)

    @router.get("/api-keys/{key_id}", responses=problem_responses(401, 403, 404, 422))
    def get_api_key(key_id: uuid.UUID, caller: Admin) -> ApiKeyOut:
        """One key's status, scopes, expiry and last use (never the key itself)."""
        return access.get_api_key(caller, key_id)

    @router.post("/api-keys/{key_id}/revoke", responses=problem_responses(401, 403, 404, 422))
    def revoke_api_key(key_id: uuid.UUID, caller: Admin) -> ApiKeyOut:
        """Revoke a key now: its next request is a 401. Revoking twice changes nothing."""
        return access.revoke_api_key(caller, key_id)

    @router.post(
        "/api-keys/{key_id}/rotate",
        status_code=status.HTTP_201_CREATED,
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    def rotate_api_key(key_id: uuid.UUID, body: ApiKeyRotate, caller: Admin) -> ApiKeyCreated:
        """A successor key with the same organisation, name and scopes. The old key keeps
        working for `grace_hours` (both are valid at once), then expires."""
        return access.rotate_api_key(
            caller,
            key_id,
            grace=timedelta(hours=body.grace_hours) if body.grace_hours is not None else None,
            expires_at=body.expires_at,
        )

    @router.get("/audit-events", responses=problem_responses(401, 403, 404, 422))
    def list_audit_events(
        caller: Admin,
        starting_after: Annotated[
            uuid.UUID | None, Query(description="The last event id of the previous page")
        ] = None,
        limit: Limit = 50,
        action: Annotated[
            str | None,
            Query(max_length=64, description="e.g. `member.read`", examples=["member.read"]),
        ] = None,
        since: Annotated[Instant | None, Query(description="Inclusive")] = None,
        until: Annotated[Instant | None, Query(description="Exclusive")] = None,
    ) -> AuditEventPage:
        """Who did what, when and from where in the caller's subtree, newest first: every
        money-affecting action, every read of a member's personal data, every change of keys
        and of the organisation tree."""
        return access.audit_events(
            caller,
            limit=limit,
            starting_after=starting_after,
            action=action,
            since=since,
            until=until,
        )

    return router


def build_sessions_router(*, access: AccessService, throttle: SignInThrottle) -> APIRouter:
    """Sign-in: the one API route without a bearer (so without per-key idempotency)."""
    router = APIRouter(prefix="/v1", tags=["access"])

    @router.post(
        "/sessions",
        status_code=status.HTTP_201_CREATED,
        # Outside `apply_contract` (no bearer, no idempotency), yet behind the same edge: the
        # body limit (413), the per-address rate limit (429) and undecodable bodies (400).
        responses=problem_responses(400, 401, 413, 422, 429),
    )
    def sign_in(body: SessionCreate, request: Request) -> SessionCreated:
        """A treasurer signs in with a password and, when enrolled, a TOTP code; the answer's
        `vzt_…` token authenticates like an API key until it expires. Attempts are limited per
        login and per client address (429 with Retry-After)."""
        address = client_address(
            request.client.host if request.client else None,
            request.headers.getlist("x-forwarded-for"),
            request.app.state.trusted_proxies,
        )
        throttle.check(body.login, str(address) if address else None)
        return access.sign_in(body.login, body.password, body.totp_code)

    @router.delete(
        "/sessions/current",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=problem_responses(401, 404, 429),
    )
    def sign_out(caller: AnyCaller) -> Response:
        """Sign out: revoke the treasurer session whose `vzt_…` token made this request; its
        next request is a 401. With an API key it is a 404 (a key is revoked through
        `/v1/api-keys/{key_id}/revoke`)."""
        access.sign_out(caller)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
