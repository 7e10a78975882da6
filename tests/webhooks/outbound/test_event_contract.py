"""Every event type the CRM can hear is in `openapi.yaml` as an OpenAPI `webhooks` operation
with its body's schema and an example, and what the code really sends matches that schema."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from core.money import MoneyIn
from core.outbox import Event, EventType
from members.service import Principal
from payments.subscriptions.schemas import SubscriptionChange
from tests.conftest import Subscribe
from tests.webhooks.outbound.conftest import decline_a_later_month
from vznos.container import Container
from vznos.contract import generated_openapi
from webhooks.outbound.events import ENVELOPES, example
from webhooks.outbound.sender import envelope


def _schema(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    found: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return found


def test_every_event_type_is_a_documented_webhook_with_an_example() -> None:
    spec = generated_openapi()
    assert spec["openapi"].startswith("3.1")
    webhooks = spec["webhooks"]
    assert set(webhooks) == {str(t) for t in EventType}
    for event_type in EventType:
        operation = webhooks[str(event_type)]["post"]
        assert "webhook-signature" in operation["description"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        schema = _schema(spec, body["$ref"])
        assert schema["properties"]["type"]["const"] == str(event_type)
        assert set(schema["required"]) >= {"id", "type", "occurred_at", "organization_id", "data"}
        data = _schema(spec, schema["properties"]["data"]["$ref"])
        (shown,) = schema["examples"]
        assert shown == example(event_type)
        # The example is a valid body, and shows every field its data documents.
        ENVELOPES[event_type].model_validate(shown)
        assert set(shown["data"]) <= set(data["properties"])
        assert set(data["required"]) <= set(shown["data"])


def _undocumented(model: type[BaseModel], payload: dict[str, Any]) -> set[str]:
    """Keys sent that the schema does not name, at any depth of nested models."""
    missing = set(payload) - set(model.model_fields)
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            value = payload.get(name)
            if isinstance(value, dict):
                missing |= {f"{name}.{k}" for k in _undocumented(annotation, value)}
    return missing


def test_what_is_sent_matches_the_documented_schemas(
    container: Container, subscribe: Subscribe, principal: Principal
) -> None:
    subscription_id = subscribe("m-9")
    now = container.clock.now()
    decline_a_later_month(container, subscription_id, now)
    container.subscriptions.pause(principal, subscription_id, date(2027, 3, 1))
    container.subscriptions.resume(principal, subscription_id)
    container.subscriptions.change_amount(
        principal,
        subscription_id,
        SubscriptionChange(
            amount=MoneyIn(value="400.00", currency="RUB"), effective_from="2027-06"
        ),
    )
    container.subscriptions.cancel(principal, subscription_id)

    with container.sessions() as session:
        events = list(session.scalars(select(Event).order_by(Event.sequence)))
    assert {e.type for e in events} >= {
        "subscription.activated",
        "subscription.past_due",
        "subscription.paused",
        "subscription.resumed",
        "subscription.changed",
        "subscription.canceled",
        "payment.succeeded",
        "payment.failed",
        "member.arrears_changed",
    }
    for event in events:
        body = json.loads(
            envelope(
                event_id=str(event.id),
                event_type=event.type,
                occurred_at=event.occurred_at,
                organization_id=str(event.organization_id),
                data=event.payload,
            )
        )
        model = ENVELOPES[EventType(event.type)]
        model.model_validate(body)
        data_model = model.model_fields["data"].annotation
        assert isinstance(data_model, type) and issubclass(data_model, BaseModel)
        assert _undocumented(data_model, event.payload) == set(), event.type
