"""OpenAPI links: how the id one operation answers with feeds the next (RFC: OpenAPI 3.1 §4.8.20).
A CRM reads them as "what can I do with what I just created"; schemathesis' stateful phase
follows them, so created objects are read, changed and deleted within one run instead of
guessed ids hitting 404s."""

from __future__ import annotations

import copy
from typing import Any

# (method, path, status) of the source → link name → (method, path) of the target, and where
# each of the target's path parameters comes from (an OpenAPI runtime expression).
Target = tuple[str, str, dict[str, str]]
EXTERNAL_ID = {"external_id": "$request.path.external_id"}
SUBSCRIPTION = {"subscription_id": "$response.body#/id"}
CODE = {"code": "$response.body#/code"}
ENDPOINT = {"endpoint_id": "$response.body#/id"}
KEY = {"key_id": "$response.body#/id"}

LINKS: dict[tuple[str, str, str], dict[str, Target]] = {
    ("put", "/v1/members/{external_id}", "201"): {
        "GetMember": ("get", "/v1/members/{external_id}", EXTERNAL_ID),
        "StartSubscription": ("post", "/v1/members/{external_id}/subscriptions", EXTERNAL_ID),
        "GetAccount": ("get", "/v1/members/{external_id}/account", EXTERNAL_ID),
        "GetStatement": ("get", "/v1/members/{external_id}/statement", EXTERNAL_ID),
        "RecordPayment": ("post", "/v1/members/{external_id}/payments", EXTERNAL_ID),
        "SetDuesPlan": ("put", "/v1/members/{external_id}/dues-plan", EXTERNAL_ID),
        "EnrollStandby": ("post", "/v1/members/{external_id}/standby", EXTERNAL_ID),
        "EraseMember": ("delete", "/v1/members/{external_id}", EXTERNAL_ID),
    },
    ("post", "/v1/members/{external_id}/subscriptions", "201"): {
        "GetSubscription": ("get", "/v1/subscriptions/{subscription_id}", SUBSCRIPTION),
        "ChangeSubscription": ("patch", "/v1/subscriptions/{subscription_id}", SUBSCRIPTION),
        "PauseSubscription": ("post", "/v1/subscriptions/{subscription_id}/pause", SUBSCRIPTION),
        "ResumeSubscription": ("post", "/v1/subscriptions/{subscription_id}/resume", SUBSCRIPTION),
        "CancelSubscription": ("post", "/v1/subscriptions/{subscription_id}/cancel", SUBSCRIPTION),
    },
    ("post", "/v1/members/{external_id}/standby", "201"): {
        "GetSubscription": ("get", "/v1/subscriptions/{subscription_id}", SUBSCRIPTION),
        "PauseSubscription": ("post", "/v1/subscriptions/{subscription_id}/pause", SUBSCRIPTION),
    },
    ("post", "/v1/organizations", "201"): {
        "GetOrganization": ("get", "/v1/organizations/{code}", CODE),
        "PutOrganization": ("put", "/v1/organizations/{code}", CODE),
        "PutShop": ("put", "/v1/organizations/{code}/shop", CODE),
        "GetRetryPolicy": ("get", "/v1/organizations/{code}/retry-policy", CODE),
        "PutRetryPolicy": ("put", "/v1/organizations/{code}/retry-policy", CODE),
        "TransferUpward": ("post", "/v1/organizations/{code}/transfers", CODE),
        "GetSummary": (
            "get",
            "/v1/organizations/{organization_id}/summary",
            {"organization_id": "$response.body#/id"},
        ),
    },
    ("post", "/v1/webhook-endpoints", "201"): {
        "GetWebhookEndpoint": ("get", "/v1/webhook-endpoints/{endpoint_id}", ENDPOINT),
        "ListDeliveries": ("get", "/v1/webhook-endpoints/{endpoint_id}/deliveries", ENDPOINT),
        "RotateSecret": ("post", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret", ENDPOINT),
        "DisableEndpoint": ("post", "/v1/webhook-endpoints/{endpoint_id}/disable", ENDPOINT),
        "EnableEndpoint": ("post", "/v1/webhook-endpoints/{endpoint_id}/enable", ENDPOINT),
        "ReplayEvents": ("post", "/v1/webhook-endpoints/{endpoint_id}/replay", ENDPOINT),
        "DeleteEndpoint": ("delete", "/v1/webhook-endpoints/{endpoint_id}", ENDPOINT),
    },
    ("post", "/v1/api-keys", "201"): {
        "GetApiKey": ("get", "/v1/api-keys/{key_id}", KEY),
        "RotateApiKey": ("post", "/v1/api-keys/{key_id}/rotate", KEY),
        "RevokeApiKey": ("post", "/v1/api-keys/{key_id}/revoke", KEY),
    },
    ("post", "/v1/payments/{payment_id}/refunds", "201"): {
        "GetRefund": (
            "get",
            "/v1/payments/{payment_id}/refunds/{refund_id}",
            {"payment_id": "$request.path.payment_id", "refund_id": "$response.body#/id"},
        ),
    },
    ("post", "/v1/members/{external_id}/payments", "201"): {
        "ReverseEntry": (
            "post",
            "/v1/ledger/entries/{entry_id}/reverse",
            {"entry_id": "$response.body#/id"},
        ),
    },
}


def document_links(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the links of `LINKS` on their source responses. A link whose
    source or target the app does not have is an error: the table must follow the routes."""
    document = copy.deepcopy(schema)
    paths = document["paths"]
    for (method, path, status), links in LINKS.items():
        response = paths[path][method]["responses"][status]
        for name, (target_method, target_path, parameters) in links.items():
            target = paths[target_path][target_method]
            declared = {p["name"] for p in target.get("parameters", []) if p["in"] == "path"}
            assert declared == set(parameters), (name, declared, parameters)
            response.setdefault("links", {})[name] = {
                "operationId": target["operationId"],
                "parameters": dict(parameters),
            }
    return document
