"""T14: a CRM that fails a fifth of attempts (500, timeouts, 429 with Retry-After) and an
endpoint that goes 410: no event lost, retries follow the schedule on a moved manual clock,
nothing is sent after a 410, one `webhook-id` per event."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import respx
from sqlalchemy import func, select

from core.clock import ManualClock
from core.db import transaction
from core.outbox import Event, EventType, emit
from vznos.container import Container
from webhooks.outbound.delivery import RETRY_SCHEDULE
from webhooks.outbound.models import WebhookDelivery
from webhooks.outbound.schemas import WebhookEndpointCreated
from webhooks.outbound.states import DeliveryStatus, DisabledReason, EndpointStatus

from .conftest import CRM_IP, Outbound, endpoint_row

EVENTS = 300
GONE_AFTER = 40  # the second endpoint answers 410 from its 41st request on
RETRY_AFTER_SECONDS = 120


def _emit(container: Container, org_id: Any, clock: ManualClock, count: int) -> None:
    with transaction(container.sessions) as session:
        for n in range(count):
            emit(
                session,
                type=EventType.PAYMENT_SUCCEEDED,
                organization_id=org_id,
                occurred_at=clock.now(),
                payload={"charge_id": f"charge-{n}", "n": n},
            )


def _next_due(container: Container) -> datetime | None:
    with container.sessions() as session:
        due: datetime | None = session.scalar(
            select(func.min(WebhookDelivery.next_attempt_at)).where(
                WebhookDelivery.status == DeliveryStatus.PENDING
            )
        )
        return due


def _run_until_quiet(container: Container, clock: ManualClock, outbound: Outbound) -> None:
    outbound.run_due()
    for _ in range(10_000):
        due = _next_due(container)
        if due is None:
            return
        if due > clock.now():
            clock.set(due)
        outbound.run_due()
    raise AssertionError("deliveries never settled")


def _within_schedule(gap: timedelta, attempt_no: int, retry_after: bool) -> bool:
    nominal = RETRY_SCHEDULE[attempt_no]
    if retry_after:
        nominal = max(nominal, timedelta(seconds=RETRY_AFTER_SECONDS))
        return (
            nominal <= gap <= max(nominal, RETRY_SCHEDULE[attempt_no] * 1.1) + timedelta(seconds=1)
        )
    return nominal <= gap <= nominal * 1.1 + timedelta(seconds=1)


def test_flaky_crm_loses_nothing_and_a_gone_endpoint_hears_nothing_more(
    container: Container,
    clock: ManualClock,
    outbound: Outbound,
    register: Callable[..., WebhookEndpointCreated],
    org_id: Any,
    verify_now: Callable[[str, bytes, dict[str, str]], Any],
) -> None:
    flaky = register()
    gone = register("https://crm2.example.org/hooks")
    rng = random.Random(14)
    # Per event: (clock time, webhook-id, what we answered) of every request.
    flaky_log: dict[str, list[tuple[datetime, str, str]]] = defaultdict(list)
    gone_requests: list[datetime] = []
    gone_at: list[datetime] = []

    def flaky_reply(request: httpx.Request) -> httpx.Response:
        body = verify_now(flaky.secret, request.content, dict(request.headers))
        roll = rng.random()
        answer = "ok"
        if roll < 0.05:
            answer = "500"
        elif roll < 0.10:
            answer = "502"
        elif roll < 0.15:
            answer = "429"
        elif roll < 0.20:
            answer = "timeout"
        flaky_log[body["id"]].append((clock.now(), request.headers["webhook-id"], answer))
        if answer == "timeout":
            raise httpx.ReadTimeout("read timed out", request=request)
        if answer == "429":
            return httpx.Response(429, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        return httpx.Response(200 if answer == "ok" else int(answer), text="x" * 5000)

    def gone_reply(request: httpx.Request) -> httpx.Response:
        verify_now(gone.secret, request.content, dict(request.headers))
        gone_requests.append(clock.now())
        if len(gone_requests) > GONE_AFTER:
            gone_at.append(clock.now())
            return httpx.Response(410)
        return httpx.Response(204)

    _emit(container, org_id, clock, EVENTS)
    with respx.mock(assert_all_mocked=True) as mock:
        mock.post(f"https://{CRM_IP}/hooks/vznos").mock(side_effect=flaky_reply)
        mock.post("https://93.184.216.35/hooks").mock(side_effect=gone_reply)
        _run_until_quiet(container, clock, outbound)

    # No event lost: every event reached the flaky CRM with a 2xx, under its own id.
    with container.sessions() as session:
        event_ids = {str(i) for i in session.scalars(select(Event.id))}
    assert set(flaky_log) == event_ids
    failures = 0
    for event_id, requests in flaky_log.items():
        assert {webhook_id for _, webhook_id, _ in requests} == {event_id}
        assert requests[-1][2] == "ok"
        failures += len(requests) - 1
        for n in range(1, len(requests)):
            gap = requests[n][0] - requests[n - 1][0]
            assert _within_schedule(gap, n, requests[n - 1][2] == "429"), (n, gap)
    assert failures > EVENTS * 0.1  # the stub really did fail about a fifth of attempts

    # The 410 disabled the endpoint at once; nothing was sent to it afterwards.
    assert len(gone_at) == 1
    assert all(t <= gone_at[0] for t in gone_requests)
    row = endpoint_row(container, gone.id)
    assert row.status == EndpointStatus.DISABLED
    assert row.disabled_reason == DisabledReason.GONE
    with container.sessions() as session:
        statuses = dict(
            session.execute(
                select(WebhookDelivery.status, func.count())
                .where(WebhookDelivery.endpoint_id == gone.id)
                .group_by(WebhookDelivery.status)
            ).all()
        )
        disabled_events = session.scalars(
            select(Event.payload).where(Event.type == "webhook_endpoint.disabled")
        ).all()
    assert statuses == {"succeeded": GONE_AFTER, "failed": 1, "canceled": EVENTS - GONE_AFTER - 1}
    assert disabled_events == [
        {"endpoint_id": str(gone.id), "reason": "gone", "failing_since": None}
    ]


def test_the_schedule_runs_about_three_days_then_a_failing_endpoint_is_disabled(
    container: Container,
    clock: ManualClock,
    outbound: Outbound,
    register: Callable[..., WebhookEndpointCreated],
    org_id: Any,
) -> None:
    endpoint = register()
    start = clock.now()
    times: list[datetime] = []
    with respx.mock(assert_all_mocked=True) as mock:

        def fail(request: httpx.Request) -> httpx.Response:
            times.append(clock.now())
            return httpx.Response(500)

        mock.post(f"https://{CRM_IP}/hooks/vznos").mock(side_effect=fail)
        _emit(container, org_id, clock, 1)
        _run_until_quiet(container, clock, outbound)
        assert len(times) == len(RETRY_SCHEDULE)
        for n in range(1, len(times)):
            assert _within_schedule(times[n] - times[n - 1], n, False)
        total = times[-1] - start
        assert timedelta(hours=75.5) <= total <= timedelta(hours=75.5 * 1.1)
        with container.sessions() as session:
            [delivery] = session.scalars(select(WebhookDelivery)).all()
            assert delivery.status == DeliveryStatus.FAILED
            assert delivery.attempts == len(RETRY_SCHEDULE)
        assert endpoint_row(container, endpoint.id).status == EndpointStatus.ACTIVE

        # Still failing five days after the first failure: the endpoint is disabled.
        clock.set(start + timedelta(days=5, minutes=1))
        _emit(container, org_id, clock, 1)
        _run_until_quiet(container, clock, outbound)
    row = endpoint_row(container, endpoint.id)
    assert row.status == EndpointStatus.DISABLED
    assert row.disabled_reason == DisabledReason.FAILING
    with container.sessions() as session:
        payloads = session.scalars(
            select(Event.payload).where(Event.type == "webhook_endpoint.disabled")
        ).all()
    assert [p["reason"] for p in payloads] == ["failing"]
    assert json.dumps(payloads[0]["endpoint_id"]) == json.dumps(str(endpoint.id))


def test_delivery_log_keeps_status_duration_and_a_clipped_body(
    container: Container,
    clock: ManualClock,
    outbound: Outbound,
    register: Callable[..., WebhookEndpointCreated],
    principal: Any,
    org_id: Any,
) -> None:
    endpoint = register()
    _emit(container, org_id, clock, 3)
    with respx.mock(assert_all_mocked=True) as mock:
        mock.post(f"https://{CRM_IP}/hooks/vznos").mock(
            return_value=httpx.Response(500, text="ы" * 2000)
        )
        outbound.run_due()
    first = outbound.endpoints.deliveries(principal, endpoint.id, starting_after=None, limit=2)
    assert len(first.data) == 2 and first.has_more
    rest = outbound.endpoints.deliveries(
        principal, endpoint.id, starting_after=first.data[-1].id, limit=2
    )
    assert len(rest.data) == 1 and not rest.has_more
    attempt = rest.data[0].attempt_log[0]
    assert attempt.status_code == 500
    assert attempt.duration_ms >= 0
    assert attempt.response_body is not None
    assert len(attempt.response_body.encode()) <= 1024 + 3  # a cut multibyte char → U+FFFD
    due = rest.data[0].next_attempt_at
    assert due is not None
    assert RETRY_SCHEDULE[1] <= due - clock.now() <= RETRY_SCHEDULE[1] * 1.1
