"""API shapes for an organisation's own YooKassa shop. The secret goes in, never out."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints


class ShopPut(BaseModel):
    """The organisation's own YooKassa shop: its id and secret key."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"shop_id": "506751", "secret_key": "live_XXXXXXXXXXXX"}]},
    )

    shop_id: Annotated[
        str,
        StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"),
        Field(description="The YooKassa shop id (shopId)", examples=["506751"]),
    ]
    secret_key: Annotated[
        SecretStr,
        Field(
            min_length=1,
            max_length=200,
            description="The shop's secret key; stored encrypted, never returned or logged",
        ),
    ]


class OwnShopOut(BaseModel):
    shop_id: str
    secret_set: Annotated[bool, Field(description="Whether a secret key is stored")]


class EffectiveShopOut(BaseModel):
    shop_id: str
    source: Annotated[
        Literal["own", "inherited", "default"],
        Field(description="The organisation's own, its nearest ancestor's, or the installation's"),
    ]
    organization_code: Annotated[
        str | None, Field(description="Whose shop it is (null for the installation's)")
    ]


class ShopOut(BaseModel):
    organization_code: str
    shop: Annotated[
        OwnShopOut | None, Field(description="The organisation's own shop, if it has one")
    ]
    effective: Annotated[
        EffectiveShopOut, Field(description="Where new payments of its members go")
    ]
