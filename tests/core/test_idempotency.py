"""Idempotency-Key on the API's creates (reliability G13, T04): replay, mismatch, missing key,
concurrency, scope per API key, release after a refusal, retention and the sweeper."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from functools import partial

import httpx
import pytest
from sqlalchemy import func, select, text

from core.clock import ManualClock
from core.idempotency import Claim, IdempotencyKey, IdempotencyKeyInUse, StoredResponse
from core.serving import BackgroundServer
from payments.subscriptions.models import Subscription
from vznos.container import Container

PROBLEM = "https://vznos.dev/problems/"


def key() -> str:
    return f"crm-{uuid.uuid4()}"


def org_body(code: str = "ppo-2") -> dict[str, object]:
    return {"code": code, "name": "ППО цеха / Shop union", "timezone": "Europe/Moscow"}


def count(container: Container, table: str) -> int:
    with container.engine.connect() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_same_key_and_body_replays_the_first_answer(
    client: httpx.Client, container: Container
) -> None:
    k = key()
    first = client.post("/v1/organizations", json=org_body(), headers={"Idempotency-Key": k})
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    # The same object with other spacing and key order is the same request.
    again = client.post(
        "/v1/organizations",
        content=b'{"timezone": "Europe/Moscow",  "name": "\\u041f\\u041f\\u041e \\u0446\\u0435'
        b'\\u0445\\u0430 / Shop union", "code": "ppo-2"}',
        headers={"Idempotency-Key": k, "Content-Type": "application/json"},
    )
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.content == first.content
    # Without the key the duplicate is refused by the domain, proving the replay did not run.
    assert client.post("/v1/organizations", json=org_body()).status_code == 409
    assert count(container, "organizations") == 2


def test_same_key_with_another_body_is_422(client: httpx.Client, container: Container) -> None:
    k = key()
    assert client.post("/v1/organizations", json=org_body(), headers={"Idempotency-Key": k})
    other = client.post("/v1/organizations", json=org_body("ppo-3"), headers={"Idempotency-Key": k})
    assert other.status_code == 422, other.text
    problem = other.json()
    assert problem["type"] == PROBLEM + "idempotency-key-reused"
    assert problem["field"] == "Idempotency-Key"
    # Another path with the same key is another request too.
    elsewhere = client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://crm.example.org/hooks"},
        headers={"Idempotency-Key": k},
    )
    assert elsewhere.status_code == 422
    assert count(container, "organizations") == 2


def test_money_moving_create_needs_a_key(
    api_server: BackgroundServer,
    api_key: str,
    client: httpx.Client,
    container: Container,
    subscription_body: Callable[..., dict[str, object]],
) -> None:
    client.put("/v1/members/m-1", json={"organization_code": "ppo-1", "full_name": "Анна"})
    with httpx.Client(
        base_url=api_server.url, headers={"Authorization": f"Bearer {api_key}"}
    ) as bare:
        missing = bare.post("/v1/members/m-1/subscriptions", json=subscription_body())
        assert missing.status_code == 400, missing.text
        assert missing.json()["type"] == PROBLEM + "idempotency-key-missing"
        assert missing.json()["field"] == "Idempotency-Key"
        short = bare.post(
            "/v1/members/m-1/subscriptions",
            json=subscription_body(),
            headers={"Idempotency-Key": "short"},
        )
        assert short.status_code == 400
        assert short.json()["type"] == PROBLEM + "idempotency-key-invalid"
        # Creates that move no money run without one (Stripe's convention).
        assert bare.post("/v1/organizations", json=org_body()).status_code == 201
    assert count(container, "subscriptions") == 0


def test_a_refusal_releases_the_key(client: httpx.Client, container: Container) -> None:
    k = key()
    body = {
        "amount": {"value": "350.00", "currency": "RUB"},
        "method": "cash",
        "received_on": "2026-11-20",
    }
    refused = client.post("/v1/members/m-9/payments", json=body, headers={"Idempotency-Key": k})
    assert refused.status_code in (404, 422), refused.text
    assert count(container, "idempotency_keys") == 0


def test_keys_belong_to_one_api_key(
    api_server: BackgroundServer, client: httpx.Client, container: Container, org_code: str
) -> None:
    k = key()
    assert client.post(
        "/v1/organizations", json=org_body(), headers={"Idempotency-Key": k}
    ).is_success
    other_key = container.access.create_api_key(org_code, "second", ["admin"])[1]
    with httpx.Client(
        base_url=api_server.url, headers={"Authorization": f"Bearer {other_key}"}
    ) as other:
        # Another caller's same key is not a replay: it runs (and meets the domain's 409).
        answer = other.post("/v1/organizations", json=org_body(), headers={"Idempotency-Key": k})
        assert answer.status_code == 409
        assert "idempotent-replayed" not in answer.headers


def subscribe_with(
    client: httpx.Client, external_id: str, k: str, body: dict[str, object]
) -> httpx.Response:
    return client.post(
        f"/v1/members/{external_id}/subscriptions", json=body, headers={"Idempotency-Key": k}
    )


def race(threads: int, call: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run `call` from `threads` threads released at the same instant."""
    barrier = threading.Barrier(threads)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        barrier.wait()
        answer = call()
        with lock:
            answers.append(answer)

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return answers


def test_concurrent_requests_with_one_key_run_once(
    client: httpx.Client,
    container: Container,
    subscription_body: Callable[..., dict[str, object]],
) -> None:
    """T04 at CI size: N threads send the same create with one key at once, several times."""
    threads, rounds = 12, 3
    body = subscription_body()
    for round_no in range(rounds):
        external_id = f"m-{round_no}"
        assert client.put(
            f"/v1/members/{external_id}",
            json={"organization_code": "ppo-1", "full_name": "Анна"},
        ).is_success
        k = key()
        answers = race(threads, partial(subscribe_with, client, external_id, k, body))
        statuses = Counter(a.status_code for a in answers)
        assert set(statuses) <= {201, 409}, statuses
        created = [a for a in answers if a.status_code == 201]
        assert created
        assert len({a.content for a in created}) == 1
        assert sum("idempotent-replayed" not in a.headers for a in created) == 1
        for conflict in (a for a in answers if a.status_code == 409):
            assert conflict.json()["type"] == PROBLEM + "idempotency-key-in-use"
            assert conflict.headers["retry-after"] == "1"
        with container.sessions() as session:
            subscriptions = session.scalar(select(func.count()).select_from(Subscription))
        assert subscriptions == round_no + 1
        # Once the first answered, every retry is its replay.
        late = client.post(
            f"/v1/members/{external_id}/subscriptions",
            json=subscription_body(),
            headers={"Idempotency-Key": k},
        )
        assert late.status_code == 201
        assert late.content == created[0].content


def test_keys_expire_after_retention_and_are_swept(
    client: httpx.Client, container: Container, clock: ManualClock
) -> None:
    k = key()
    assert client.post("/v1/organizations", json=org_body(), headers={"Idempotency-Key": k})
    clock.advance(timedelta(hours=71, minutes=59))
    assert container.idempotency.sweep() == 0
    assert (
        client.post(
            "/v1/organizations", json=org_body("ppo-3"), headers={"Idempotency-Key": k}
        ).status_code
        == 422
    )
    clock.advance(timedelta(minutes=2))
    # Past 72 h the key is new again.
    fresh = client.post("/v1/organizations", json=org_body("ppo-3"), headers={"Idempotency-Key": k})
    assert fresh.status_code == 201
    assert "idempotent-replayed" not in fresh.headers
    assert client.post(
        "/v1/organizations", json=org_body("ppo-4"), headers={"Idempotency-Key": key()}
    )
    clock.advance(timedelta(hours=73))
    assert container.idempotency.sweep() == 2
    assert count(container, "idempotency_keys") == 0


def test_a_dead_holder_is_taken_over_after_the_lock_timeout(
    container: Container, clock: ManualClock
) -> None:
    store = container.idempotency
    principal = uuid.uuid4()
    args = {"request_hash": "h", "method": "POST", "path": "/v1/x"}
    first = store.begin(principal, "k" * 20, **args)
    assert isinstance(first, Claim)
    with pytest.raises(IdempotencyKeyInUse):
        store.begin(principal, "k" * 20, **args)
    clock.advance(store.lock_timeout + timedelta(seconds=1))
    second = store.begin(principal, "k" * 20, **args)
    assert isinstance(second, Claim)
    # The dead holder's late answer no longer counts; the new holder's does.
    store.complete(first, StoredResponse(201, {}, b"first"))
    store.complete(second, StoredResponse(201, {}, b"second"))
    replay = store.begin(principal, "k" * 20, **args)
    assert replay == StoredResponse(201, {}, b"second")
    with container.sessions() as session:
        row = session.get(IdempotencyKey, (principal, "k" * 20))
        assert row is not None
        assert row.lock_token is None


def test_stored_answers_are_sealed_and_bound_to_their_key(
    client: httpx.Client, container: Container
) -> None:
    """An answer shown once (an API key, a `whsec_` secret) must not sit in plaintext in the
    idempotency table: it is stored sealed under the master key, bound to its own row."""
    body = {"name": "CRM", "scopes": ["payments:read"]}
    k, other = key(), key()
    first = client.post("/v1/api-keys", json=body, headers={"Idempotency-Key": k})
    assert first.status_code == 201, first.text
    secret = first.json()["key"]
    assert client.post("/v1/api-keys", json=body, headers={"Idempotency-Key": other}).is_success
    with container.engine.connect() as connection:
        rows = connection.execute(text("SELECT key, response_body FROM idempotency_keys"))
        stored: dict[str, bytes] = {row.key: bytes(row.response_body) for row in rows}
    assert stored[k].startswith(b"vzk1.")
    # No plaintext JSON at all (a quote never occurs in the sealed base64url form; a bare
    # `vz_` can, by chance, which made this test flaky).
    assert secret.encode() not in stored[k] and b'"key"' not in stored[k]
    again = client.post("/v1/api-keys", json=body, headers={"Idempotency-Key": k})
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["key"] == secret
    # A sealed answer moved to another key's row does not open there: a 409, never a 500,
    # and never the operation run a second time.
    with container.engine.begin() as connection:
        connection.execute(
            text("UPDATE idempotency_keys SET response_body = :body WHERE key = :other"),
            {"body": stored[k], "other": other},
        )
    moved = client.post("/v1/api-keys", json=body, headers={"Idempotency-Key": other})
    assert moved.status_code == 409, moved.text
    assert moved.json()["type"] == PROBLEM + "idempotent-answer-unreadable"
    assert count(container, "api_keys") == 3  # the fixture's, and one per key
