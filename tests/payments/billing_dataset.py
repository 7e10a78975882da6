"""Chargeable members for the chaos tests and the billing benchmark (bench/billing_bench.py),
made in bulk.

Making a member chargeable through the application takes a checkout per member; a benchmark of
100,000 members cannot afford that and does not measure it. So members and active subscriptions are
inserted set-based on the server, members' data keys and encrypted card tokens in bulk from
Python (as the application would write them), and the same card tokens are seeded into the
emulator as saved cards. Ids are derived from a prefix and a number (md5 as uuid), so
Python and SQL agree on them without shipping lists around.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, datetime

from sqlalchemy import Engine, text

from core.crypto import DataKey, KeyRing
from members.pii import data_key_aad, field_aad
from payments.subscriptions.models import TOKEN_INDEX

AMOUNT_KOPECKS = 35_000
# Members without personal data: billing never reads it.
_INSERT_MEMBERS = """
INSERT INTO members (id, external_id, organization_id, created_at, updated_at)
SELECT md5(:prefix || 'm' || n)::uuid, :prefix || '-' || n, :org, :now, :now
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n
"""
# Each member's data key and card token, encrypted in Python exactly as the application does.
_INSERT_KEYS = """
INSERT INTO member_data_keys (member_id, version, kek_id, wrapped_key, created_at)
VALUES (:member_id, 1, :kek_id, :wrapped_key, :now)
"""
_INSERT_CARDS = """
INSERT INTO payment_methods (id, member_id, shop_id, gateway_token_ciphertext,
                             gateway_token_index, card_type, card_first6, card_last4,
                             expiry_month, expiry_year, created_at)
VALUES (:id, :member_id, :shop, :token, :token_index, 'MasterCard', '555555', '4444', 12, 2030,
        :now)
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


def _md5_uuid(text_value: str) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(text_value.encode()).hexdigest())


def card_token(prefix: str, n: int) -> str:
    return str(_md5_uuid(f"{prefix}t{n}"))


def _keys_and_cards(
    keyring: KeyRing, *, prefix: str, shop_id: str, first: int, last: int, now: datetime
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    keys: list[dict[str, object]] = []
    cards: list[dict[str, object]] = []
    for n in range(first, last + 1):
        member_id = _md5_uuid(f"{prefix}m{n}")
        method_id = _md5_uuid(f"{prefix}p{n}")
        data_key = DataKey.generate(1)
        token = card_token(prefix, n)
        keys.append(
            {
                "member_id": member_id,
                "kek_id": keyring.current_key_id,
                "wrapped_key": keyring.wrap(data_key, data_key_aad(member_id)),
                "now": now,
            }
        )
        aad = field_aad("payment_methods", "gateway_token_ciphertext", method_id, member_id)
        cards.append(
            {
                "id": method_id,
                "member_id": member_id,
                "shop": shop_id,
                "token": data_key.encrypt(token, aad),
                "token_index": keyring.blind_index(TOKEN_INDEX, token),
                "now": now,
            }
        )
    return keys, cards


def card_tokens(prefix: str, count: int) -> list[str]:
    return [card_token(prefix, n) for n in range(1, count + 1)]


def seed_subscriptions(
    engine: Engine,
    *,
    keyring: KeyRing,
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
        keys, cards = _keys_and_cards(
            keyring,
            prefix=prefix,
            shop_id=shop_id,
            first=first,
            last=min(count, first + chunk - 1),
            now=now,
        )
        with engine.begin() as connection:
            connection.execute(text(_INSERT_MEMBERS), params)
            connection.execute(text(_INSERT_KEYS), keys)
            connection.execute(text(_INSERT_CARDS), cards)
            connection.execute(text(_INSERT_SUBSCRIPTIONS), params)
