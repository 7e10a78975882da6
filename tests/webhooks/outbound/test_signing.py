"""T13: every signature verifies with the reference `standardwebhooks` verifier; tampering
with the id, the timestamp or the body is rejected; during rotation both secrets verify; the
`webhook-id` is stable across retries while the timestamp changes."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core.clock import ManualClock
from core.db import transaction
from core.outbox import EventType, emit
from vznos.container import Container
from webhooks.outbound.schemas import WebhookEndpointCreated
from webhooks.outbound.sender import envelope, signature_header
from webhooks.outbound.service import new_secret

from .conftest import CRM_IP, Outbound


def _headers(msg_id: str, at: datetime, signature: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def _payloads(count: int, now: datetime) -> list[tuple[str, str]]:
    rng = random.Random(13)
    out = []
    for n in range(count):
        data = {
            "charge_id": f"{rng.getrandbits(128):032x}",
            "amount": {
                "value": f"{rng.randint(1, 350000)}.{rng.randint(0, 99):02d}",
                "currency": "RUB",
            },
            "reason": rng.choice(["insufficient_funds", "card_expired", "Отказ банка", 'a"b\\c']),
            "n": n,
        }
        body = envelope(
            event_id=f"evt-{n}",
            event_type="payment.failed",
            occurred_at=now,
            organization_id="org",
            data=data,
        )
        out.append((f"msg_{n}_{rng.getrandbits(32)}", body))
    return out


def test_a_thousand_payloads_verify_and_every_tampering_is_rejected() -> None:
    # Real time: the reference verifier checks a 5-minute tolerance against the wall clock.
    now = datetime.now(UTC)
    secret = new_secret()
    verifier = Webhook(secret)
    for msg_id, body in _payloads(1000, now):
        headers = _headers(msg_id, now, signature_header([secret], msg_id, now, body))
        assert verifier.verify(body, headers)["id"].startswith("evt-")
        tampered = [
            (body, {**headers, "webhook-id": msg_id + "x"}),
            (body, {**headers, "webhook-timestamp": str(int(now.timestamp()) + 1)}),
            (body.replace('"n":', '"n" :'), headers),
            (body[:-1] + " }", headers),
        ]
        for tampered_body, tampered_headers in tampered:
            with pytest.raises(WebhookVerificationError):
                verifier.verify(tampered_body, tampered_headers)


def test_secret_has_the_standard_shape() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    import base64

    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64
    assert new_secret() != secret


def test_both_secrets_verify_during_rotation() -> None:
    now = datetime.now(UTC)
    old, new = new_secret(), new_secret()
    msg_id, body = _payloads(1, now)[0]
    signature = signature_header([new, old], msg_id, now, body)
    assert len(signature.split(" ")) == 2
    headers = _headers(msg_id, now, signature)
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_deliveries_verify_and_keep_the_id_while_the_timestamp_changes(
    container: Container,
    clock: ManualClock,
    outbound: Outbound,
    register: Callable[..., WebhookEndpointCreated],
    org_id: Any,
    verify_now: Callable[[str, bytes, dict[str, str]], Any],
) -> None:
    endpoint = register()
    with transaction(container.sessions) as session:
        event_id = emit(
            session,
            type=EventType.PAYMENT_SUCCEEDED,
            organization_id=org_id,
            occurred_at=clock.now(),
            payload={"charge_id": "c-1"},
        )
    seen: list[httpx.Request] = []
    replies = iter([httpx.Response(503), httpx.Response(500), httpx.Response(204)])

    def reply(request: httpx.Request) -> httpx.Response:
        # Verified when received, as the CRM would: the tolerance is five minutes.
        body = verify_now(endpoint.secret, request.content, dict(request.headers))
        assert body["id"] == str(event_id)
        seen.append(request)
        return next(replies)

    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"https://{CRM_IP}/hooks/vznos").mock(side_effect=reply)
        outbound.run_due()
        for _ in range(2):
            clock.advance(timedelta(minutes=6))
            outbound.run_due()
    assert len(seen) == 3
    assert {r.headers["webhook-id"] for r in seen} == {str(event_id)}
    assert len({r.headers["webhook-timestamp"] for r in seen}) == 3
    for request in seen:
        body = json.loads(request.content)
        assert body["type"] == "payment.succeeded"
        assert body["data"] == {"charge_id": "c-1"}
        # Pinned: sent to the vetted address, presenting the original name.
        assert request.url.host == CRM_IP
        assert request.headers["host"] == "crm.example.org"
        assert request.extensions["sni_hostname"] == "crm.example.org"


def test_after_rotation_deliveries_carry_both_signatures_until_the_overlap_ends(
    container: Container,
    clock: ManualClock,
    outbound: Outbound,
    register: Callable[..., WebhookEndpointCreated],
    principal: Any,
    org_id: Any,
    verify_now: Callable[[str, bytes, dict[str, str]], Any],
) -> None:
    endpoint = register()
    rotated = outbound.endpoints.rotate_secret(principal, endpoint.id)
    assert rotated.secret != endpoint.secret
    assert rotated.previous_secret_expires_at == clock.now() + timedelta(hours=24)
    seen: list[httpx.Request] = []
    verified: list[str] = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        for secret in (endpoint.secret, rotated.secret):
            try:
                verify_now(secret, request.content, dict(request.headers))
                verified.append(secret)
            except WebhookVerificationError:
                verified.append("rejected")
        return httpx.Response(200)

    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"https://{CRM_IP}/hooks/vznos").mock(side_effect=reply)
        for hours in (0, 25):
            clock.advance(timedelta(hours=hours))
            with transaction(container.sessions) as session:
                emit(
                    session,
                    type=EventType.SUBSCRIPTION_CANCELED,
                    organization_id=org_id,
                    occurred_at=clock.now(),
                    payload={"n": hours},
                )
            outbound.run_due()
    during, after = seen
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    # During the overlap both secrets verify; after it only the new one does.
    assert verified == [endpoint.secret, rotated.secret, "rejected", rotated.secret]
    assert json.loads(after.content)["data"] == {"n": 25}
