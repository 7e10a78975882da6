"""API shapes for organisations and members."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from core.http import INTEGRAL
from core.instants import Day
from core.text import STORABLE

Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=300),
    STORABLE,
]
Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{7,14}$")]


class OrganizationCreate(BaseModel):
    """An organisation to create inside the caller's subtree."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "code": "ppo-zavod-1",
                    "name": "ППО завода / Plant union",
                    "parent_code": "ppo-1",
                    "timezone": "Europe/Moscow",
                }
            ]
        },
    )

    code: Annotated[Code, Field(examples=["ppo-zavod-1"])]
    name: Name
    parent_code: Annotated[
        Code | None,
        Field(description="Parent organisation; defaults to the caller's organisation."),
    ] = None
    timezone: Annotated[str, Field(examples=["Europe/Moscow"])] = "Europe/Moscow"


class OrganizationPut(BaseModel):
    """An organisation as the CRM syncs it. `parent_code` places a new organisation (default:
    under the caller's own) or moves an existing one with its whole subtree (default: stays)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "ППО цеха / Shop union",
                    "parent_code": "ppo-1",
                    "timezone": "Europe/Moscow",
                }
            ]
        },
    )

    name: Name
    parent_code: Annotated[Code | None, Field(examples=["terkom-1"])] = None
    timezone: Annotated[str, Field(examples=["Europe/Moscow"])] = "Europe/Moscow"


class OrganizationOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0f7c5e0a-8a3b-4c1e-9d2f-3b6a1c2d4e5f",
                    "code": "ppo-zavod-1",
                    "name": "ППО завода / Plant union",
                    "parent_id": "5b1d2c3e-4f50-4a6b-8c7d-9e0f1a2b3c4d",
                    "timezone": "Europe/Moscow",
                }
            ]
        }
    )

    id: uuid.UUID
    code: str
    name: str
    parent_id: uuid.UUID | None
    timezone: str


class OrganizationList(BaseModel):
    data: list[OrganizationOut]


class MemberUpsert(BaseModel):
    """A member as the CRM knows it; PUT creates or replaces."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "organization_code": "ppo-1",
                    "full_name": "Иван Петров",
                    "email": "ivan@example.org",
                    "phone": "+79161234567",
                    "joined_on": "2026-01-15",
                }
            ]
        },
    )

    organization_code: Annotated[Code, Field(description="The member's primary organisation.")]
    full_name: Name
    email: EmailStr | None = None
    phone: Annotated[Phone | None, Field(description="E.164, e.g. +79161234567")] = None
    birth_date: Annotated[Day | None, Field(description="Date of birth")] = None
    joined_on: Annotated[Day | None, Field(description="First day of membership")] = None
    left_on: Annotated[Day | None, Field(description="Last day of membership")] = None
    paydays: Annotated[
        list[Annotated[int, Field(ge=1, le=31), INTEGRAL]] | None,
        Field(
            min_length=1,
            max_length=31,
            json_schema_extra={"uniqueItems": True},
            description="Days of the month wages are paid (31: the month's last day); a "
            "declined card charge is retried the day after the next payday",
            examples=[[10, 25]],
        ),
    ] = None

    @model_validator(mode="after")
    def _left_after_joined(self) -> MemberUpsert:
        if self.joined_on and self.left_on and self.left_on < self.joined_on:
            raise ValueError("left_on is before joined_on")
        return self

    @field_validator("paydays")
    @classmethod
    def _distinct_days(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("paydays must be distinct days")
        return sorted(value) if value is not None else None


class MemberOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "7d3e9b1c-2a4f-4e6d-8b0a-1c2d3e4f5a6b",
                    "external_id": "m-1001",
                    "organization_code": "ppo-1",
                    "full_name": "Иван Петров",
                    "email": "ivan@example.org",
                    "phone": "+79161234567",
                    "birth_date": None,
                    "joined_on": "2026-01-15",
                    "left_on": None,
                    "paydays": [10, 25],
                    "created_at": "2026-11-23T07:00:00Z",
                    "updated_at": "2026-11-23T07:00:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    external_id: str
    organization_code: str
    full_name: str
    email: str | None
    phone: str | None
    birth_date: date | None
    joined_on: date | None
    left_on: date | None
    paydays: list[int] | None = None
    created_at: datetime
    updated_at: datetime
