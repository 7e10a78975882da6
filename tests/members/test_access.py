"""API keys (scopes, expiry, revocation, rotation, last use), treasurer sign-in with a second
factor, the organisation tree synced and moved, and the append-only audit log."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from core.audit import AuditEvent
from core.clock import ManualClock
from members.access.errors import ScopesRequired
from members.models import ApiKey, Treasurer, TreasurerSession
from members.schemas import OrganizationCreate
from vznos.app import create_app
from vznos.cli import app as cli
from vznos.container import Container


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def tree(container: Container) -> dict[str, str]:
    """fed → terr → ppo; another root `other`. Returns code → id."""
    ids = {}
    for code, parent in (("fed", None), ("terr", "fed"), ("ppo", "terr"), ("other", None)):
        org = container.organizations.create(
            OrganizationCreate(code=code, name=code.upper(), parent_code=parent), None
        )
        ids[code] = str(org.id)
    return ids


@pytest.fixture
def http(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container), client=("203.0.113.7", 50000)) as test_client:
        yield test_client


def test_keys_are_stored_as_a_keyed_hash_and_shown_once(
    container: Container, tree: dict[str, str], http: TestClient
) -> None:
    admin = container.access.create_api_key("fed", "admin", ["admin"])[1]
    made = http.post(
        "/v1/api-keys",
        json={"name": "CRM", "scopes": ["payments:read"], "organization_code": "terr"},
        headers=bearer(admin),
    )
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    assert key.startswith("vz_") and len(key) >= 40
    listed = http.get("/v1/api-keys", headers=bearer(admin)).json()["data"]
    assert {k["name"] for k in listed} == {"admin", "CRM"}
    assert all("key" not in k for k in listed)
    with container.sessions() as session:
        stored = session.scalars(select(ApiKey.key_hash)).all()
        dump = " ".join(str(row) for row in session.execute(text("SELECT * FROM api_keys")))
    assert key not in dump and admin not in dump
    # Keyed: not the plain SHA-256 a stolen table could be checked against.
    assert hashlib.sha256(key.encode()).hexdigest() not in stored
    assert http.get("/v1/organizations", headers=bearer(key)).status_code == 200


def test_scopes_401_403_and_a_key_cannot_grant_more_than_its_creator(
    container: Container, tree: dict[str, str], http: TestClient
) -> None:
    reader = container.access.create_api_key("terr", "reader", ["payments:read"])[1]
    assert http.get("/v1/api-keys").status_code == 401
    assert http.get("/v1/api-keys", headers=bearer("vz_forged")).status_code == 401
    denied = http.get("/v1/api-keys", headers=bearer(reader))
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith("application/problem+json")
    assert denied.json()["type"].endswith("/missing-scope")
    assert http.put("/v1/members/m-1", json={}, headers=bearer(reader)).status_code == 403

    members_admin = container.access.create_api_key("terr", "x", ["admin"])[1]
    # The caller is admin (holds everything) but may not mint keys outside its subtree.
    outside = http.post(
        "/v1/api-keys",
        json={"name": "x", "scopes": ["payments:read"], "organization_code": "fed"},
        headers=bearer(members_admin),
    )
    assert outside.status_code == 404
    assert outside.json()["field"] == "organization_code"
    unknown_scope = http.post(
        "/v1/api-keys", json={"name": "x", "scopes": ["root"]}, headers=bearer(members_admin)
    )
    assert unknown_scope.status_code == 422
    # A key is given only what is named: no scopes (or none at all) is a 422 naming `scopes`,
    # never a key with every scope.
    for body in ({"name": "x", "scopes": []}, {"name": "x"}):
        unscoped = http.post("/v1/api-keys", json=body, headers=bearer(members_admin))
        assert unscoped.status_code == 422, unscoped.text
        assert unscoped.json()["field"] == "scopes"
    with pytest.raises(ScopesRequired) as refused:
        container.access.create_api_key("terr", "operator", [])
    assert refused.value.field == "scopes"
    with container.engine.connect() as connection:
        names = connection.execute(text("SELECT name FROM api_keys")).scalars().all()
    assert sorted(names) == ["reader", "x"]


def test_expired_and_revoked_keys_are_401(
    container: Container, clock: ManualClock, tree: dict[str, str], http: TestClient
) -> None:
    admin = container.access.create_api_key("fed", "admin", ["admin"])[1]
    made = http.post(
        "/v1/api-keys",
        json={
            "name": "short",
            "scopes": ["payments:read"],
            "expires_at": (clock.now() + timedelta(hours=1)).isoformat(),
        },
        headers=bearer(admin),
    ).json()
    assert http.get("/v1/organizations", headers=bearer(made["key"])).status_code == 200
    clock.advance(timedelta(hours=1))
    expired = http.get("/v1/organizations", headers=bearer(made["key"]))
    assert expired.status_code == 401
    assert http.get(f"/v1/api-keys/{made['id']}", headers=bearer(admin)).json()["status"] == (
        "expired"
    )

    other = http.post(
        "/v1/api-keys", json={"name": "b", "scopes": ["payments:read"]}, headers=bearer(admin)
    ).json()
    assert http.get("/v1/organizations", headers=bearer(other["key"])).status_code == 200
    revoked = http.post(f"/v1/api-keys/{other['id']}/revoke", headers=bearer(admin))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert http.get("/v1/organizations", headers=bearer(other["key"])).status_code == 401
    again = http.post(f"/v1/api-keys/{other['id']}/revoke", headers=bearer(admin))
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]


def test_rotation_keeps_both_keys_valid_for_the_grace_period(
    container: Container, clock: ManualClock, tree: dict[str, str], http: TestClient
) -> None:
    admin = container.access.create_api_key("fed", "admin", ["admin"])[1]
    old = http.post(
        "/v1/api-keys",
        json={"name": "CRM", "scopes": ["payments:read", "members:write"]},
        headers=bearer(admin),
    ).json()
    # A boolean is not a number of hours (schemathesis found `false` read as 0): 422, no rotation.
    for wrong in (False, True, "2"):
        refused = http.post(
            f"/v1/api-keys/{old['id']}/rotate", json={"grace_hours": wrong}, headers=bearer(admin)
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "grace_hours"
    listed = http.get(f"/v1/api-keys/{old['id']}", headers=bearer(admin)).json()
    assert listed["replaced_by_id"] is None
    rotated = http.post(
        f"/v1/api-keys/{old['id']}/rotate", json={"grace_hours": 2}, headers=bearer(admin)
    )
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["key"] != old["key"] and new["scopes"] == old["scopes"]
    assert new["name"] == "CRM" and new["organization_id"] == old["organization_id"]
    for key in (old["key"], new["key"]):
        assert http.get("/v1/organizations", headers=bearer(key)).status_code == 200
    previous = http.get(f"/v1/api-keys/{old['id']}", headers=bearer(admin)).json()
    assert previous["replaced_by_id"] == new["id"]
    clock.advance(timedelta(hours=2))
    assert http.get("/v1/organizations", headers=bearer(old["key"])).status_code == 401
    assert http.get("/v1/organizations", headers=bearer(new["key"])).status_code == 200
    # The old key, now expired, cannot be rotated again.
    assert (
        http.post(f"/v1/api-keys/{old['id']}/rotate", json={}, headers=bearer(admin)).status_code
        == 409
    )


def test_last_use_is_recorded_without_a_write_per_request(
    container: Container, clock: ManualClock, tree: dict[str, str]
) -> None:
    key_id, key = container.access.create_api_key("ppo", "x", ["payments:read"])

    def last_used() -> object:
        with container.sessions() as session:
            found = session.get(ApiKey, key_id)
            assert found is not None
            return found.last_used_at

    container.access.authenticate(key)
    first = last_used()
    assert first == clock.now()
    clock.advance(timedelta(minutes=1))
    container.access.authenticate(key)
    assert last_used() == first  # within the interval: no write
    clock.advance(timedelta(minutes=5))
    container.access.authenticate(key)
    assert last_used() == clock.now()


def test_treasurer_signs_in_with_password_and_totp_once(
    container: Container, clock: ManualClock, tree: dict[str, str], http: TestClient
) -> None:
    treasurer_id, uri = container.access.create_treasurer(
        org_code="terr",
        login="anna",
        display_name="Анна",
        password="correct horse battery",
        scopes=["payments:read"],
        with_totp=True,
    )
    assert uri is not None and uri.startswith("otpauth://totp/")
    with container.sessions() as session:
        stored = session.get(Treasurer, treasurer_id)
        assert stored is not None and stored.password_hash.startswith("$argon2id$")
        secret = stored.totp_secret
    assert secret is not None
    code = pyotp.TOTP(secret).at(clock.now())

    wrong = http.post("/v1/sessions", json={"login": "anna", "password": "nope"})
    assert wrong.status_code == 401
    unknown = http.post("/v1/sessions", json={"login": "boris", "password": "nope"})
    assert unknown.status_code == 401 and unknown.json()["detail"] == wrong.json()["detail"]
    no_code = http.post("/v1/sessions", json={"login": "anna", "password": "correct horse battery"})
    assert no_code.status_code == 401 and no_code.json()["field"] == "totp_code"

    good = {"login": "anna", "password": "correct horse battery", "totp_code": code}
    signed = http.post("/v1/sessions", json=good)
    assert signed.status_code == 201, signed.text
    token = signed.json()["token"]
    assert token.startswith("vzt_")
    orgs = http.get("/v1/organizations", headers=bearer(token)).json()["data"]
    assert {o["code"] for o in orgs} == {"terr", "ppo"}
    assert http.get("/v1/api-keys", headers=bearer(token)).status_code == 403
    # The same code a second time is refused (replay).
    assert http.post("/v1/sessions", json=good).status_code == 401
    clock.advance(timedelta(hours=13))
    assert http.get("/v1/organizations", headers=bearer(token)).status_code == 401


def test_organization_tree_sync_and_subtree_move(
    container: Container, tree: dict[str, str], http: TestClient
) -> None:
    key = container.access.create_api_key("fed", "crm", ["members:write"])[1]
    made = http.put(
        "/v1/organizations/ppo-2",
        json={"name": "ППО-2", "parent_code": "terr", "timezone": "Asia/Yekaterinburg"},
        headers=bearer(key),
    )
    assert made.status_code == 201, made.text
    assert made.json()["parent_id"] == tree["terr"]
    http.put("/v1/organizations/shop", json={"name": "Цех"}, headers=bearer(key))
    moved = http.put(
        "/v1/organizations/terr",
        json={"name": "Терком", "parent_code": "shop"},
        headers=bearer(key),
    )
    assert moved.status_code == 200 and moved.json()["parent_id"] != tree["fed"]
    cycle = http.put(
        "/v1/organizations/fed", json={"name": "FED", "parent_code": "ppo"}, headers=bearer(key)
    )
    assert cycle.status_code == 422 and cycle.json()["field"] == "parent_code"
    self_parent = http.put(
        "/v1/organizations/terr", json={"name": "T", "parent_code": "terr"}, headers=bearer(key)
    )
    assert self_parent.status_code == 422
    # A key of `terr` sees its subtree moved along, and cannot reach the other tree.
    terr_key = container.access.create_api_key("terr", "t", ["members:write"])[1]
    codes = {
        o["code"] for o in http.get("/v1/organizations", headers=bearer(terr_key)).json()["data"]
    }
    assert codes == {"terr", "ppo", "ppo-2"}
    hidden = http.put(
        "/v1/organizations/other", json={"name": "mine now"}, headers=bearer(terr_key)
    )
    assert hidden.status_code == 404
    escape = http.put(
        "/v1/organizations/ppo",
        json={"name": "P", "parent_code": "other"},
        headers=bearer(terr_key),
    )
    assert escape.status_code == 404 and escape.json()["field"] == "parent_code"
    with container.sessions() as session:
        moves = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "organization.moved")
        ).all()
    assert [(m.subject_id, m.details["from_parent_id"]) for m in moves] == [
        (tree["terr"], tree["fed"])
    ]


def test_audit_log_records_reads_and_writes_and_cannot_be_altered(
    container: Container, database_url: str, tree: dict[str, str], http: TestClient
) -> None:
    admin = container.access.create_api_key("terr", "admin", ["admin"])[1]
    crm = container.access.create_api_key("ppo", "crm", ["members:write"])[1]
    body = {"organization_code": "ppo", "full_name": "Иван Петров", "email": "ivan@example.org"}
    assert http.put("/v1/members/m-7", json=body, headers=bearer(crm)).status_code == 201
    assert http.get("/v1/members/m-7", headers=bearer(crm)).status_code == 200
    page = http.get("/v1/audit-events", params={"limit": 2}, headers=bearer(admin)).json()
    assert [e["action"] for e in page["data"]] == ["member.read", "member.created"]
    assert page["has_more"] is True
    read = page["data"][0]
    assert read["actor_type"] == "api_key" and read["ip"] == "203.0.113.7"
    assert "Иван" not in str(page) and "ivan@" not in str(page)
    rest = http.get(
        "/v1/audit-events",
        params={"limit": 100, "starting_after": page["data"][1]["id"]},
        headers=bearer(admin),
    ).json()
    assert rest["has_more"] is False and rest["data"]
    assert all(e["organization_id"] in (tree["terr"], tree["ppo"]) for e in rest["data"])
    only_reads = http.get(
        "/v1/audit-events", params={"action": "member.read"}, headers=bearer(admin)
    ).json()["data"]
    assert len(only_reads) == 1
    # The other tree's admin sees none of it.
    container.access.create_api_key("other", "x", ["admin"])
    other = container.access.create_api_key("other", "admin", ["admin"])[1]
    assert all(
        e["organization_id"] == tree["other"]
        for e in http.get("/v1/audit-events", headers=bearer(other)).json()["data"]
    )

    engine = create_engine(database_url)
    try:
        for statement in (
            "UPDATE audit_events SET action = 'x'",
            "DELETE FROM audit_events",
        ):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
                connection.execute(text(statement))
        with engine.connect() as connection:
            grants = connection.execute(
                text(
                    "SELECT privilege_type FROM information_schema.role_table_grants"
                    " WHERE grantee = 'vznos_app' AND table_name = 'audit_events'"
                )
            ).scalars()
            assert set(grants) == {"SELECT", "INSERT"}
    finally:
        engine.dispose()


def test_apikey_and_treasurer_commands(
    container: Container, cli_env: dict[str, str], tree: dict[str, str]
) -> None:
    runner = CliRunner()
    made = runner.invoke(
        cli,
        [
            "apikey",
            "create",
            "--org",
            "terr",
            "--scope",
            "payments:read",
            "--expires-in-days",
            "30",
        ],
        env=cli_env,
    )
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[-1]
    principal = container.access.authenticate(key)
    assert principal.scopes == {"payments:read"}
    listed = runner.invoke(cli, ["apikey", "list", "--org", "terr"], env=cli_env)
    assert listed.exit_code == 0 and key not in listed.output
    key_id = listed.stdout.splitlines()[1].split("\t")[0]
    assert str(principal.api_key_id) == key_id

    rotated = runner.invoke(cli, ["apikey", "rotate", key_id, "--grace-hours", "1"], env=cli_env)
    assert rotated.exit_code == 0, rotated.output
    new_key = rotated.stdout.strip().splitlines()[-1]
    assert container.access.authenticate(new_key).scopes == {"payments:read"}
    container.access.authenticate(key)  # still valid during the grace period

    revoked = runner.invoke(cli, ["apikey", "revoke", key_id], env=cli_env)
    assert revoked.exit_code == 0, revoked.output
    with pytest.raises(Exception, match="not valid"):
        container.access.authenticate(key)
    bad_scope = runner.invoke(
        cli, ["apikey", "create", "--org", "terr", "--scope", "root"], env=cli_env
    )
    assert bad_scope.exit_code == 2

    treasurer = runner.invoke(
        cli,
        ["treasurer", "create", "--org", "ppo", "--login", "olga", "--name", "Ольга", "--totp"],
        input="a long enough password\na long enough password\n",
        env=cli_env,
    )
    assert treasurer.exit_code == 0, treasurer.output
    assert "otpauth://totp/" in treasurer.output
    taken = runner.invoke(
        cli,
        ["treasurer", "create", "--org", "ppo", "--login", "olga", "--name", "O"],
        env={**cli_env, "VZNOS_TREASURER_PASSWORD": "another long password"},
    )
    assert taken.exit_code == 2 and "taken" in taken.output


def test_sign_in_attempts_are_limited_per_login_and_per_address(
    container: Container, tree: dict[str, str], http: TestClient
) -> None:
    """Password guessing gets a 429 with Retry-After: 10 attempts a minute on one login (even
    the right password then waits), 30 a minute from one address across logins."""
    container.access.create_treasurer(
        org_code="terr",
        login="anna",
        display_name="Анна",
        password="correct horse battery",
        scopes=["payments:read"],
        with_totp=False,
    )
    for _ in range(10):
        assert http.post("/v1/sessions", json={"login": "anna", "password": "x"}).status_code == 401
    right = {"login": "anna", "password": "correct horse battery"}
    limited = http.post("/v1/sessions", json=right)
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["type"].endswith("/rate-limited")
    with container.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TreasurerSession)) == 0
    # Another login from the same address is not yet limited …
    assert http.post("/v1/sessions", json={"login": "boris", "password": "x"}).status_code == 401
    # … until the address has tried 30 times in the minute.
    codes = [
        http.post("/v1/sessions", json={"login": f"guess-{n}", "password": "x"}).status_code
        for n in range(25)
    ]
    assert codes[:18] == [401] * 18 and codes[-1] == 429


def test_a_treasurer_signs_out_and_the_token_stops_working(
    container: Container, tree: dict[str, str], http: TestClient
) -> None:
    container.access.create_treasurer(
        org_code="terr",
        login="olga",
        display_name="Ольга",
        password="correct horse battery",
        scopes=["payments:read"],
        with_totp=False,
    )
    signed = http.post("/v1/sessions", json={"login": "olga", "password": "correct horse battery"})
    assert signed.status_code == 201, signed.text
    token = signed.json()["token"]
    assert http.get("/v1/organizations", headers=bearer(token)).status_code == 200
    out = http.delete("/v1/sessions/current", headers=bearer(token))
    assert out.status_code == 204, out.text
    assert http.get("/v1/organizations", headers=bearer(token)).status_code == 401
    assert http.delete("/v1/sessions/current", headers=bearer(token)).status_code == 401
    assert http.delete("/v1/sessions/current").status_code == 401
    # An API key is not a session: revoking keys has its own endpoint.
    key = container.access.create_api_key("terr", "crm", ["payments:read"])[1]
    not_session = http.delete("/v1/sessions/current", headers=bearer(key))
    assert not_session.status_code == 404
    assert not_session.json()["type"].endswith("/session-not-found")
    assert http.get("/v1/organizations", headers=bearer(key)).status_code == 200
    with container.sessions() as session:
        actions = session.scalars(select(AuditEvent.action)).all()
    assert "treasurer.signed_out" in actions
