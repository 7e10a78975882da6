"""API shapes for an organisation's retry policy."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from core.http import INTEGRAL


class ReasonRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Annotated[
        Literal["retry", "new_card", "stop"],
        Field(
            description="retry: on the schedule; new_card: stop and ask the member for a new "
            "card; stop: give up on this month, keep the card"
        ),
    ]
    max_retries: Annotated[int, Field(ge=0, le=10), INTEGRAL] = 0


class RetryPolicyIn(BaseModel):
    """Rows given in `reasons` replace the default's rows for those reasons; the rest stay."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "schedule_days": [1, 3, 7],
                    "local_hour": 10,
                    "retry_after_payday": True,
                    "reasons": {"insufficient_funds": {"action": "retry", "max_retries": 3}},
                }
            ]
        },
    )

    schedule_days: Annotated[
        list[Annotated[int, INTEGRAL]],
        Field(
            min_length=1,
            max_length=10,
            description="Days after the first decline on which to retry (increasing)",
            examples=[[1, 3, 7]],
        ),
    ] = [1, 3, 7]
    local_hour: Annotated[
        int,
        Field(ge=0, le=23, description="Hour of the retry in the organisation's zone"),
        INTEGRAL,
    ] = 10
    retry_after_payday: Annotated[
        StrictBool,
        Field(description="When the member's paydays are known, retry the day after the next one"),
    ] = True
    reasons: Annotated[
        dict[str, ReasonRuleIn],
        Field(description="By YooKassa's `cancellation_details.reason`"),
    ] = {}


class ReasonRuleOut(BaseModel):
    action: str
    max_retries: int


class RetryPolicyOut(BaseModel):
    organization_code: str
    source: Annotated[
        Literal["own", "inherited", "default"],
        Field(description="Set for this organisation, inherited from an ancestor, or built in"),
    ]
    inherited_from: Annotated[str | None, Field(description="The ancestor's code, if inherited")]
    schedule_days: list[int]
    local_hour: int
    retry_after_payday: bool
    reasons: Annotated[
        dict[str, ReasonRuleOut], Field(description="The whole effective table, every reason")
    ]
