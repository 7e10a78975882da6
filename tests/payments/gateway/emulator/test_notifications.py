"""HTTP notifications to the shop's URL: content, retries, events."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from yookassa.domain.notification import WebhookNotificationFactory

from payments.gateway.emulator.notifier import Notifier
from payments.gateway.emulator.testing import WebhookReceiver

if TYPE_CHECKING:
    from tests.payments.gateway.emulator.conftest import Harness


def test_payment_succeeded_is_delivered_with_full_object(
    harness: Harness, receiver: WebhookReceiver, new_key: Callable[[], str]
) -> None:
    harness.state.set_notification_url(harness.shop, receiver.url)
    created = harness.create(harness.first_payment_body(), new_key()).json()
    assert harness.checkout(created["confirmation"]["confirmation_url"]).status_code == 303
    harness.state.flush_notifications()
    assert receiver.events() == ["payment.succeeded"]
    notification = receiver.notifications()[0]
    assert notification["type"] == "notification"
    assert notification["object"] == harness.state.get_payment(harness.shop, created["id"])
    parsed = WebhookNotificationFactory().create(notification)
    assert parsed.object.payment_method.saved is True


def test_retry_after_a_500(
    harness: Harness, receiver: WebhookReceiver, new_key: Callable[[], str]
) -> None:
    receiver.statuses.extend([500])
    harness.state.set_notification_url(harness.shop, receiver.url)
    created = harness.create(harness.first_payment_body(), new_key()).json()
    harness.checkout(created["confirmation"]["confirmation_url"], card="5555555555554600")
    harness.state.flush_notifications()
    assert receiver.events() == ["payment.canceled", "payment.canceled"]
    assert receiver.answered == [500, 200]


def test_other_events(
    harness: Harness, receiver: WebhookReceiver, new_key: Callable[[], str]
) -> None:
    harness.state.set_notification_url(harness.shop, receiver.url)
    held = harness.create(harness.first_payment_body(capture=False), new_key()).json()
    harness.checkout(held["confirmation"]["confirmation_url"])
    with harness.api() as api:
        api.post(f"/v3/payments/{held['id']}/capture", headers={"Idempotence-Key": new_key()})
    harness.post(
        "/v3/refunds",
        {"payment_id": held["id"], "amount": {"value": "1.00", "currency": "RUB"}},
        new_key(),
    )
    method = harness.post(
        "/v3/payment_methods",
        {
            "type": "bank_card",
            "confirmation": {"type": "redirect", "return_url": harness.return_url},
        },
        new_key(),
    ).json()
    harness.checkout(method["confirmation"]["confirmation_url"])
    harness.state.flush_notifications()
    assert receiver.events() == [
        "payment.waiting_for_capture",
        "payment.succeeded",
        "refund.succeeded",
        "payment_method.active",
    ]
    refund = receiver.notifications()[2]["object"]
    assert refund["payment_id"] == held["id"]
    assert receiver.notifications()[3]["object"]["status"] == "active"


def test_nothing_sent_without_url(harness: Harness, new_key: Callable[[], str]) -> None:
    before = len(harness.state.notifier.history())
    created = harness.create(harness.first_payment_body(), new_key()).json()
    harness.checkout(created["confirmation"]["confirmation_url"])
    harness.state.flush_notifications()
    assert len(harness.state.notifier.history()) == before


def test_gives_up_after_the_schedule() -> None:
    with WebhookReceiver(statuses=[500, 502, 503]) as receiver:
        notifier = Notifier(backoff=(0.01, 0.01))
        notifier.enqueue(receiver.url, "payment.succeeded", {"id": "p-1"})
        assert notifier.flush(timeout=5)
        assert receiver.answered == [500, 502, 503]
        assert [r.status_code for r in notifier.history()] == [500, 502, 503]
        notifier.close()


def test_unreachable_receiver_is_given_up() -> None:
    notifier = Notifier(backoff=(0.01,), timeout=1)
    notifier.enqueue("http://127.0.0.1:9/never", "payment.succeeded", {"id": "p-1"})
    assert notifier.flush(timeout=5)
    assert all(r.error for r in notifier.history())
    notifier.close()
