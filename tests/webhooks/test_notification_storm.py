"""A storm of YooKassa notifications (reliability plan T11): thousands of notifications for
thousands of payments, many duplicated, fully shuffled, with stale snapshots and payments that
settle in the middle of the storm, posted concurrently over real HTTP.

The only way Vznos learns how the payments ended is the storm: every create's reply is lost
after the emulator processed it, and the emulator's own notifications are switched off. After
the storm: one inbox row per distinct event, every attempt in the state the emulator says, one
ledger entry per succeeded payment and none for a canceled one, and no 5xx answer.

Sizes: VZNOS_STORM_PAYMENTS and VZNOS_STORM_NOTIFICATIONS. CI runs 400 payments and 2,000
notifications (the same ratios); the plan's full size is
`VZNOS_STORM_PAYMENTS=2000 VZNOS_STORM_NOTIFICATIONS=10000`.
"""

from __future__ import annotations

import copy
import json
import os
import random
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import httpx
from dramatiq.errors import QueueJoinTimeout
from sqlalchemy import func, select

from core.serving import BackgroundServer
from ledger.models import JournalEntry
from ledger.service import card_payment_key
from members.models import Member
from members.schemas import MemberUpsert
from payments.charges.models import Charge, ChargeAttempt
from payments.gateway.emulator import EmulatorServer
from payments.gateway.emulator.faults import Fault
from payments.subscriptions.models import Subscription
from tests.conftest import SHOP_ID, Subscribe, Workers
from vznos.container import Container
from webhooks.inbound.models import InboxItem

PAYMENTS = int(os.environ.get("VZNOS_STORM_PAYMENTS", "400"))
NOTIFICATIONS = int(os.environ.get("VZNOS_STORM_NOTIFICATIONS", "2000"))
PERIOD = date(2026, 12, 1)
DESCRIPTION = "Взнос за 12.2026"
SENDERS = 8

FINAL_EVENT = {"succeeded": "payment.succeeded", "canceled": "payment.canceled"}
ATTEMPT_OF_GATEWAY = {"succeeded": "succeeded", "canceled": "canceled", "pending": "pending"}


def _members_sharing_one_card(
    container: Container,
    emulator: EmulatorServer,
    subscribe: Subscribe,
    principal_key: str,
    count: int,
) -> str:
    """`count` members with live subscriptions, all charging the card the first one saved at
    checkout (the emulator then scripts each autopayment's outcome in order). Returns the
    emulator's payment method id."""
    first = subscribe("storm-0")
    principal = container.access.authenticate(principal_key)
    for n in range(1, count):
        container.members.upsert(
            principal,
            f"storm-{n}",
            MemberUpsert(organization_code="ppo-1", full_name=f"Участник {n}"),
        )
    with container.sessions() as session, session.begin():
        template = session.get(Subscription, first)
        assert template is not None and template.payment_method_id is not None
        others = session.scalars(
            select(Member.id).where(
                Member.external_id.like("storm-%"), Member.id != template.member_id
            )
        ).all()
        copied = [
            column.key
            for column in Subscription.__table__.columns
            if column.key not in ("id", "member_id")
        ]
        for member_id in others:
            clone = Subscription(**{key: getattr(template, key) for key in copied})
            clone.id = uuid.uuid4()
            clone.member_id = member_id
            session.add(clone)
    # The card the first member saved at checkout, as the emulator knows it.
    (initial,) = [p for p in emulator.state.payments() if p["description"] != DESCRIPTION]
    return str(initial["payment_method_id"])


def drain_patiently(workers: Workers, rounds: int = 40) -> None:
    """A big storm on a busy machine can outlast one drain's timeout: keep draining."""
    for _ in range(rounds):
        try:
            workers.drain()
            return
        except QueueJoinTimeout:
            continue
    workers.drain()


def _notification(event: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": "notification", "event": event, "object": obj}).encode()


def test_a_shuffled_storm_with_duplicates_and_stale_snapshots_settles_exactly(
    container: Container,
    emulator: EmulatorServer,
    api_server: BackgroundServer,
    api_key: str,
    subscribe: Subscribe,
    workers: Workers,
) -> None:
    rng = random.Random(20261123)
    token = _members_sharing_one_card(container, emulator, subscribe, api_key, PAYMENTS)
    # Outcomes in billing order: most succeed, some are declined, some stay pending for now.
    outcomes = rng.choices(
        ["succeeded", "insufficient_funds", "pending"], weights=[6, 2, 2], k=PAYMENTS
    )
    emulator.state.script_outcomes(token, outcomes)
    emulator.state.set_notification_url(SHOP_ID, None)
    # Every create is processed but its reply is lost: our attempts stay `submitting`.
    emulator.state.inject_fault(
        Fault(method="POST", path_prefix="/v3/payments", kind="error_after", times=PAYMENTS)
    )
    assert container.billing.run(PERIOD).charges_created == PAYMENTS
    drain_patiently(workers)
    with container.sessions() as session:
        assert set(
            session.scalars(
                select(ChargeAttempt.status)
                .join(Charge, Charge.id == ChargeAttempt.charge_id)
                .where(Charge.period_month == PERIOD)
            )
        ) == {"submitting"}

    december = [p["object"] for p in emulator.state.payments() if p["description"] == DESCRIPTION]
    assert len(december) == PAYMENTS
    pending = [p for p in december if p["status"] == "pending"]
    settle_later = {p["id"]: rng.choice(["succeeded", "issuer_unavailable"]) for p in pending[::2]}

    # Distinct events: each payment's final (or current) snapshot, and a stale `pending`
    # snapshot under another event name for a third of them; the rest of the storm repeats them.
    def snapshot(payment: dict[str, Any]) -> bytes | None:
        event = FINAL_EVENT.get(payment["status"])
        return _notification(event, payment) if event else None

    first_wave = [body for p in december if (body := snapshot(p)) is not None]
    stale = []
    for p in december[::3]:
        old = copy.deepcopy(p)
        old["status"] = "pending"
        old.pop("captured_at", None)
        stale.append(_notification("payment.waiting_for_capture", old))
    distinct_first = first_wave + stale
    filler = max(NOTIFICATIONS // 2 - len(distinct_first), 0)
    wave_one = distinct_first + [rng.choice(distinct_first) for _ in range(filler)]
    rng.shuffle(wave_one)

    codes: Counter[int] = Counter()

    def send(bodies: list[bytes]) -> None:
        # One client (one connection) per sender, as YooKassa's senders keep theirs.
        with httpx.Client(base_url=api_server.url, timeout=30) as http:
            for body in bodies:
                codes[http.post("/webhooks/yookassa", content=body).status_code] += 1

    def storm(bodies: list[bytes]) -> None:
        with ThreadPoolExecutor(SENDERS) as pool:
            list(pool.map(send, [bodies[n::SENDERS] for n in range(SENDERS)]))
        settle_inbox()

    def settle_inbox() -> None:
        """Run the workers until every stored notification is applied (a big storm can take
        longer than one drain's timeout on a busy machine)."""
        left = None
        for _ in range(40):
            drain_patiently(workers)
            with container.sessions() as session:
                left = session.scalar(
                    select(func.count())
                    .select_from(InboxItem)
                    .where(InboxItem.processed_at.is_(None))
                )
            if left == 0:
                return
        raise AssertionError(f"{left} notifications still unprocessed")

    storm(wave_one)
    # Half of the pending payments end in the middle of the storm; their notifications arrive
    # mixed with more duplicates and stale copies of the first wave.
    settled = [emulator.state.settle_payment(pid, outcome) for pid, outcome in settle_later.items()]
    second_distinct = [body for p in settled if (body := snapshot(p)) is not None]
    rest = NOTIFICATIONS - len(wave_one) - len(second_distinct)
    wave_two = second_distinct + [rng.choice(distinct_first) for _ in range(max(rest, 0))]
    rng.shuffle(wave_two)
    storm(wave_two)

    assert set(codes) == {200}, codes
    assert sum(codes.values()) == len(wave_one) + len(wave_two) >= NOTIFICATIONS
    distinct = {
        (json.loads(b)["event"], json.loads(b)["object"]["id"])
        for b in distinct_first + second_distinct
    }
    truth = {
        p["id"]: p["object"] for p in emulator.state.payments() if p["description"] == DESCRIPTION
    }
    with container.sessions() as session:
        inbox = session.execute(
            select(InboxItem.event, InboxItem.object_id).where(InboxItem.object_id.in_(truth))
        ).all()
        assert len(inbox) == len(distinct)
        assert {(row.event, row.object_id) for row in inbox} == distinct
        assert (
            session.scalar(
                select(func.count()).select_from(InboxItem).where(InboxItem.processed_at.is_(None))
            )
            == 0
        )
        attempts = session.execute(
            select(ChargeAttempt.gateway_payment_id, ChargeAttempt.status, Charge.status)
            .join(Charge, Charge.id == ChargeAttempt.charge_id)
            .where(Charge.period_month == PERIOD)
        ).all()
        notified = {object_id for _, object_id in distinct}
        for payment_id, attempt_status, _charge_status in attempts:
            if payment_id is None:
                # Never named in the storm: still pending at the gateway, still unknown to us.
                continue
            assert attempt_status == ATTEMPT_OF_GATEWAY[truth[payment_id]["status"]]
        learned = {a.gateway_payment_id for a in attempts if a.gateway_payment_id}
        assert learned == notified
        entries = Counter(
            session.scalars(
                select(JournalEntry.idempotency_key).where(
                    JournalEntry.idempotency_key.like("payment:%")
                )
            )
        )
    succeeded = {pid for pid, p in truth.items() if p["status"] == "succeeded"}
    december_keys = {card_payment_key(pid) for pid in truth}
    assert {key for key in entries if key in december_keys} == {
        card_payment_key(pid) for pid in succeeded
    }
    assert set(entries.values()) == {1}
