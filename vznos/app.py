"""The HTTP application: routers of every domain, problem+json errors, health and readiness."""

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from core.http import install_problem_handlers, problem, problem_responses
from core.idempotency import IdempotencyGuard
from members import endpoints as members_endpoints
from members.access import endpoints as access_endpoints
from members.access.dependencies import authenticated
from members.dues import endpoints as dues_endpoints
from payments.history import endpoints as payments_endpoints
from payments.pages import endpoints as pages_endpoints
from payments.refunds import endpoints as refunds_endpoints
from payments.retries import endpoints as retries_endpoints
from payments.shops import endpoints as shops_endpoints
from payments.standby import endpoints as standby_endpoints
from payments.subscriptions import endpoints as subscriptions_endpoints
from vznos.container import Container
from vznos.edge import apply_contract, install_edge, principal_key_id
from vznos.links import document_links
from vznos.migrate import current_revision, head_revision
from vznos.problems import document_problems
from webhooks.inbound import endpoints as inbound_endpoints
from webhooks.outbound import endpoints as outbound_endpoints
from webhooks.outbound.contract import build_webhooks_router

API_DESCRIPTION = """
Vznos collects trade-union dues by bank card, as a safety net for payroll deduction.

Authenticate with an API key: `Authorization: Bearer vz_…` (create one with
`vznos apikey create --org CODE`). A key acts for one organisation and its whole subtree, with
scopes (`members:write`, `subscriptions:write`, `payments:read`, `refunds:write`,
`reconciliation:write`, `webhooks:manage`, `admin`); each operation names the scope it needs.
A missing or invalid key is a 401, a missing scope a 403, and an object outside the caller's
subtree a 404, exactly like one that does not exist. Amounts are decimal strings with a currency,
`{"value": "350.00", "currency": "RUB"}`. Every error is `application/problem+json`
with a `field` naming what was wrong.
"""


class Health(BaseModel):
    status: str


def create_app(container: Container) -> FastAPI:
    app = FastAPI(
        title="Vznos",
        version="0.1.0",
        description=API_DESCRIPTION.strip(),
    )
    app.state.container = container
    install_problem_handlers(app)
    # Read by members.access.dependencies.require, the dependency every endpoint declares.
    app.state.access = container.access
    app.state.trusted_proxies = container.settings.trusted_proxies

    @app.get("/healthz", tags=["operations"])
    def healthz() -> Health:
        """The process is alive."""
        return Health(status="ok")

    @app.get(
        "/readyz", tags=["operations"], response_model=Health, responses=problem_responses(503)
    )
    def readyz() -> Health | JSONResponse:
        """The database answers and its schema is at the latest migration."""
        try:
            with container.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                revision = current_revision(connection)
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            return problem(
                503, "not-ready", "Not ready", f"database unreachable: {type(exc).__name__}"
            )
        if revision != head_revision():
            return problem(503, "not-ready", "Not ready", "database migrations are not at head")
        return Health(status="ready")

    routers = [
        members_endpoints.build_router(
            members=container.members,
            organizations=container.organizations,
            ledger=container.ledger,
        ),
        subscriptions_endpoints.build_router(subscriptions=container.subscriptions),
        payments_endpoints.build_router(payments=container.payments),
        refunds_endpoints.build_router(refunds=container.refunds),
        shops_endpoints.build_router(shops=container.shops),
        subscriptions_endpoints.build_erasure_router(erasure=container.erasure),
        standby_endpoints.build_router(
            enrollment=container.standby, shortfalls=container.shortfalls
        ),
        retries_endpoints.build_router(retry_policies=container.retry_policies),
        dues_endpoints.build_router(dues=container.dues, treasury=container.treasury),
        inbound_endpoints.build_router(inbox=container.inbox),
        outbound_endpoints.build_router(endpoints=container.webhook_endpoints),
        pages_endpoints.build_api_router(
            pages=container.pages,
            public_url=container.settings.public_url,
        ),
        access_endpoints.build_router(access=container.access),
    ]
    # Every API route gets the contract's edge (idempotent POSTs, limits) in this one place.
    guard = IdempotencyGuard(container.idempotency, principal_key_id)
    for router in routers:
        app.include_router(
            apply_contract(
                router,
                guard=guard,
                principal=authenticated,
                retention_hours=container.settings.idempotency_retention_hours,
            )
        )
    app.include_router(
        access_endpoints.build_sessions_router(
            access=container.access, throttle=container.sign_in_throttle
        )
    )
    # What Vznos sends to CRMs: documented as OpenAPI `webhooks`, served nowhere.
    app.webhooks.include_router(build_webhooks_router())
    install_edge(app, container)
    # The member's own pages: HTML outside the API (no API key, no idempotency edge).
    app.include_router(
        pages_endpoints.build_pages_router(
            pages=container.pages,
            public_url=container.settings.public_url,
            trusted_proxies=container.settings.trusted_proxies,
        )
    )
    document_contract(app)
    return app


def document_contract(app: FastAPI) -> None:
    """What the routes alone do not say goes into the served schema (and so `openapi.yaml`):
    one `Problem` schema for every error, and the links between operations."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_links(document_problems(generate()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
