"""Migration 0011 encrypts the rows an existing installation already has, and the application
reads what it wrote."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from core.crypto import KeyRing, parse_index_key, parse_master_keys
from core.db import make_engine, make_sessions
from members.models import Member
from members.pii import MemberVault
from payments.charges.models import ChargeAttempt
from payments.charges.service import card_token, with_card_token
from payments.subscriptions.models import PAYMENT_METHOD_COLUMNS, PaymentMethod
from tests.conftest import BLIND_INDEX_KEY, MASTER_KEY
from vznos.migrate import upgrade
from webhooks.outbound.delivery import signing_secrets
from webhooks.outbound.models import WebhookEndpoint

KEYRING = KeyRing(parse_master_keys(MASTER_KEY), parse_index_key(BLIND_INDEX_KEY))
ORG, MEMBER, METHOD, SUBSCRIPTION, CHARGE, ATTEMPT, ENDPOINT = (uuid.uuid4() for _ in range(7))
TOKEN = "2f1c0a7e-000f-5000-9000-1b2c3d4e5f60"


@pytest.fixture
def old_database(database_url: str) -> Iterator[str]:
    url = make_url(database_url)
    name = f"{url.database}_0003"
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


def test_existing_rows_are_encrypted_and_stay_readable(old_database: str) -> None:
    upgrade(old_database, "0003")
    engine = create_engine(old_database)
    with engine.begin() as connection:
        for statement, params in [
            (
                "INSERT INTO organizations (id, code, name, timezone) VALUES"
                " (:org, 'ppo', 'ППО', 'Europe/Moscow')",
                {},
            ),
            (
                "INSERT INTO members (id, external_id, organization_id, full_name, email, phone,"
                " created_at, updated_at) VALUES (:member, 'm-old', :org, 'Мария Иванова',"
                " 'maria@example.org', '+79031112233', now(), now())",
                {},
            ),
            (
                "INSERT INTO payment_methods (id, member_id, shop_id, gateway_token, created_at)"
                " VALUES (:method, :member, '100500', :token, now())",
                {},
            ),
            (
                "INSERT INTO subscriptions (id, member_id, organization_id, status,"
                " amount_kopecks, currency, billing_day, start_period, consent_version,"
                " consent_accepted_at, return_url, payment_method_id, created_at,"
                " status_changed_at) VALUES (:subscription, :member, :org, 'active', 35000,"
                " 'RUB', 5, '2026-11-01', 'v1', now(), 'https://crm.example.org', :method,"
                " now(), now())",
                {},
            ),
            (
                "INSERT INTO charges (id, subscription_id, member_id, organization_id,"
                " period_month, kind, status, amount_kopecks, currency, created_at) VALUES"
                " (:charge, :subscription, :member, :org, '2026-12-01', 'recurring', 'pending',"
                " 35000, 'RUB', now())",
                {},
            ),
            (
                "INSERT INTO charge_attempts (id, charge_id, attempt_no, status, shop_id,"
                " request_body, created_at, next_check_at, checks) VALUES (:attempt, :charge, 1,"
                " 'created', '100500', CAST(:body AS jsonb), now(), now(), 0)",
                {"body": json.dumps({"capture": True, "payment_method_id": TOKEN})},
            ),
            (
                "INSERT INTO webhook_endpoints (id, organization_id, url, event_types, status,"
                " secret, previous_secret, previous_secret_expires_at, created_at, updated_at)"
                " VALUES (:endpoint, :org, 'https://crm.example.org/hooks', '{}', 'active',"
                " 'whsec_current', 'whsec_previous', now() + interval '1 day', now(), now())",
                {},
            ),
        ]:
            connection.execute(
                text(statement),
                {
                    "org": ORG,
                    "member": MEMBER,
                    "method": METHOD,
                    "token": TOKEN,
                    "subscription": SUBSCRIPTION,
                    "charge": CHARGE,
                    "attempt": ATTEMPT,
                    "endpoint": ENDPOINT,
                    **params,
                },
            )
    engine.dispose()

    upgrade(old_database, keyring=KEYRING)

    engine = make_engine(old_database)
    with engine.connect() as connection:
        everything = "\n".join(
            connection.scalar(text(f"SELECT coalesce(string_agg(t::text, ''), '') FROM {t} t"))
            for t in ("members", "payment_methods", "charge_attempts", "webhook_endpoints")
        )
    for plaintext in ("Мария Иванова", "maria@example.org", "+79031112233", TOKEN, "whsec_"):
        assert plaintext not in everything
    vault = MemberVault(KEYRING, PAYMENT_METHOD_COLUMNS)
    with make_sessions(engine)() as session:
        member = session.get(Member, MEMBER)
        assert member is not None
        personal = vault.read(session, member)
        assert (personal.full_name, personal.email, personal.phone) == (
            "Мария Иванова",
            "maria@example.org",
            "+79031112233",
        )
        assert member.email_index == vault.email_index("maria@example.org")
        method = session.get(PaymentMethod, METHOD)
        assert method is not None and card_token(session, vault, method) == TOKEN
        attempt = session.get(ChargeAttempt, ATTEMPT)
        assert attempt is not None and attempt.payment_method_id == METHOD
        assert attempt.request_body == {"capture": True}
        assert with_card_token(session, vault, attempt)["payment_method_id"] == TOKEN
        endpoint = session.scalars(select(WebhookEndpoint)).one()
        assert signing_secrets(endpoint, endpoint.created_at, KEYRING) == [
            "whsec_current",
            "whsec_previous",
        ]
    engine.dispose()
