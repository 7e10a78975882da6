"""Row-level security, the second wall behind the service layer: under `vznos_app` a
transaction sees only the rows of the organisations its `vznos.org_ids` names, and nothing
without it. These tests fail when run as the owner or a superuser (VZNOS_TEST_APP_ROLE=postgres),
who bypass the policies: a green RLS test as `postgres` would prove nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from core.db import make_engine
from members import repository
from members import service as members_service
from members.errors import MemberNotFound
from members.schemas import MemberUpsert, OrganizationCreate
from payments.subscriptions.schemas import SubscriptionCreate
from vznos.container import Container

from .conftest import APP_ROLE

MEMBER_OWNED = [
    "members",
    "subscriptions",
    "charges",
    "charge_attempts",
    "payment_methods",
    "member_dues_plans",
    "ledger_dues_months",
    "refunds",
    # Organisation-owned beyond the member tables (migration 0015).
    "member_consents",
    "card_bindings",
    "subscription_status_changes",
    "subscription_amount_changes",
    "payroll_shortfalls",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_delivery_attempts",
    "audit_events",
    "ledger_entries",
    "ledger_accounts",
    "ledger_balances",
    "ledger_member_arrears",
]
# Left without a policy on purpose (migration 0015): the accrual COPYs postings, and COPY FROM
# is refused on a table whose row-level security binds the writer.
WITHOUT_POLICY = ("ledger_postings",)
# What two_trees writes in each organisation, so that "reads nothing" is about rows that exist.
POPULATED = (
    "members",
    "subscriptions",
    "charges",
    "charge_attempts",
    "webhook_endpoints",
    "audit_events",
    "ledger_entries",
    "ledger_accounts",
)
# Tables that follow an organisation exactly (the ledger's postings, accounts and balances
# only need some organisation context: see migration 0015).
BY_ORGANIZATION = ("members", "subscriptions", "webhook_endpoints", "ledger_entries")


@pytest.fixture
def two_trees(
    container: Container, app_container: Container, app_http: TestClient
) -> dict[str, uuid.UUID]:
    """Two unrelated organisations, each with a member, a started subscription, a payment
    recorded by the treasurer and a webhook endpoint, made through the application connected
    as `vznos_app` (so under the policies: every write passed their checks)."""
    ids = {}
    for code in ("north", "south"):
        org = app_container.organizations.create(OrganizationCreate(code=code, name=code), None)
        ids[code] = org.id
        key = app_container.access.create_api_key(code, "t", ["admin"])[1]
        principal = app_container.access.authenticate(key)
        app_container.members.upsert(
            principal, f"m-{code}", MemberUpsert(organization_code=code, full_name="Анна")
        )
        app_container.subscriptions.start(
            principal,
            f"m-{code}",
            SubscriptionCreate.model_validate(
                {
                    "amount": {"value": "350.00", "currency": "RUB"},
                    "billing_day": 5,
                    "consent": {"text_version": "v1", "accepted_at": "2026-11-23T06:55:00Z"},
                    "return_url": "https://crm.example.org/thanks",
                }
            ),
        )
        headers = {
            "Authorization": f"Bearer {key}",
            "Idempotency-Key": f"row-security-test-{code}-payment",
        }
        paid = app_http.post(
            f"/v1/members/m-{code}/payments",
            headers=headers,
            json={
                "amount": {"currency": "RUB", "value": "350.00"},
                "channel": "bank_transfer",
                "occurred_on": "2026-11-20",
                "reference": f"PP-{code}",
                "recorded_by": "Ольга",
            },
        )
        assert paid.status_code == 201, paid.text
        headers["Idempotency-Key"] = f"row-security-test-{code}-endpoint"
        hook = app_http.post(
            "/v1/webhook-endpoints",
            headers=headers,
            json={
                "url": "https://crm.example.org/hooks/vznos",
                "event_types": ["payment.succeeded"],
            },
        )
        assert hook.status_code == 201, hook.text
    return ids


@pytest.fixture
def as_app(database_url: str) -> Iterator[Connection]:
    engine = make_engine(database_url, pool_size=1, role=APP_ROLE)
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def _counts(connection: Connection) -> dict[str, int]:
    return {
        table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
        for table in MEMBER_OWNED
    }


def test_the_app_role_is_neither_owner_nor_superuser(as_app: Connection) -> None:
    me = as_app.execute(
        text(
            "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
    ).one()
    assert me.current_user == "vznos_app"
    assert not me.rolsuper and not me.rolbypassrls
    owned = (
        as_app.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tableowner = current_user"
            )
        )
        .scalars()
        .all()
    )
    assert owned == []
    secured = as_app.execute(
        text("SELECT relname FROM pg_class WHERE relrowsecurity AND relname = ANY(:names)"),
        {"names": MEMBER_OWNED},
    ).scalars()
    assert sorted(secured) == sorted(MEMBER_OWNED)


def test_without_an_organization_context_the_app_role_reads_nothing(
    two_trees: dict[str, uuid.UUID], as_app: Connection, database_url: str
) -> None:
    owner = create_engine(database_url)
    with owner.connect() as connection:
        everything = _counts(connection)
    owner.dispose()
    # The data is there (the owner sees it) …
    assert everything["members"] == 2 and everything["charge_attempts"] == 2
    assert {table: everything[table] > 0 for table in POPULATED} == dict.fromkeys(POPULATED, True)
    # … and the application role, without a context, sees none of it.
    assert _counts(as_app) == dict.fromkeys(MEMBER_OWNED, 0)
    # Not even by id.
    assert (
        as_app.execute(
            text("SELECT count(*) FROM members WHERE external_id = 'm-north'")
        ).scalar_one()
        == 0
    )


def test_an_organization_context_shows_exactly_that_organization(
    two_trees: dict[str, uuid.UUID], as_app: Connection
) -> None:
    with as_app.begin():
        as_app.execute(
            text("SELECT set_config('vznos.org_ids', :ids, true)"),
            {"ids": str(two_trees["north"])},
        )
        seen = as_app.execute(text("SELECT external_id FROM members")).scalars().all()
        counts = _counts(as_app)
        # Writing a row into another organisation is refused too.
        with pytest.raises(Exception, match="row-level security"), as_app.begin_nested():
            as_app.execute(
                text("UPDATE members SET organization_id = :south"),
                {"south": two_trees["south"]},
            )
    assert seen == ["m-north"]
    assert counts["members"] == 1 and counts["subscriptions"] == 1
    assert counts["charges"] == 1 and counts["charge_attempts"] == 1
    assert counts["webhook_endpoints"] == 1
    with as_app.begin():
        as_app.execute(text("SELECT set_config('vznos.org_ids', '*', true)"))
        every = _counts(as_app)
    # Exactly north's share of what follows an organisation; the rest is in north's context.
    assert {t: counts[t] * 2 for t in BY_ORGANIZATION} == {t: every[t] for t in BY_ORGANIZATION}
    assert 0 < counts["audit_events"] < every["audit_events"]
    assert all(counts[table] > 0 for table in POPULATED)
    # SET LOCAL: the setting ended with the transaction.
    assert _counts(as_app)["members"] == 0


def test_a_forgotten_service_check_still_cannot_read_another_tree(
    two_trees: dict[str, uuid.UUID],
    app_container: Container,
    app_http: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = app_container.access.create_api_key("north", "crm", ["members:write"])[1]
    headers = {"Authorization": f"Bearer {key}"}
    assert app_http.get("/v1/members/m-north", headers=headers).status_code == 200

    def careless(session: Session, principal: object, external_id: str) -> object:
        """The bug RLS is for: the subtree check forgotten."""
        found = repository.member_by_external_id(session, external_id)
        if found is None:
            raise MemberNotFound("no member", field="external_id")
        return found

    monkeypatch.setattr(members_service, "visible_member", careless)
    # Same request path, no service-layer check: the database itself hides the row.
    leaked = app_http.get("/v1/members/m-south", headers=headers)
    assert leaked.status_code == 404
    assert app_http.get("/v1/members/m-north", headers=headers).status_code == 200


def test_background_accrual_runs_under_the_policies(
    two_trees: dict[str, uuid.UUID], app_container: Container, app_http: TestClient
) -> None:
    """Background work binds no actor, so it runs with every organisation in view (`*`), and
    the accrual's COPY of postings works as `vznos_app`."""
    for code in two_trees:
        key = app_container.access.create_api_key(code, "plans", ["members:write"])[1]
        headers = {"Authorization": f"Bearer {key}"}
        plan = app_http.put(
            f"/v1/dues-plans/std-{code}",
            headers=headers,
            json={
                "kind": "percent_of_wage",
                "minimum": {"currency": "RUB", "value": "100.00"},
                "name": "1 %",
                "organization_code": code,
                "percent": "1.00",
            },
        )
        assert plan.status_code == 200, plan.text
        member_plan = app_http.put(
            f"/v1/members/m-{code}/dues-plan",
            headers=headers,
            json={
                "declared_wage": {"currency": "RUB", "value": "60000.00"},
                "effective_from": "2026-11",
                "plan_code": f"std-{code}",
            },
        )
        assert member_plan.status_code == 200, member_plan.text
    # November was accrued when the plans were set (in the requests, under the policies);
    # December is the background run's.
    assert app_container.dues.accrue(date(2026, 12, 1)).accrued == 2
