"""API shapes for API keys, treasurer sign-in and the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from core.http import NUMBER
from core.instants import Instant
from members.schemas import Code
from members.scopes import Scope

MAX_PAGE = 100

KeyName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "CRM production",
                    "scopes": ["members:write", "subscriptions:write", "payments:read"],
                    "organization_code": "ppo-1",
                }
            ]
        },
    )

    name: Annotated[KeyName, Field(examples=["CRM production"])]
    scopes: Annotated[
        list[Scope],
        Field(min_length=1, description="What the key may do; `admin` includes every scope."),
    ]
    organization_code: Annotated[
        Code | None,
        Field(description="The organisation the key acts for (default: the caller's own)."),
    ] = None
    expires_at: Annotated[Instant | None, Field(description="Default: never")] = None


class ApiKeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"grace_hours": 24}]})

    grace_hours: Annotated[
        float | None,
        Field(
            ge=0,
            le=720,
            description="How long the old key keeps working (default: the server's setting).",
        ),
        NUMBER,
    ] = None
    expires_at: Annotated[Instant | None, Field(description="The new key's expiry")] = None


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: Annotated[str, Field(description="The key's first characters, to recognise it")]
    organization_id: uuid.UUID
    scopes: list[str]
    status: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: Annotated[
        datetime | None, Field(description="Approximate: recorded at most every few minutes")
    ]
    replaced_by_id: uuid.UUID | None


class ApiKeyCreated(ApiKeyOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
                    "name": "CRM production",
                    "prefix": "vz_Qm3xT8a",
                    "organization_id": "0f7c5e0a-8a3b-4c1e-9d2f-3b6a1c2d4e5f",
                    "scopes": ["members:write", "payments:read"],
                    "status": "active",
                    "created_at": "2026-11-23T07:00:00Z",
                    "expires_at": None,
                    "revoked_at": None,
                    "last_used_at": None,
                    "replaced_by_id": None,
                    "key": "vz_Qm3xT8a…(shown once)",
                }
            ]
        }
    )

    key: Annotated[str, Field(description="The key itself: shown in this response only")]


class ApiKeyPage(BaseModel):
    data: list[ApiKeyOut]
    has_more: bool


class SessionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"login": "olga", "password": "correct horse battery staple", "totp_code": "123456"}
            ]
        },
    )

    login: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    totp_code: Annotated[
        str | None,
        StringConstraints(pattern=r"^[0-9]{6}$"),
        Field(description="Required when the account has a second factor"),
    ] = None


class SessionCreated(BaseModel):
    token: Annotated[str, Field(description="Use as `Authorization: Bearer vzt_…`")]
    expires_at: datetime
    treasurer_id: uuid.UUID
    organization_id: uuid.UUID
    scopes: list[str]


class AuditEventOut(BaseModel):
    id: uuid.UUID
    occurred_at: datetime
    actor_type: str
    actor_id: uuid.UUID | None
    ip: str | None
    action: str
    organization_id: uuid.UUID | None
    subject_type: str
    subject_id: str
    details: dict[str, Any]


class AuditEventPage(BaseModel):
    data: list[AuditEventOut]
    has_more: bool
