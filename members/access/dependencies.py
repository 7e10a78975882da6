"""The one place every endpoint declares what it needs:

    caller: Annotated[Principal, Depends(require(Scope.PAYMENTS_READ))]

`require` authenticates the bearer (401), checks the scope (403; `admin` holds every scope),
and binds the caller as the acting `Actor`: from then on every transaction of the request runs
with `vznos.org_ids` set to the caller's subtree (row-level security) and every audit row names
the caller and its address. Objects outside the subtree are the service layer's 404.
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at runtime.

from collections.abc import Iterator, Sequence
from functools import cache
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import BaseRoute

from core.access import bind_actor
from core.networks import Network, client_address
from members.access.errors import MissingScope
from members.scopes import Scope, grants
from members.service import Principal

bearer = HTTPBearer(
    auto_error=False,
    description="An API key (`vz_…`) or a treasurer session token (`vzt_…`)",
)


class ScopeGuard:
    """A dependency that admits a caller holding any of `scopes` (none named: any caller)."""

    def __init__(self, scopes: frozenset[Scope]) -> None:
        self.scopes = scopes

    def admits(self, held: frozenset[str]) -> bool:
        return not self.scopes or any(grants(held, scope) for scope in self.scopes)

    async def __call__(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        access = request.app.state.access
        trusted: Sequence[Network] = request.app.state.trusted_proxies
        address = client_address(
            request.client.host if request.client else None,
            request.headers.getlist("x-forwarded-for"),
            trusted,
        )
        principal: Principal = await run_in_threadpool(
            access.authenticate,
            credentials.credentials if credentials else None,
            str(address) if address else None,
        )
        if not self.admits(principal.scopes):
            needed = " or ".join(sorted(self.scopes))
            raise MissingScope(f"this operation needs the {needed} scope")
        # Set in the request's own context, so the endpoint's worker thread inherits it.
        bind_actor(principal.actor)
        return principal

    def __repr__(self) -> str:
        return f"require({', '.join(sorted(self.scopes))})"


@cache
def require(*scopes: Scope | str) -> ScopeGuard:
    """The caller must hold one of `scopes` (or `admin`); with none named, any valid caller."""
    return ScopeGuard(frozenset(Scope(scope) for scope in scopes))


# Any authenticated caller, whatever its scopes (reading the organisation tree).
authenticated = require()


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute of an app, through included routers (which FastAPI wraps)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        else:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                yield from api_routes(inner.routes)


def guard_of(route: APIRoute) -> ScopeGuard | None:
    """The scope an operation declared, if any."""
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        if isinstance(dependant.call, ScopeGuard):
            return dependant.call
        stack.extend(dependant.dependencies)
    return None
