"""The API's edge, applied to every route in one place: rate limits, body size, idempotency of
every POST, and the problem responses those add to the contract."""

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute

from core.http import problem_responses
from core.idempotency import (
    MOVES_MONEY,
    IdempotencyGuard,
    IdempotencyRecorder,
    IdempotentReplay,
    header_parameter,
    replay_response,
)
from core.limits import BodyLimit, RateLimit
from members.access.dependencies import guard_of
from members.service import Principal
from vznos.container import Container

API_PREFIX = "/v1/"
IDEMPOTENCY_REQUIRED = next(iter(MOVES_MONEY))
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def principal_key_id(principal: Principal) -> uuid.UUID:
    """Whose Idempotency-Keys these are: the calling API key's (or treasurer's)."""
    caller = principal.api_key_id or principal.treasurer_id
    assert caller is not None
    return caller


def _idempotency_dependency(
    guard: IdempotencyGuard, principal: Callable[..., Any], *, required: bool
) -> Callable[..., Any]:
    async def idempotency_key(
        request: Request, caller: Annotated[Principal, Depends(principal)]
    ) -> None:
        await guard.check(request, caller, required=required)

    return idempotency_key


def apply_contract(
    router: APIRouter,
    *,
    guard: IdempotencyGuard,
    principal: Callable[..., Any],
    retention_hours: float,
) -> APIRouter:
    """Give every API route of the router what the contract promises. Call before
    `include_router`: the included copies are built from these routes."""
    for route in router.routes:
        if not isinstance(route, APIRoute) or not route.path.startswith(API_PREFIX):
            continue
        extra = dict(route.openapi_extra or {})
        methods = route.methods or set()
        added = [401, 429]
        if methods & BODY_METHODS:
            added += [400, 413, 422]
        if "POST" in methods:
            required = bool(extra.pop(IDEMPOTENCY_REQUIRED, False))
            # The route's own scope guard (cached per request, so one authentication): a
            # caller without the scope gets its 403 before any key is claimed.
            caller = guard_of(route) or principal
            route.dependencies.append(
                Depends(_idempotency_dependency(guard, caller, required=required))
            )
            extra["parameters"] = [
                *extra.get("parameters", []),
                header_parameter(required=required, retention_hours=retention_hours),
            ]
            added += [400, 409]
        route.openapi_extra = extra or None
        route.responses = {**problem_responses(*added), **route.responses}
    return router


def install_edge(app: FastAPI, container: Container) -> None:
    settings = container.settings
    app.add_exception_handler(IdempotentReplay, replay_response)
    # Added innermost first: the rate limit runs before the body is read, and the body is read
    # (and size-checked) before any endpoint or idempotency claim.
    app.add_middleware(IdempotencyRecorder, store=container.idempotency)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.api_max_body_bytes,
        max_upload_bytes=settings.api_max_upload_bytes,
        prefix=API_PREFIX,
    )
    app.add_middleware(RateLimit, limiter=container.rate_limiter, prefix=API_PREFIX)
