"""The official yookassa SDK, unmodified, against the emulator over loopback HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from yookassa import Configuration, Payment, PaymentMethod, Refund, Settings
from yookassa.domain.exceptions import BadRequestError, NotFoundError, UnauthorizedError

if TYPE_CHECKING:
    from tests.payments.gateway.emulator.conftest import Harness


@pytest.fixture
def sdk(harness: Harness) -> Iterator[Harness]:
    Configuration.configure(harness.shop, harness.secret, api_url=harness.server.api_url)
    try:
        yield harness
    finally:
        # The SDK's configuration is global: leave nothing pointing at this emulator.
        Configuration.configure(None, None)


def _key() -> str:
    return str(uuid.uuid4())


def test_first_payment_checkout_autopayment_refund_and_list(sdk: Harness) -> None:
    created = Payment.create(
        {
            "amount": {"value": "350.00", "currency": "RUB"},
            "capture": True,
            "save_payment_method": True,
            "payment_method_data": {"type": "bank_card"},
            "confirmation": {"type": "redirect", "return_url": sdk.return_url},
            "description": "Членский взнос",
            "metadata": {"attempt_id": "a-1", "member_ref": "m-1"},
        },
        _key(),
    )
    assert created.status == "pending"
    assert created.paid is False
    assert len(created.id) == 36
    url = created.confirmation.confirmation_url
    assert url == f"{sdk.server.url}/checkout/{created.id}"

    done = sdk.checkout(url)
    assert done.status_code == 303
    assert done.headers["location"] == sdk.return_url

    paid = Payment.find_one(created.id)
    assert paid.status == "succeeded"
    assert paid.paid is True
    assert paid.payment_method.saved is True
    assert paid.payment_method.id == created.id
    assert paid.payment_method.card.last4 == "4444"
    assert paid.payment_method.card.expiry_month == "12"
    assert paid.payment_method.title == "Bank card *4444"
    assert paid.income_amount.value == Decimal("337.75")  # 350.00 minus 3.5 %
    assert paid.metadata["member_ref"] == "m-1"
    assert paid.recipient.account_id == sdk.shop
    assert paid.authorization_details.three_d_secure.applied is False
    assert paid.created_at.endswith("Z")

    auto = Payment.create(
        {
            "amount": {"value": "350.00", "currency": "RUB"},
            "capture": True,
            "payment_method_id": paid.payment_method.id,
            "description": "Членский взнос за 11.2026",
            "metadata": {"attempt_id": "a-2"},
        },
        _key(),
    )
    assert auto.status == "succeeded"
    assert auto.payment_method.id == created.id

    refund = Refund.create(
        {
            "payment_id": auto.id,
            "amount": {"value": "100.00", "currency": "RUB"},
            "description": "Ошибочное списание",
        },
        _key(),
    )
    assert refund.status == "succeeded"
    assert refund.payment_id == auto.id
    assert Refund.find_one(refund.id).amount.value == Decimal("100.00")
    assert Payment.find_one(auto.id).refunded_amount.value == Decimal("100.00")
    assert [r.id for r in Refund.list({"payment_id": auto.id}).items] == [refund.id]

    listed = Payment.list({"limit": 1, "status": "succeeded"})
    assert [p.id for p in listed.items] == [auto.id]
    assert listed.next_cursor
    rest = Payment.list({"limit": 1, "status": "succeeded", "cursor": listed.next_cursor})
    assert [p.id for p in rest.items] == [created.id]
    assert getattr(rest, "next_cursor", None) is None


def test_two_stage_capture_and_cancel_with_empty_bodies(sdk: Harness) -> None:
    first = Payment.create(
        {
            "amount": {"value": "10.00", "currency": "RUB"},
            "capture": False,
            "payment_method_data": {"type": "bank_card"},
            "confirmation": {"type": "redirect", "return_url": sdk.return_url},
        },
        _key(),
    )
    assert sdk.checkout(first.confirmation.confirmation_url).status_code == 303
    held = Payment.find_one(first.id)
    assert held.status == "waiting_for_capture"
    assert held.expires_at
    assert Payment.capture(first.id, None, _key()).status == "succeeded"

    partial = Payment.create(
        {
            "amount": {"value": "10.00", "currency": "RUB"},
            "capture": False,
            "payment_method_data": {"type": "bank_card"},
            "confirmation": {"type": "redirect", "return_url": sdk.return_url},
        },
        _key(),
    )
    sdk.checkout(partial.confirmation.confirmation_url)
    captured = Payment.capture(partial.id, {"amount": {"value": "4.00", "currency": "RUB"}}, _key())
    assert captured.amount.value == Decimal("4.00")
    assert captured.income_amount.value == Decimal("3.86")  # 4.00 minus 3.5 %, rounded

    second = Payment.create(
        {
            "amount": {"value": "10.00", "currency": "RUB"},
            "capture": False,
            "payment_method_data": {"type": "bank_card"},
            "confirmation": {"type": "redirect", "return_url": sdk.return_url},
        },
        _key(),
    )
    sdk.checkout(second.confirmation.confirmation_url)
    canceled = Payment.cancel(second.id, _key())
    assert canceled.status == "canceled"
    assert canceled.cancellation_details.reason == "canceled_by_merchant"
    with pytest.raises(BadRequestError):
        Payment.cancel(second.id, _key())


def test_save_card_without_payment(sdk: Harness) -> None:
    method = PaymentMethod.create(
        {"type": "bank_card", "confirmation": {"type": "redirect", "return_url": sdk.return_url}},
        _key(),
    )
    assert method.status == "pending"
    assert method.saved is False
    done = sdk.checkout(method.confirmation.confirmation_url, card="2202474301322987")
    assert done.status_code == 303
    active = PaymentMethod.find_one(method.id)
    assert active.status == "active"
    assert active.saved is True
    assert active.card["card_type"] == "Mir"

    auto = Payment.create(
        {
            "amount": {"value": "500.00", "currency": "RUB"},
            "capture": True,
            "payment_method_id": method.id,
        },
        _key(),
    )
    assert auto.status == "succeeded"


def test_sdk_errors_and_me(sdk: Harness) -> None:
    assert Settings.get_account_settings().account_id == sdk.shop
    with pytest.raises(NotFoundError):
        Payment.find_one(str(uuid.uuid4()))
    with pytest.raises(BadRequestError) as bad:
        Payment.create(
            {
                "amount": {"value": "350.00", "currency": "RUB"},
                "capture": True,
                "payment_method_id": "no-such-method",
            },
            _key(),
        )
    assert bad.value.content["parameter"] == "payment_method_id"
    Configuration.configure(sdk.shop, "wrong", api_url=sdk.server.api_url)
    with pytest.raises(UnauthorizedError):
        Payment.find_one(str(uuid.uuid4()))
