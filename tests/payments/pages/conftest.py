"""Fixtures for the member pages: a member, and links issued through the CRM's API."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select

from members.schemas import MemberUpsert
from members.service import Principal
from payments.subscriptions.models import PaymentMethod, Subscription
from vznos.container import Container

IssueLink = Callable[..., str]


@pytest.fixture
def member(container: Container, principal: Principal, org_code: str) -> str:
    container.members.upsert(
        principal, "m-1", MemberUpsert(organization_code=org_code, full_name="Анна Смирнова")
    )
    return "m-1"


@pytest.fixture
def issue_link(client: httpx.Client) -> IssueLink:
    """A link through the API, as the CRM gets it; returns its URL."""

    def issue(purpose: str = "subscribe", external_id: str = "m-1", **body: object) -> str:
        payload: dict[str, object] = {"purpose": purpose, **body}
        if purpose == "subscribe" and "amount" not in body:
            payload["amount"] = {"value": "350.00", "currency": "RUB"}
        answer = client.post(f"/v1/members/{external_id}/links", json=payload)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["url"])

    return issue


def card_of(container: Container, subscription_id: uuid.UUID) -> PaymentMethod:
    with container.sessions() as session:
        method = session.scalar(
            select(PaymentMethod)
            .join(Subscription, Subscription.payment_method_id == PaymentMethod.id)
            .where(Subscription.id == subscription_id)
        )
        assert method is not None
        return method


def card_token_of(container: Container, subscription_id: uuid.UUID) -> str:
    """The gateway token of the subscription's card, decrypted as the charge path does."""
    from payments.charges.service import card_token

    with container.sessions() as session:
        return card_token(session, container.vault, card_of(container, subscription_id))
