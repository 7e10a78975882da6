"""API shapes for CRM webhook endpoints, their delivery log, redelivery and replay."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from core.instants import Instant
from core.outbox import EventType
from webhooks.outbound.states import DeliveryStatus, DisabledReason, EndpointStatus


class WebhookEndpointCreate(BaseModel):
    """A CRM URL to receive signed events, and which events."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://crm.example.org/hooks/vznos",
                    "event_types": ["payment.succeeded", "subscription.canceled"],
                    "description": "CRM production",
                }
            ]
        },
    )

    url: Annotated[
        str,
        StringConstraints(min_length=1, max_length=2048, strip_whitespace=False),
        Field(examples=["https://crm.example.org/hooks/vznos"], description="HTTPS only"),
    ]
    event_types: Annotated[
        list[EventType],
        Field(max_length=len(EventType), description="A subset of the catalogue; empty: all"),
    ] = []
    description: Annotated[str | None, StringConstraints(max_length=500)] = None


class WebhookEndpointOut(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    url: str
    description: str | None
    event_types: list[EventType]
    status: EndpointStatus
    disabled_reason: DisabledReason | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookEndpointCreated(WebhookEndpointOut):
    secret: Annotated[
        str,
        Field(description="The `whsec_…` signing secret. Shown once: store it now."),
    ]


class WebhookEndpointList(BaseModel):
    data: list[WebhookEndpointOut]


class SecretRotated(BaseModel):
    endpoint_id: uuid.UUID
    secret: Annotated[str, Field(description="The new `whsec_…` secret. Shown once.")]
    previous_secret_expires_at: Annotated[
        datetime, Field(description="Until then deliveries carry both signatures")
    ]


class AttemptOut(BaseModel):
    attempt_no: int
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    outcome: str
    response_body: str | None
    retry_after_seconds: int | None


class DeliveryOut(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: EventType
    endpoint_id: uuid.UUID
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    finished_at: datetime | None
    attempt_log: list[AttemptOut]


class DeliveryPage(BaseModel):
    data: list[DeliveryOut]
    has_more: bool


class ReplayRequest(BaseModel):
    """Re-send the events recorded since an instant."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"since": "2026-11-22T00:00:00Z"}]}
    )

    since: Annotated[
        Instant, Field(description="Re-send every matching event that occurred since then")
    ]


class Queued(BaseModel):
    queued: Annotated[int, Field(description="How many deliveries were (re)queued")]
    delivery_ids: list[uuid.UUID]


class ReplayQueued(BaseModel):
    queued: Annotated[int, Field(description="How many deliveries were (re)queued")]
    next_since: Annotated[
        datetime | None,
        Field(description="Set when the replay was capped: call again with this `since`"),
    ]
