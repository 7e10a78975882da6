"""Chargeable members for the chaos tests and the billing benchmark (bench/billing_bench.py),
made in bulk.

Making a member chargeable through the application takes a checkout per member; a benchmark of
100,000 members cannot afford that and does not measure it. So members, their saved cards and
active subscriptions are inserted set-based on the server, and the same card tokens are seeded
into the emulator as saved cards. Ids are derived from a prefix and a number (md5 as uuid), so
Python and SQL agree on them without shipping lists around.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, datetime

from sqlalchemy import Engine, text

AMOUNT_KOPECKS = 35_000
_INSERT_MEMBERS = """
INSERT INTO members (id, external_id, organization_id, full_name, created_at, updated_at)
SELECT md5(:prefix || 'm' || n)::uuid, :prefix || '-' || n, :org, 'Member ' || n, :now, :now
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n
"""
_INSERT_CARDS = """
INSERT INTO payment_methods (id, member_id, shop_id, gateway_token, card_type, card_first6,
                             card_last4, expiry_month, expiry_year, created_at)
SELECT md5(:prefix || 'p' || n)::uuid, md5(:prefix || 'm' || n)::uuid, :shop,
       md5(:prefix || 't' || n)::uuid::text, 'MasterCard', '555555', '4444', 12, 2030, :now
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n
"""
_INSERT_SUBSCRIPTIONS = """
INSERT INTO subscriptions (id, member_id, organization_id, status, amount_kopecks, currency,
                           billing_day, start_period, consent_version, consent_accepted_at,
                           return_url, payment_method_id, created_at, status_changed_at,
                           activated_at)
SELECT md5(:prefix || 's' || n)::uuid, md5(:prefix || 'm' || n)::uuid, :org, 'active', :amount,
       'RUB', 1 + n % 28, :start, 'bench', :now, 'https://example.org/dues',
       md5(:prefix || 'p' || n)::uuid, :now, :now, :now
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n
"""


def card_token(prefix: str, n: int) -> str:
    return str(uuid.UUID(hashlib.md5(f"{prefix}t{n}".encode()).hexdigest()))


def card_tokens(prefix: str, count: int) -> list[str]:
    return [card_token(prefix, n) for n in range(1, count + 1)]


def seed_subscriptions(
    engine: Engine,
    *,
    organization_id: uuid.UUID,
    shop_id: str,
    count: int,
    start_period: date,
    now: datetime,
    prefix: str,
    chunk: int = 50_000,
) -> None:
    """`count` members, each with a saved card in `shop_id` and an active subscription."""
    for first in range(1, count + 1, chunk):
        params = {
            "prefix": prefix,
            "org": organization_id,
            "shop": shop_id,
            "now": now,
            "start": start_period,
            "amount": AMOUNT_KOPECKS,
            "first": first,
            "last": min(count, first + chunk - 1),
        }
        with engine.begin() as connection:
            for statement in (_INSERT_MEMBERS, _INSERT_CARDS, _INSERT_SUBSCRIPTIONS):
                connection.execute(text(statement), params)
