"""API shapes for member links (the pages themselves are HTML, not part of the API)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from core.http import INTEGRAL
from core.money import MoneyIn, MoneyOut
from payments.pages.links import LinkPurpose


class LinkCreate(BaseModel):
    """A signed, expiring link to a member's page."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "purpose": "subscribe",
                    "expires_in_hours": 72,
                    "amount": {"value": "350.00", "currency": "RUB"},
                }
            ]
        },
    )

    purpose: Annotated[
        LinkPurpose,
        Field(description="`subscribe`: the page that turns auto-pay on; `manage`: “My auto-pay”"),
    ]
    expires_in_hours: Annotated[
        int | None,
        Field(ge=1, le=720, description="How long the link works (default 72 hours)"),
        INTEGRAL,
    ] = None
    amount: Annotated[
        MoneyIn | None,
        Field(
            description="Monthly dues for a subscribe link when the member has no dues plan; "
            "ignored when the plan says how much a month costs"
        ),
    ] = None


class LinkOut(BaseModel):
    url: Annotated[str, Field(description="Send it to the member; it needs no login")]
    purpose: LinkPurpose
    expires_at: datetime
    amount: Annotated[
        MoneyOut | None, Field(description="The monthly amount a subscribe link offers")
    ] = None
