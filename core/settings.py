"""Settings from `VZNOS_*` environment variables (and the conventional `DATABASE_URL`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.networks import YOOKASSA_NOTIFICATION_NETWORKS, Network, parse_networks

YOOKASSA_API_URL = "https://api.yookassa.ru/v3"


def normalize_database_url(url: str) -> str:
    """Accept plain `postgresql://` / `postgres://` URLs and use the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError("database URL must be a PostgreSQL URL (postgresql://…)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VZNOS_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("VZNOS_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL URL; when unset, an embedded PostgreSQL is started (pgserver).",
    )
    broker_url: str | None = Field(
        default=None,
        description="amqp://… (RabbitMQ) or redis://…; when unset, an in-process broker is used.",
    )
    yookassa_shop_id: str | None = None
    yookassa_secret_key: SecretStr | None = None
    yookassa_api_url: str = YOOKASSA_API_URL

    public_url: str | None = Field(
        default=None,
        description="Base URL at which members and YooKassa reach this service.",
    )
    data_dir: Path = Path("var")
    link_secret: SecretStr | None = Field(
        default=None,
        description="Signs members' self-service links; when unset, one is generated once and "
        "kept in DATA_DIR/link-secret (set it in production: every API process needs the same).",
    )
    link_default_hours: int = Field(default=72, ge=1, le=720)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    host: str = "127.0.0.1"
    port: int = 8000
    emulator_port: int | None = None
    worker_threads: int = 4

    gateway_connect_timeout_seconds: float = 5.0
    gateway_read_timeout_seconds: float = 30.0
    scheduler_interval_seconds: float = 30.0
    billing_batch_size: int = 500
    precharge_notice_days: int = Field(
        default=2,
        ge=0,
        le=27,
        description="`charge.upcoming` is raised this many days before every automatic charge "
        "(monthly charges and standby shortfall charges alike), and the charge waits until they "
        "have passed.",
    )
    card_expiring_notice_days: int = Field(
        default=10,
        ge=0,
        le=60,
        description="`card.expiring` is raised this many days before the next charge when the "
        "saved card expires before it.",
    )
    # The resolver replays a create with the same key only while YooKassa still honours it.
    gateway_key_replay_limit_hours: float = 23.0
    # Deprecated spelling of `precharge_notice_days` (it once set the standby shortfall notice
    # alone); honoured when the new name is not set, and logged at start-up (`vznos.container`).
    pre_charge_notice_days: float | None = Field(
        default=None,
        ge=0,
        le=27,
        description="Deprecated: use VZNOS_PRECHARGE_NOTICE_DAYS.",
    )
    accrual_rule: Literal["member_on_first_day", "member_any_day"] = Field(
        default="member_on_first_day",
        description="Which months a joining or leaving member owes: those they were a member "
        "on the first day of (default), or on any day of.",
    )
    webhook_allow_private_targets: bool = Field(
        default=False,
        description="Let CRM webhook URLs point at loopback and private networks: local "
        "development and tests only (logged loudly when on).",
    )
    webhook_secret_overlap_hours: float = 24.0
    webhook_disable_after_days: float = 5.0
    webhook_connect_timeout_seconds: float = 5.0
    webhook_read_timeout_seconds: float = 15.0
    faults: str = Field(default="", description="Comma-separated fault points (tests only).")

    # Envelope encryption (core/crypto.py). Unset: a development key pair is generated once and
    # kept in data_dir/dev-keys.env, so a local install survives restarts.
    master_key: SecretStr | None = Field(
        default=None,
        description="Comma-separated master keys `id:base64url(32 bytes)`, newest first; the "
        "first encrypts, all decrypt (`vznos keys generate`, `vznos keys rotate`).",
    )
    blind_index_key: SecretStr | None = Field(
        default=None,
        description="base64url key (≥ 32 bytes) for the keyed hashes that look members up by "
        "email or phone; separate from the master keys.",
    )

    # Access.
    database_role: str | None = Field(
        default=None,
        description="Role the application switches to on every connection (`SET ROLE`), e.g. "
        "vznos_app when the login role is a member of it; row-level security binds that role.",
    )
    api_key_hash_key: SecretStr | None = Field(
        default=None,
        description="HMAC key for API key and session token hashes; set it in production "
        "(changing it invalidates every key).",
    )
    api_key_rotation_grace_hours: float = Field(default=24.0, ge=0)
    treasurer_session_hours: float = Field(default=12.0, gt=0)

    # Inbound notifications. NoDecode: the environment gives comma-separated CIDRs, not JSON.
    yookassa_notification_networks: Annotated[tuple[Network, ...], NoDecode] = Field(
        default=parse_networks(YOOKASSA_NOTIFICATION_NETWORKS),
        description="Comma-separated CIDRs YooKassa notifications may come from "
        "(default: the list in YooKassa's SDK).",
    )
    trusted_proxies: Annotated[tuple[Network, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated CIDRs of reverse proxies whose X-Forwarded-For is believed "
        "(default: none; the socket's peer is the sender).",
    )
    yookassa_notifications_from_anywhere: bool = Field(
        default=False,
        description="Skip the sender check for notifications (local development only).",
    )
    webhook_max_body_bytes: int = Field(default=64 * 1024, gt=0)

    # The CRM API's contract (see README, "For CRM integrators").
    api_max_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Larger JSON bodies under /v1 get 413."
    )
    api_max_upload_bytes: int = Field(
        default=20 * 1024 * 1024,
        gt=0,
        description="Larger file uploads (multipart, CSV) under /v1 get 413.",
    )
    api_rate_limit: str = Field(
        default="50/second;2000/minute",
        description="Requests per API key (or per address without one), `limits` notation; "
        "past it 429 with Retry-After.",
    )
    sign_in_rate_limit: str = Field(
        default="10/minute;50/hour",
        description="Treasurer sign-in attempts per login (password guessing against one "
        "account); past it 429 with Retry-After.",
    )
    sign_in_address_rate_limit: str = Field(
        default="30/minute;300/hour",
        description="Treasurer sign-in attempts per client address (guessing across accounts).",
    )
    api_rate_limit_storage_url: str = Field(
        default="memory://",
        description="Where rate-limit counters live: `memory://` (each API process counts on "
        "its own: divide the limit by the number of processes) or `redis://…` (one count).",
    )
    idempotency_retention_hours: float = Field(
        default=72.0,
        ge=24.0,
        description="How long an Idempotency-Key and its stored answer are kept (at least 24 h).",
    )
    idempotency_lock_timeout_seconds: float = Field(
        default=90.0,
        gt=0,
        description="A request holding a key this long without answering is presumed dead; "
        "the next retry runs the operation.",
    )

    @field_validator("database_url")
    @classmethod
    def _normalize(cls, value: str | None) -> str | None:
        return normalize_database_url(value) if value else None

    @field_validator("yookassa_notification_networks", "trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, str | list | tuple):
            return parse_networks(value)
        return value

    @field_validator("api_rate_limit", "sign_in_rate_limit", "sign_in_address_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many

        parse_many(value)  # raises ValueError on a malformed rule
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("amqp://", "amqps://", "redis://", "rediss://")):
            raise ValueError("broker URL must start with amqp://, amqps://, redis:// or rediss://")
        return value or None

    @model_validator(mode="after")
    def _deprecated_notice_name(self) -> Settings:
        if self.pre_charge_notice_days is not None and (
            "precharge_notice_days" not in self.model_fields_set
        ):
            # Rounded up: a member is never told later than the operator asked for.
            self.precharge_notice_days = math.ceil(self.pre_charge_notice_days)
        return self

    @property
    def uses_emulator(self) -> bool:
        return not (self.yookassa_shop_id and self.yookassa_secret_key)
