"""`openapi.yaml` is the contract: it must equal what the application generates."""

from __future__ import annotations

from pathlib import Path

import yaml

from vznos.contract import generated_openapi

ROOT = Path(__file__).resolve().parent.parent


def test_openapi_yaml_matches_the_application() -> None:
    committed = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    generated = generated_openapi()
    assert committed == generated, (
        "openapi.yaml drifted from the app: review the change, then run "
        "`vznos openapi --write openapi.yaml`"
    )


def test_every_route_is_documented() -> None:
    paths = generated_openapi()["paths"]
    for required in (
        "/v1/members/{external_id}",
        "/v1/members/{external_id}/subscriptions",
        "/v1/members/{external_id}/account",
        "/v1/subscriptions/{subscription_id}",
        "/v1/subscriptions/{subscription_id}/cancel",
        "/v1/organizations",
        "/webhooks/yookassa",
        "/healthz",
        "/readyz",
    ):
        assert required in paths
