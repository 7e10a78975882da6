"""personal data encrypted at rest: member data keys, ciphertext columns, blind indexes

Members' names, emails and phones and saved card tokens move into ciphertext under a data key
per member (wrapped by the master key); webhook endpoint secrets are sealed by the master key;
the card token leaves charge_attempts.request_body (the attempt names its payment method
instead). Existing rows are encrypted here, with the key ring the application uses, and the
plaintext columns are dropped.

The formats below are frozen copies of members/pii.py and webhooks/outbound/models.py at the
time of writing (tests check the application reads what this migration writes).

Revision ID: 0011_pii
Revises: 0007_self_service
Create Date: 2026-11-23 13:30:00
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0011_pii"
down_revision = "0007_self_service"
branch_labels = None
depends_on = None


def _keyring() -> Any:
    keyring = context.config.attributes.get("keyring")
    if keyring is None:
        from core.settings import Settings
        from vznos.keys import build_keyring

        keyring = build_keyring(Settings())
    return keyring


def _field_aad(table: str, column: str, row_id: object, member_id: object) -> str:
    return f"{table}.{column}:{row_id}@{member_id}"


def upgrade() -> None:
    op.create_table(
        "member_data_keys",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kek_id", sa.String(length=32), nullable=False),
        sa.Column("wrapped_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rewrapped_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("version > 0", name=op.f("ck_member_data_keys_version_positive")),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_data_keys_member_id_members")
        ),
        sa.PrimaryKeyConstraint("member_id", "version", name=op.f("pk_member_data_keys")),
    )
    op.create_index(
        op.f("ix_member_data_keys_kek_id"), "member_data_keys", ["kek_id"], unique=False
    )
    for column in (
        "full_name_ciphertext",
        "email_ciphertext",
        "phone_ciphertext",
        "birth_date_ciphertext",
    ):
        op.add_column("members", sa.Column(column, sa.Text(), nullable=True))
    op.add_column("members", sa.Column("email_index", sa.String(length=64), nullable=True))
    op.add_column("members", sa.Column("phone_index", sa.String(length=64), nullable=True))
    op.add_column("members", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_members_email_index"), "members", ["email_index"], unique=False)
    op.create_index(op.f("ix_members_phone_index"), "members", ["phone_index"], unique=False)

    op.add_column(
        "payment_methods", sa.Column("gateway_token_ciphertext", sa.Text(), nullable=True)
    )
    op.add_column(
        "payment_methods",
        sa.Column("gateway_token_index", sa.String(length=64), nullable=True),
    )
    op.add_column("charge_attempts", sa.Column("payment_method_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_charge_attempts_payment_method_id_payment_methods"),
        "charge_attempts",
        "payment_methods",
        ["payment_method_id"],
        ["id"],
    )
    op.add_column("webhook_endpoints", sa.Column("secret_sealed", sa.Text(), nullable=True))
    op.add_column(
        "webhook_endpoints", sa.Column("previous_secret_sealed", sa.Text(), nullable=True)
    )

    _encrypt_existing_rows()

    op.drop_column("members", "full_name")
    op.drop_column("members", "email")
    op.drop_column("members", "phone")
    op.drop_index("uq_payment_methods_shop_token", table_name="payment_methods")
    op.drop_column("payment_methods", "gateway_token")
    op.create_index(
        "uq_payment_methods_shop_token",
        "payment_methods",
        ["shop_id", "gateway_token_index"],
        unique=True,
    )
    op.drop_column("webhook_endpoints", "secret")
    op.drop_column("webhook_endpoints", "previous_secret")
    op.alter_column("webhook_endpoints", "secret_sealed", nullable=False)


def _encrypt_existing_rows() -> None:
    bind = op.get_bind()
    has_rows = bind.execute(
        sa.text("SELECT EXISTS (SELECT 1 FROM members) OR EXISTS (SELECT 1 FROM webhook_endpoints)")
    ).scalar_one()
    if not has_rows:
        return  # a fresh database: no keys needed
    from core.crypto import DataKey

    keyring = _keyring()
    now = datetime.now(UTC)
    keys: dict[uuid.UUID, DataKey] = {}
    members = bind.execute(sa.text("SELECT id, full_name, email, phone FROM members")).all()
    for member in members:
        key = DataKey.generate(1)
        keys[member.id] = key
        bind.execute(
            sa.text(
                "INSERT INTO member_data_keys (member_id, version, kek_id, wrapped_key,"
                " created_at) VALUES (:member_id, 1, :kek_id, :wrapped, :now)"
            ),
            {
                "member_id": member.id,
                "kek_id": keyring.current_key_id,
                "wrapped": keyring.wrap(key, f"member_data_keys:{member.id}"),
                "now": now,
            },
        )

        def seal(column: str, value: str | None, member_id: uuid.UUID = member.id) -> str | None:
            if value is None:
                return None
            aad = _field_aad("members", column, member_id, member_id)
            return keys[member_id].encrypt(value, aad)

        email = member.email
        phone = member.phone
        bind.execute(
            sa.text(
                "UPDATE members SET full_name_ciphertext = :name, email_ciphertext = :email,"
                " phone_ciphertext = :phone, email_index = :email_index,"
                " phone_index = :phone_index WHERE id = :id"
            ),
            {
                "id": member.id,
                "name": seal("full_name_ciphertext", member.full_name),
                "email": seal("email_ciphertext", email),
                "phone": seal("phone_ciphertext", phone),
                "email_index": keyring.blind_index("member.email", email.strip().lower())
                if email
                else None,
                "phone_index": keyring.blind_index(
                    "member.phone", "".join(c for c in phone if c.isdigit() or c == "+")
                )
                if phone
                else None,
            },
        )

    methods = bind.execute(
        sa.text("SELECT id, member_id, shop_id, gateway_token FROM payment_methods")
    ).all()
    for method in methods:
        aad = _field_aad("payment_methods", "gateway_token_ciphertext", method.id, method.member_id)
        bind.execute(
            sa.text(
                "UPDATE payment_methods SET gateway_token_ciphertext = :token,"
                " gateway_token_index = :token_index WHERE id = :id"
            ),
            {
                "id": method.id,
                "token": keys[method.member_id].encrypt(method.gateway_token, aad),
                "token_index": keyring.blind_index(
                    "payment_method.gateway_token", method.gateway_token
                ),
            },
        )
        # Automatic charges stored the token in their body: name the payment method instead.
        bind.execute(
            sa.text(
                "UPDATE charge_attempts SET payment_method_id = :id,"
                " request_body = request_body - 'payment_method_id'"
                " WHERE shop_id = :shop_id AND request_body ->> 'payment_method_id' = :token"
            ),
            {"id": method.id, "shop_id": method.shop_id, "token": method.gateway_token},
        )

    endpoints = bind.execute(
        sa.text("SELECT id, secret, previous_secret FROM webhook_endpoints")
    ).all()
    for endpoint in endpoints:
        bind.execute(
            sa.text(
                "UPDATE webhook_endpoints SET secret_sealed = :secret,"
                " previous_secret_sealed = :previous WHERE id = :id"
            ),
            {
                "id": endpoint.id,
                "secret": keyring.seal(
                    endpoint.secret, f"webhook_endpoints.secret_sealed:{endpoint.id}"
                ),
                "previous": keyring.seal(
                    endpoint.previous_secret,
                    f"webhook_endpoints.previous_secret_sealed:{endpoint.id}",
                )
                if endpoint.previous_secret
                else None,
            },
        )


def downgrade() -> None:
    # Decrypting back to plaintext on a downgrade would undo erasures and leak by design; the
    # way back is a restore from a backup taken before this migration.
    raise NotImplementedError("0011_pii cannot be downgraded; restore a backup instead")
