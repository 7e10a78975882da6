"""T27: personal data encrypted at rest, found by blind index, bound to its member; master key
rotation and data key rotation keep everything readable; erasure makes a member unreadable by
every path, also from a backup taken before it once the master key was rotated; the ledger
stays balanced throughout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from core.crypto import CryptoError, KeyRing, MasterKey, parse_index_key, parse_master_keys
from core.db import make_engine, make_sessions
from core.ssrf import UrlGuard
from ledger.reads import LedgerReads
from members.models import Member, MemberDataKey
from members.pii import DataKeyMissing, MemberVault
from members.service import Principal
from payments.charges.models import Charge, ChargeAttempt
from payments.charges.service import card_token as open_card_token
from payments.gateway.emulator import EmulatorServer
from payments.shops.schemas import ShopPut
from payments.subscriptions.models import PAYMENT_METHOD_COLUMNS, PaymentMethod, Subscription
from tests.conftest import (
    BLIND_INDEX_KEY,
    MASTER_KEY,
    SECRET_KEY,
    SHOP_ID,
    Subscribe,
    Workers,
)
from vznos.broker import build_broker
from vznos.checks import run_checks
from vznos.container import Container, GatewayConfig, build_container
from webhooks.outbound.delivery import signing_secrets
from webhooks.outbound.models import WebhookEndpoint
from webhooks.outbound.schemas import WebhookEndpointCreate
from webhooks.outbound.service import WebhookEndpointService

NAME = "Анна Смирнова"
EMAIL = "anna.smirnova@example.org"
PHONE = "+79161234567"
BIRTH_DATE = "1984-03-17"
OTHER = {"organization_code": "ppo-1", "full_name": "Олег Кузнецов", "email": "oleg@example.org"}

INDEX = parse_index_key(BLIND_INDEX_KEY)
OLD_KEYS = parse_master_keys(MASTER_KEY)
NEW_KEY = MasterKey.generate("test2")


def every_row_as_text(database_url: str) -> str:
    """Every row of every table, as PostgreSQL prints it: what a SQL reader can see."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            tables = connection.scalars(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).all()
            return "\n".join(
                connection.scalar(
                    text(f"SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM {t} t")
                )
                or ""
                for t in tables
            )
    finally:
        engine.dispose()


@pytest.fixture
def with_keyring(
    container: Container, database_url: str, emulator: EmulatorServer
) -> Iterator[Callable[[KeyRing], Container]]:
    """The same database and shop, served by a process configured with other master keys."""
    built: list[Container] = []

    def make(keyring: KeyRing) -> Container:
        other = build_container(
            container.settings,
            database_url=database_url,
            gateway=GatewayConfig(SHOP_ID, SECRET_KEY, emulator.api_url),
            clock=container.clock,
            broker=build_broker(None),
            keyring=keyring,
        )
        built.append(other)
        return other

    yield make
    for other in built:
        other.close()


@pytest.fixture
def member(client: httpx.Client, subscribe: Subscribe) -> uuid.UUID:
    """A paying member (saved card, ledger entries) with every kind of personal data."""
    subscribe("m-1")
    response = client.put(
        "/v1/members/m-1",
        json={
            "organization_code": "ppo-1",
            "full_name": NAME,
            "email": EMAIL,
            "phone": PHONE,
            "birth_date": BIRTH_DATE,
        },
    )
    assert response.status_code == 200, response.text
    return uuid.UUID(response.json()["id"])


def card_token(emulator: EmulatorServer) -> str:
    tokens = {p["payment_method_id"] for p in emulator.state.payments() if p["payment_method_id"]}
    assert len(tokens) == 1
    return str(tokens.pop())


def endpoint_service(container: Container) -> WebhookEndpointService:
    return WebhookEndpointService(
        sessions=container.sessions,
        clock=container.clock,
        guard=UrlGuard(allow_private_targets=True),
        deliveries=container.outbound,
        keyring=container.keyring,
    )


def test_personal_data_and_card_tokens_are_never_stored_in_plaintext(
    container: Container,
    database_url: str,
    client: httpx.Client,
    emulator: EmulatorServer,
    member: uuid.UUID,
) -> None:
    read = client.get("/v1/members/m-1").json()
    assert (read["full_name"], read["email"], read["phone"], read["birth_date"]) == (
        NAME,
        EMAIL,
        PHONE,
        BIRTH_DATE,
    )
    created = endpoint_service(container).create(
        container.access.authenticate(client.headers["Authorization"].split()[1]),
        WebhookEndpointCreate(url="http://127.0.0.1:9/hooks"),
    )
    dump = every_row_as_text(database_url)
    for plaintext in (NAME, "Смирнова", EMAIL, PHONE, "9161234567", BIRTH_DATE, created.secret):
        assert plaintext not in dump
    # YooKassa names a card saved with a payment by that payment's id, which the books and the
    # inbox keep as a plain reference; what charges the card again, the token on the saved
    # method and on automatic charges, is stored only encrypted.
    engine = create_engine(database_url)
    with engine.connect() as connection:
        methods = connection.scalar(text("SELECT string_agg(t::text, '') FROM payment_methods t"))
        bodies = connection.scalar(
            text("SELECT string_agg(request_body::text, '') FROM charge_attempts")
        )
    engine.dispose()
    assert methods and card_token(emulator) not in methods
    assert bodies and "payment_method_id" not in bodies
    with container.sessions() as session:
        row = session.get(Member, member)
        assert row is not None and row.email_ciphertext is not None
        assert row.email_ciphertext.startswith("vzd1.1.")
        key = session.scalars(select(MemberDataKey)).first()
        assert key is not None and key.kek_id == "test1"
        assert key.wrapped_key.startswith("vzk1.test1.")


def test_members_are_found_by_email_or_phone_through_the_blind_index(
    container: Container, client: httpx.Client, member: uuid.UUID, principal: Principal
) -> None:
    assert client.put("/v1/members/m-2", json=OTHER).status_code == 201
    find = container.members.find_by_contact
    assert [m.external_id for m in find(principal, email=" Anna.Smirnova@EXAMPLE.org")] == ["m-1"]
    assert [m.external_id for m in find(principal, phone=PHONE)] == ["m-1"]
    assert find(principal, email="nobody@example.org") == []
    with container.sessions() as session:
        row = session.get(Member, member)
        assert row is not None and row.email_index == container.vault.email_index(EMAIL)
        assert row.email_index != container.vault.phone_index(EMAIL)  # indexes kept apart


def test_a_ciphertext_moved_to_another_member_fails_to_decrypt(
    container: Container, client: httpx.Client, member: uuid.UUID
) -> None:
    other = uuid.UUID(client.put("/v1/members/m-2", json=OTHER).json()["id"])
    with container.sessions() as session, session.begin():
        # Another member's email, name and data key copied over m-2's.
        session.execute(
            text(
                "UPDATE members SET email_ciphertext = src.email_ciphertext"
                " FROM members src WHERE src.id = :src AND members.id = :dst"
            ),
            {"src": member, "dst": other},
        )
    with container.sessions() as session:
        victim = session.get(Member, other)
        assert victim is not None
        with pytest.raises(CryptoError):
            container.vault.read(session, victim)
    with container.sessions() as session, session.begin():
        session.execute(
            text(
                "UPDATE member_data_keys SET wrapped_key = src.wrapped_key"
                " FROM member_data_keys src WHERE src.member_id = :src"
                " AND member_data_keys.member_id = :dst"
            ),
            {"src": member, "dst": other},
        )
    with container.sessions() as session, pytest.raises(CryptoError):
        container.vault.data_key(session, other)
    # The saved card's token, moved onto another member's card row, fails too.
    with container.sessions() as session:
        method = session.scalars(select(PaymentMethod)).one()
        assert method.gateway_token_ciphertext is not None
        with pytest.raises(CryptoError):
            container.vault.decrypt(
                session,
                member,
                "payment_methods",
                "gateway_token_ciphertext",
                uuid.uuid4(),
                method.gateway_token_ciphertext,
            )


def test_master_key_rotation_keeps_everything_readable_and_the_old_key_can_go(
    container: Container,
    client: httpx.Client,
    member: uuid.UUID,
    with_keyring: Callable[[KeyRing], Container],
    workers: Workers,
    emulator: EmulatorServer,
) -> None:
    principal = container.access.authenticate(client.headers["Authorization"].split()[1])
    created = endpoint_service(container).create(
        principal, WebhookEndpointCreate(url="http://127.0.0.1:9/hooks")
    )
    endpoint_service(container).rotate_secret(principal, created.id)  # a previous secret too
    emulator.state.add_shop("506751", "live_own_shop_key")
    container.shops.put(
        principal, "ppo-1", ShopPut(shop_id="506751", secret_key=SecretStr("live_own_shop_key"))
    )
    both = with_keyring(KeyRing([NEW_KEY, *OLD_KEYS], INDEX))
    assert both.keys.status().removable == ()
    # One data key, two webhook secrets and a shop secret, one row a batch.
    assert both.keys.rotate(batch_size=1) == 4
    status = both.keys.status()
    assert status.pending == 0 and status.removable == ("test1",)
    assert status.usage["member_data_keys"] == {"test2": 1}
    assert status.usage["gateway_shops.secret_sealed"] == {"test2": 1}

    only_new = with_keyring(KeyRing([NEW_KEY], INDEX))
    assert only_new.members.get(principal, "m-1").email == EMAIL
    assert [m.external_id for m in only_new.members.find_by_contact(principal, phone=PHONE)] == [
        "m-1"
    ]
    assert only_new.gateways.for_shop("506751").shop_id == "506751"  # its secret opens
    with only_new.sessions() as session:
        endpoint = session.get(WebhookEndpoint, created.id)
        assert endpoint is not None
        assert signing_secrets(endpoint, only_new.clock.now(), only_new.keyring)[0].startswith(
            "whsec_"
        )
    # The saved card is still usable: next month's charge decrypts the token to send it.
    assert only_new.billing.run(date(2026, 12, 1)).charges_created == 1
    with only_new.sessions() as session:
        attempt = session.scalars(
            select(ChargeAttempt)
            .join(Charge, Charge.id == ChargeAttempt.charge_id)
            .where(Charge.period_month == date(2026, 12, 1))
        ).one()
        assert "payment_method_id" not in attempt.request_body  # the token is not stored
    only_new.charges.submit(attempt.id)
    with only_new.sessions() as session:
        charge = session.get(Charge, attempt.charge_id)
        assert charge is not None and charge.status == "succeeded"
    december = [p for p in emulator.state.payments() if "12.2026" in str(p["description"])]
    assert december and december[0]["payment_method_id"] == card_token(emulator)


def test_data_key_rotation_re_encrypts_the_member_and_destroys_the_old_key(
    container: Container, client: httpx.Client, member: uuid.UUID, emulator: EmulatorServer
) -> None:
    with container.sessions() as session:
        before = session.get(Member, member)
        assert before is not None
        old_email = before.email_ciphertext
        old_key = container.vault.data_key(session, member)
    assert container.members.rotate_data_key("m-1") == 2
    with container.sessions() as session:
        versions = session.scalars(
            select(MemberDataKey.version).where(MemberDataKey.member_id == member)
        ).all()
        assert versions == [2]
        after = session.get(Member, member)
        assert after is not None and after.email_ciphertext != old_email
        assert after.email_ciphertext is not None and after.email_ciphertext.startswith("vzd1.2.")
        method = session.scalars(select(PaymentMethod)).one()
        assert method.gateway_token_ciphertext is not None
        assert method.gateway_token_ciphertext.startswith("vzd1.2.")
        with pytest.raises(CryptoError):  # the old key opens nothing that is stored now
            old_key.decrypt(after.email_ciphertext, f"members.email_ciphertext:{member}@{member}")
    assert client.get("/v1/members/m-1").json()["email"] == EMAIL
    with container.sessions() as session:
        method = session.scalars(select(PaymentMethod)).one()
        assert open_card_token(session, container.vault, method) == card_token(emulator)


def test_erasure_makes_the_member_unreadable_and_keeps_the_books_balanced(
    container: Container,
    database_url: str,
    client: httpx.Client,
    member: uuid.UUID,
    principal: Principal,
) -> None:
    ledger = LedgerReads(container.sessions)
    account_before = ledger.member_account(member)
    erased = client.delete("/v1/members/m-1")
    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert body["pseudonym"] == f"erased:{member}" and body["subscriptions_canceled"] == 1

    # Through the app: the old id is unknown, the pseudonym is gone, lookups find nothing.
    assert client.get("/v1/members/m-1").status_code == 404
    gone = client.get(f"/v1/members/erased:{member}")
    assert gone.status_code == 410 and gone.headers["content-type"] == "application/problem+json"
    assert container.members.find_by_contact(principal, email=EMAIL) == []
    assert client.delete("/v1/members/m-1").status_code == 404
    assert client.post("/v1/members/m-1/subscriptions", json={}).status_code in (404, 422)
    with container.sessions() as session:
        subscription = session.scalars(select(Subscription)).one()
        assert (subscription.status, subscription.cancel_cause) == ("canceled", "member_erased")
        row = session.get(Member, member)
        assert row is not None
        with pytest.raises(DataKeyMissing):
            container.vault.read(session, row)

    # Through SQL: no key, no ciphertext, no blind index, no plaintext.
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM member_data_keys")) == 0
        leftovers = connection.execute(
            text(
                "SELECT full_name_ciphertext, email_ciphertext, phone_ciphertext,"
                " birth_date_ciphertext, email_index, phone_index FROM members"
            )
        ).one()
        assert set(leftovers) == {None}
        tokens = connection.scalars(
            text("SELECT gateway_token_ciphertext FROM payment_methods")
        ).all()
        assert tokens == [None]
    engine.dispose()
    dump = every_row_as_text(database_url)
    assert NAME not in dump and EMAIL not in dump and PHONE not in dump

    # The books: the same amounts under the pseudonymous member id, and every check holds.
    account_after = ledger.member_account(member)
    assert account_after == account_before
    assert run_checks(container) == []


def test_operator_erases_a_member_from_the_command_line(
    client: httpx.Client, member: uuid.UUID, cli_env: dict[str, str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vznos", "members", "erase", "m-1", "--yes"],
        env={**os.environ, **cli_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"erased:{member}" in result.stdout
    assert client.get("/v1/members/m-1").status_code == 404
    again = subprocess.run(
        [sys.executable, "-m", "vznos", "members", "erase", "m-1", "--yes"],
        env={**os.environ, **cli_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 2 and "no member" in again.stderr


@contextmanager
def scratch_database(database_url: str) -> Iterator[str]:
    url = make_url(database_url)
    name = f"{url.database}_restore"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump is not installed")
def test_a_backup_taken_before_erasure_cannot_revive_the_member_once_the_key_rotated(
    container: Container,
    database_url: str,
    client: httpx.Client,
    member: uuid.UUID,
    with_keyring: Callable[[KeyRing], Container],
    tmp_path: Path,
) -> None:
    backup = tmp_path / "before-erasure.dump"
    subprocess.run(
        ["pg_dump", "--format=custom", f"--file={backup}", libpq_url(database_url)], check=True
    )
    # The backup holds no plaintext either.
    plain = subprocess.run(
        ["pg_restore", "--file=-", str(backup)], check=True, capture_output=True, text=True
    ).stdout
    assert NAME not in plain and EMAIL not in plain and PHONE not in plain

    assert client.delete("/v1/members/m-1").status_code == 200
    # The erasure window closes: a new master key, everything re-wrapped, the old key destroyed.
    both = with_keyring(KeyRing([NEW_KEY, *OLD_KEYS], INDEX))
    both.keys.rotate()
    assert both.keys.status().removable == ("test1",)
    keyring_now = KeyRing([NEW_KEY], INDEX)

    with scratch_database(database_url) as restored_url:
        subprocess.run(
            ["pg_restore", "--no-owner", f"--dbname={libpq_url(restored_url)}", str(backup)],
            check=True,
        )
        engine = make_engine(restored_url)
        vault = MemberVault(keyring_now, PAYMENT_METHOD_COLUMNS)
        with make_sessions(engine)() as session:
            row = session.scalars(select(Member).where(Member.external_id == "m-1")).one()
            assert row.full_name_ciphertext is not None  # the backup still has the ciphertext…
            with pytest.raises(CryptoError, match="'test1' is not configured"):
                vault.read(session, row)  # …but nothing can open it any more
        engine.dispose()
    assert run_checks(container) == []


def test_operator_rotates_the_master_key_from_the_command_line(
    container: Container, client: httpx.Client, member: uuid.UUID, cli_env: dict[str, str]
) -> None:
    def vznos(*args: str, master_key: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vznos", *args],
            env={**os.environ, **cli_env, "VZNOS_MASTER_KEY": master_key},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    generated = vznos("keys", "generate", "test2", master_key=MASTER_KEY)
    assert generated.returncode == 0 and generated.stdout.startswith("test2:")
    both = f"{generated.stdout.strip()},{MASTER_KEY}"
    rotated = vznos("keys", "rotate", "--batch-size", "1", master_key=both)
    assert rotated.returncode == 0, rotated.stderr
    assert "member_data_keys: test2: 1" in rotated.stdout
    assert "safe to remove from VZNOS_MASTER_KEY: test1" in rotated.stdout
    only_new = vznos("keys", "status", master_key=generated.stdout.strip())
    assert only_new.returncode == 0 and "current master key: test2" in only_new.stdout
    bad = vznos("keys", "generate", "no spaces allowed", master_key=MASTER_KEY)
    assert bad.returncode == 2
