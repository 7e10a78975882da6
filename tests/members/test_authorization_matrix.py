"""The authorization matrix (BOLA/BFLA), generated from the application's own routes: every
operation × callers of the owning organisation, its parent, its child, a sibling and another
tree × every scope. Each cell has its expected code: 401 without a valid key, 403 without the
scope, 404 for an object outside the caller's subtree (exactly as for one that does not exist),
and otherwise an answer that is none of those. No answer carries another tree's ids. The app
runs as `vznos_app`, so row-level security is live underneath."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.db import transaction
from core.outbox import EventType, emit
from members.access.dependencies import ScopeGuard, api_routes, guard_of
from members.dues.schemas import DuesPlanIn, ManualPaymentIn
from members.schemas import MemberUpsert, OrganizationCreate
from members.scopes import Scope
from members.service import Principal
from payments.charges.models import Charge, ChargeAttempt
from payments.gateway.emulator.testing import complete_checkout
from payments.history.service import PaymentFilter
from payments.refunds.schemas import RefundCreate
from payments.subscriptions.schemas import SubscriptionCreate
from vznos.app import create_app
from vznos.container import Container
from webhooks.outbound.schemas import WebhookEndpointCreate

# Routes that authenticate differently, on purpose.
PUBLIC = {("POST", "/v1/sessions")}
# Routes about the treasurer session that made the request: with an API key there is no such
# session, so every key gets 404 (tests/members/test_access.py signs a treasurer out).
SESSION_ONLY = {("DELETE", "/v1/sessions/current")}

# owner of every object: ppo. fed → terr → {ppo → cell, ppo-sib}; other → other-ppo.
TREE = [
    ("fed", None),
    ("terr", "fed"),
    ("ppo", "terr"),
    ("cell", "ppo"),
    ("ppo-sib", "terr"),
    ("other", None),
    ("other-ppo", "other"),
]
RELATIONS = {
    "same": "ppo",
    "parent": "terr",
    "child": "cell",
    "sibling": "ppo-sib",
    "other_tree": "other-ppo",
}
SEES_THE_OWNER = {"same", "parent"}
SUBSCRIPTION = {
    "amount": {"value": "350.00", "currency": "RUB"},
    "billing_day": 5,
    "consent": {"text_version": "v1", "accepted_at": "2026-11-23T06:55:00Z"},
    "return_url": "https://crm.example.org/thanks",
}
CRM_URL = "https://crm.example.org/hooks/vznos"
counter = itertools.count()


def body_for(method: str, path: str) -> dict[str, Any] | None:
    """A schema-valid body, so that a request reaches the service and its subtree check."""
    n = next(counter)
    money = {"value": "100.00", "currency": "RUB"}
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/v1/organizations"): {"code": f"new-{n}", "name": "N"},
        ("PUT", "/v1/organizations/{code}"): {"name": "PPO"},
        ("PUT", "/v1/members/{external_id}"): {"organization_code": "ppo", "full_name": "Анна"},
        ("POST", "/v1/members/{external_id}/subscriptions"): SUBSCRIPTION,
        ("PUT", "/v1/dues-plans/{code}"): {
            "organization_code": "ppo",
            "name": "P",
            "kind": "fixed",
            "amount": money,
        },
        ("PUT", "/v1/members/{external_id}/dues-plan"): {
            "plan_code": "plan-ppo",
            "effective_from": "2026-11",
        },
        ("POST", "/v1/members/{external_id}/payments"): {
            "channel": "cash",
            "amount": money,
            "occurred_on": "2026-11-20",
            "reference": f"r-{n}",
            "recorded_by": "T",
        },
        ("POST", "/v1/ledger/entries/{entry_id}/reverse"): {
            "reason": "mistake",
            "recorded_by": "T",
        },
        ("POST", "/v1/organizations/{code}/periods/{period}/close"): {"closed_by": "T"},
        ("PUT", "/v1/organizations/{code}/shares"): {
            "effective_from": "2026-11",
            "shares": [{"organization_code": "ppo", "percent": "100"}],
        },
        ("POST", "/v1/organizations/{code}/transfers"): {
            "to_organization_code": "terr",
            "amount": money,
            "occurred_on": "2026-11-20",
            "reference": f"t-{n}",
            "recorded_by": "T",
        },
        ("POST", "/v1/webhook-endpoints"): {"url": CRM_URL},
        ("POST", "/v1/webhook-endpoints/{endpoint_id}/replay"): {"since": "2026-11-01T00:00:00Z"},
        ("POST", "/v1/api-keys"): {"name": "k", "scopes": ["payments:read"]},
        ("POST", "/v1/api-keys/{key_id}/rotate"): {},
        ("POST", "/v1/members/{external_id}/links"): {"purpose": "manage"},
        ("PUT", "/v1/organizations/{code}/shop"): {
            "shop_id": "777000",
            "secret_key": "test_matrix_secret_key_000000",
        },
        ("POST", "/v1/payments/{payment_id}/refunds"): {
            "amount": {"value": "1.00", "currency": "RUB"},
            "reason": "test",
        },
    }
    if (method, path) in bodies:
        return bodies[(method, path)]
    return {} if method in ("POST", "PUT", "PATCH") else None


QUERY = {"/v1/organizations/{organization_id}/summary": {"period": "2026-11"}}


@dataclass
class World:
    container: Container
    http: TestClient
    org_ids: dict[str, uuid.UUID] = field(default_factory=dict)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    objects: dict[str, str] = field(default_factory=dict)

    def key(self, org: str, scope: str) -> str:
        if (org, scope) not in self.keys:
            self.keys[(org, scope)] = self.container.access.create_api_key(org, scope, [scope])[1]
        return self.keys[(org, scope)]

    def principal(self) -> Principal:
        return self.container.access.authenticate(self.key("ppo", Scope.ADMIN))

    def ancestors(self, org: str) -> set[str]:
        parents = dict(TREE)
        found = set()
        while parents[org] is not None:
            org = parents[org]  # type: ignore[assignment]
            found.add(org)
        return found

    def subtree(self, org: str) -> set[str]:
        below = {org}
        while True:
            more = {child for child, parent in TREE if parent in below} - below
            if not more:
                return below
            below |= more


def make_object(world: World, param: str, path: str) -> str:
    """An object owned by `ppo` for a path parameter; the same one is reused unless fresh."""
    c, p = world.container, world.principal()
    if param == "code":
        if path.startswith("/v1/dues-plans/"):
            c.dues.upsert_plan(
                p,
                "plan-ppo",
                DuesPlanIn.model_validate(
                    {
                        "organization_code": "ppo",
                        "name": "P",
                        "kind": "fixed",
                        "amount": {"value": "100.00", "currency": "RUB"},
                    }
                ),
            )
            return "plan-ppo"
        return "ppo"
    if param == "organization_id":
        return str(world.org_ids["ppo"])
    if param == "period":
        return "2026-01"
    if param == "external_id":
        c.members.upsert(p, "m-ppo", MemberUpsert(organization_code="ppo", full_name="Анна"))
        return "m-ppo"
    if param == "subscription_id":
        member = f"m-sub-{next(counter)}"  # m-ppo may have a live one by now
        c.members.upsert(p, member, MemberUpsert(organization_code="ppo", full_name="Анна"))
        sub = c.subscriptions.start(p, member, SubscriptionCreate.model_validate(SUBSCRIPTION))
        return str(sub.id)
    if param == "entry_id":
        make_object(world, "external_id", path)
        entry = c.treasury.record_payment(
            p,
            "m-ppo",
            ManualPaymentIn.model_validate(
                {
                    "channel": "cash",
                    "amount": {"value": "10.00", "currency": "RUB"},
                    "occurred_on": "2026-11-20",
                    "reference": f"e-{next(counter)}",
                    "recorded_by": "T",
                }
            ),
        )
        return str(entry.id)
    if param == "endpoint_id":
        made = c.webhook_endpoints.create(p, WebhookEndpointCreate(url=CRM_URL))
        return str(made.id)
    if param == "event_id":
        with transaction(c.sessions) as session:
            return str(
                emit(
                    session,
                    type=EventType.PAYMENT_SUCCEEDED,
                    organization_id=world.org_ids["ppo"],
                    occurred_at=c.clock.now(),
                    payload={},
                )
            )
    if param == "payment_id":
        page = c.payments.list_for_member(
            p, make_subscribed(world), where=PaymentFilter(), starting_after=None, limit=1
        )
        return str(page.data[0].id)
    if param == "key_id":
        return str(c.access.create_api_key("ppo", "target", ["payments:read"])[0])
    raise KeyError(param)


def make_subscribed(world: World) -> str:
    c, p = world.container, world.principal()
    member = f"m-sub-{next(counter)}"
    c.members.upsert(p, member, MemberUpsert(organization_code="ppo", full_name="Анна"))
    c.subscriptions.start(p, member, SubscriptionCreate.model_validate(SUBSCRIPTION))
    return member


def make_refund(world: World) -> tuple[str, str]:
    """A card payment that succeeded at the emulator, and a partial refund of it."""
    c, p = world.container, world.principal()
    member = f"m-paid-{next(counter)}"
    c.members.upsert(p, member, MemberUpsert(organization_code="ppo", full_name="Анна"))
    started = c.subscriptions.start(p, member, SubscriptionCreate.model_validate(SUBSCRIPTION))
    assert started.confirmation_url
    assert complete_checkout(started.confirmation_url).status_code == 303
    with c.sessions() as session:
        attempt_id = session.scalar(
            select(ChargeAttempt.id)
            .join(Charge, Charge.id == ChargeAttempt.charge_id)
            .where(Charge.subscription_id == started.id)
        )
        charge_id = session.scalar(select(Charge.id).where(Charge.subscription_id == started.id))
    assert attempt_id is not None and charge_id is not None
    c.charges.resolve(attempt_id)
    refund = c.refunds.request(
        p,
        charge_id,
        RefundCreate.model_validate(
            {"amount": {"value": "1.00", "currency": "RUB"}, "reason": "test"}
        ),
        client_key=f"refund-{next(counter)}",
    )
    return str(charge_id), str(refund.id)


KNOWN_PARAMS = {
    "payment_id",
    "refund_id",
    "code",
    "organization_id",
    "period",
    "external_id",
    "subscription_id",
    "entry_id",
    "endpoint_id",
    "event_id",
    "key_id",
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    guard: ScopeGuard

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    @property
    def has_body(self) -> bool:
        """Whether this test knows a schema-valid body (or the operation takes none)."""
        return self.method not in ("POST", "PUT", "PATCH") or bool(body_for(self.method, self.path))

    @property
    def owned(self) -> bool:
        return bool(self.params) and set(self.params) <= KNOWN_PARAMS

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def operations(container: Container) -> list[Operation]:
    found = []
    for route in api_routes(create_app(container).routes):
        if not route.path.startswith("/v1/"):
            continue
        for method in sorted(route.methods or ()):
            if (method, route.path) in PUBLIC:
                continue
            guard = guard_of(route)
            assert guard is not None, (
                f"{method} {route.path} declares no scope: add "
                "`caller: Annotated[Principal, Depends(require(Scope.…))]`"
            )
            found.append(Operation(method, route.path, guard))
    return found


@pytest.fixture
def world(app_container: Container, app_http: TestClient) -> Iterator[World]:
    built = World(app_container, app_http)
    for code, parent in TREE:
        org = app_container.organizations.create(
            OrganizationCreate(code=code, name=code, parent_code=parent), None
        )
        built.org_ids[code] = org.id
    yield built


def call(world: World, op: Operation, key: str | None, *, fresh: bool = False) -> Any:
    values = {}
    if "refund_id" in op.params:
        if "refund" not in world.objects or fresh:
            world.objects["refund"] = ",".join(make_refund(world))
        values["payment_id"], values["refund_id"] = world.objects["refund"].split(",")
    for param in op.params:
        if param in values:
            continue
        if param not in KNOWN_PARAMS:
            values[param] = str(uuid.uuid4()) if param.endswith("_id") else "x"
            continue
        cache_key = f"{param}:{op.path.startswith('/v1/dues-plans/')}"
        if fresh or cache_key not in world.objects:
            world.objects[cache_key] = make_object(world, param, op.path)
        values[param] = world.objects[cache_key]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if op.method == "POST":
        headers["Idempotency-Key"] = str(uuid.uuid4())
    return world.http.request(
        op.method,
        op.path.format(**values),
        json=body_for(op.method, op.path),
        params=QUERY.get(op.path),
        headers=headers,
    )


def test_every_cell_has_its_expected_code(world: World) -> None:
    ops = operations(world.container)
    assert len(ops) >= 30
    wrong: list[str] = []

    def expect(
        op: Operation, who: str, got: int, allowed: Callable[[int], bool], want: str
    ) -> None:
        if not allowed(got):
            wrong.append(f"{op} as {who}: got {got}, want {want}")

    for op in ops:
        # Authentication: no key and an unknown key.
        for who, key in (("no key", None), ("unknown key", "vz_" + "x" * 43)):
            expect(op, who, call(world, op, key).status_code, lambda s: s == 401, "401")
        # Function level: the owner's organisation holding exactly one scope.
        for scope in Scope:
            got = call(world, op, world.key("ppo", scope)).status_code
            if op.guard.admits(frozenset({scope})):
                expect(
                    op, f"ppo/{scope}", got, lambda s: s not in (401, 403) and s < 500, "admitted"
                )
            else:
                expect(op, f"ppo/{scope}", got, lambda s: s == 403, "403")
        # Object level: each relation holding the operation's scope.
        scope = min(op.guard.scopes) if op.guard.scopes else Scope.PAYMENTS_READ
        for relation, org in RELATIONS.items():
            response = call(world, op, world.key(org, scope), fresh=op.method == "DELETE")
            got = response.status_code
            who = f"{relation}/{scope}"
            if (op.method, op.path) in SESSION_ONLY:
                expect(op, who, got, lambda s: s == 404, "404 (an API key has no session)")
            elif not op.params:
                expect(op, who, got, lambda s: s not in (401, 403, 404) and s < 500, "allowed")
            elif not op.owned:
                # An id this test cannot make yet: unknown, so 404 for everyone (or 422 when
                # the body is refused first); the scope cells above still hold.
                expect(op, who, got, lambda s: s in (404, 422), "404")
            elif relation in SEES_THE_OWNER:
                expect(op, who, got, lambda s: s not in (401, 403, 404) and s < 500, "allowed")
            elif not op.has_body:
                expect(op, who, got, lambda s: s in (404, 422), "404 (or 422: no valid body)")
            else:
                expect(op, who, got, lambda s: s == 404, "404")
            # Zero cross-organisation data in whatever came back.
            # (Its own ancestors' ids are no secret: an organisation's record names its parent.)
            hidden = {str(world.org_ids[o]) for o, _ in TREE} - {
                str(world.org_ids[o]) for o in world.subtree(org) | world.ancestors(org)
            }
            asked = str(response.request.url)  # a 404 may name what the caller itself sent
            leaked = [h for h in hidden if h in response.text and h not in asked]
            if leaked:
                wrong.append(f"{op} as {who}: another organisation's id in the answer")
    assert wrong == [], "\n".join(wrong)
