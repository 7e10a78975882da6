"""The emulator's engine: every YooKassa object, rule and timer, with no HTTP.

One re-entrant lock guards everything, so an idempotent request's check, work and stored answer are
atomic. Timers (1-hour confirmation window, 7-day capture hold) run lazily on the injected clock at
the start of every operation, which makes time travel in tests exact.
"""

from __future__ import annotations

import copy
import hmac
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.clock import Clock, SystemClock
from payments.gateway.emulator import objects
from payments.gateway.emulator.cards import (
    DECLINE_REASONS,
    TEST_CARDS,
    KnownCard,
    card_expired,
    parse_card,
    party_for,
)
from payments.gateway.emulator.errors import CheckoutError, EmulatorError, invalid, not_found
from payments.gateway.emulator.faults import Fault, FaultRegistry
from payments.gateway.emulator.idempotency import IdempotencyStore, fingerprint
from payments.gateway.emulator.listing import page as list_page
from payments.gateway.emulator.listing import parse_query, parse_time
from payments.gateway.emulator.notifier import NotificationFault, Notifier
from payments.gateway.emulator.records import (
    STATE_VERSION,
    Record,
    oracle_row,
    read_state,
    write_atomically,
)
from payments.gateway.emulator.validation import (
    Money,
    parse_capture_amount,
    parse_payment_method_request,
    parse_payment_request,
    parse_refund_request,
    require_object,
)

__all__ = ["CheckoutError", "EmulatorError", "EmulatorState", "Fault"]

logger = logging.getLogger(__name__)

OUTCOMES = frozenset({"succeeded", "pending"}) | DECLINE_REASONS
REFUND_OUTCOMES = frozenset({"succeeded", "pending", "canceled"})
_PAYMENT_EVENTS = {
    "succeeded": "payment.succeeded",
    "canceled": "payment.canceled",
    "waiting_for_capture": "payment.waiting_for_capture",
}


class EmulatorState:
    def __init__(
        self,
        shops: Mapping[str, str],
        clock: Clock | None = None,
        base_url: str = "",
        state_file: Path | None = None,
        *,
        notifier: Notifier | None = None,
    ) -> None:
        self._shops = dict(shops)
        self.clock: Clock = clock or SystemClock()
        self.base_url = base_url
        self.state_file = state_file
        self.notifier = notifier or Notifier()
        self._faults = FaultRegistry()
        self._lock = threading.RLock()
        self._seq = 0
        self._payments: dict[str, Record] = {}
        self._methods: dict[str, Record] = {}
        self._refunds: dict[str, Record] = {}
        self._idem = IdempotencyStore()
        self._outcomes: dict[str, list[str]] = {}
        # How the next refunds end (pending | succeeded | canceled); unscripted ones succeed.
        self._refund_outcomes: list[str] = []
        self._notify_urls: dict[str, str] = {}
        self._journal: list[dict[str, Any]] = []
        # Off by default: a 3-D Secure card then pays in one step, as the first tests expect.
        self.three_ds_step = False
        # Network and processing time of a real acquirer, per API request (min, max seconds).
        self.latency_seconds: tuple[float, float] | None = None
        if state_file is not None and state_file.exists():
            self._load(state_file)

    # ---- shops, auth, operator controls -------------------------------------------------

    def add_shop(self, shop_id: str, secret_key: str) -> None:
        with self._lock:
            self._shops[shop_id] = secret_key

    def authenticate(self, shop_id: str, secret_key: str) -> bool:
        expected = self._shops.get(shop_id)
        return expected is not None and hmac.compare_digest(expected, secret_key)

    def set_notification_url(self, shop_id: str, url: str | None) -> None:
        with self._lock:
            if url:
                self._notify_urls[shop_id] = url
            else:
                self._notify_urls.pop(shop_id, None)
            self._save()

    def script_outcomes(self, payment_method_id: str, outcomes: Sequence[str]) -> None:
        """Replaces the script: the next autopayments with this method end as listed, in order."""
        unknown = [o for o in outcomes if o not in OUTCOMES]
        if unknown:
            raise ValueError(f"unknown outcomes {unknown}; use succeeded, pending or a reason")
        with self._lock:
            self._outcomes[payment_method_id] = list(outcomes)
            self._save()

    def script_refund_outcomes(self, outcomes: Sequence[str]) -> None:
        """Replaces the refund script: the next refunds end as listed, in order (`pending`
        waits for `settle_refund`; YooKassa notifies `refund.succeeded` only)."""
        unknown = [o for o in outcomes if o not in REFUND_OUTCOMES]
        if unknown:
            raise ValueError(f"unknown refund outcomes {unknown}; use {sorted(REFUND_OUTCOMES)}")
        with self._lock:
            self._refund_outcomes = list(outcomes)

    def seed_saved_cards(
        self,
        shop_id: str,
        method_ids: Sequence[str],
        number: str = "5555555555554444",
        expiry: tuple[int, int] = (12, 2030),
    ) -> None:
        """Saved cards as if each had been bound at checkout: for benchmarks and chaos tests
        that need thousands of chargeable members without thousands of checkouts."""
        known = TEST_CARDS[number]
        card = {
            "first6": number[:6],
            "last4": number[-4:],
            "expiry_year": f"{expiry[1]:04d}",
            "expiry_month": f"{expiry[0]:02d}",
            "card_type": known.network,
            "issuer_country": "RU",
            "issuer_name": "Test Bank",
        }
        with self._lock:
            for method_id in method_ids:
                method = objects.bank_card_method(method_id, dict(card), True, "active")
                method["holder"] = {"account_id": shop_id}
                self._new_record(self._methods, shop_id, method)
            self._save()

    def inject_fault(self, fault: Fault) -> None:
        self._faults.inject(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def pending_faults(self) -> list[Fault]:
        return self._faults.pending()

    def take_fault(self, method: str, path: str) -> Fault | None:
        return self._faults.take(method, path)

    def script_notifications(self, fault: NotificationFault) -> None:
        self.notifier.script(fault)

    def set_options(
        self,
        *,
        three_ds_step: bool | None = None,
        latency_ms: tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        """Behaviour switched per test: with `three_ds_step` a 3-D Secure test card shows the
        issuer's confirmation page before the payment completes; `latency_ms` (min, max) delays
        every API answer by a uniform random time, as a real acquirer over the internet would
        (benchmarks); (0, 0) turns it off."""
        with self._lock:
            if three_ds_step is not None:
                self.three_ds_step = three_ds_step
            if latency_ms is not None:
                low, high = sorted(float(v) for v in latency_ms)
                if low < 0:
                    raise ValueError("latency must not be negative")
                self.latency_seconds = (low / 1000, high / 1000) if high > 0 else None
            latency = self.latency_seconds
            return {
                "three_ds_step": self.three_ds_step,
                "latency_ms": [latency[0] * 1000, latency[1] * 1000] if latency else [0, 0],
            }

    def note_request(self, method: str, path: str, key: str | None, fault: str | None) -> None:
        """The request journal: every API call with its key and the emulated time, so tests can
        check e.g. that no create was replayed with a key older than 23 h."""
        with self._lock:
            self._journal.append(
                {
                    "method": method,
                    "path": path,
                    "idempotence_key": key,
                    "at": self.clock.now(),
                    "fault": fault,
                }
            )

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._journal]

    def flush_notifications(self, timeout: float = 5.0) -> None:
        self.notifier.flush(timeout)

    def close(self) -> None:
        self.notifier.close()

    def reset(self) -> None:
        """Forgets every object, key, script and fault; keeps shops and notification URLs."""
        with self._lock:
            self._payments.clear()
            self._methods.clear()
            self._refunds.clear()
            self._idem.clear()
            self._outcomes.clear()
            self._refund_outcomes.clear()
            self._faults.clear()
            self._journal.clear()
            self.notifier.clear_faults()
            self.three_ds_step = False
            self.latency_seconds = None
            self._save()

    # ---- oracles ------------------------------------------------------------------------

    def payments(self, shop_id: str | None = None) -> list[dict[str, Any]]:
        """Every payment, oldest first: what was charged, with which key and which card."""
        with self._lock:
            self._tick()
            ordered = sorted(self._payments.values(), key=lambda r: r.seq)
            return [oracle_row(r) for r in ordered if shop_id is None or r.shop_id == shop_id]

    def refunds(self, shop_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            ordered = sorted(self._refunds.values(), key=lambda r: r.seq)
            return [
                copy.deepcopy(r.obj) for r in ordered if shop_id is None or r.shop_id == shop_id
            ]

    # ---- idempotent execution -----------------------------------------------------------

    def idempotent(
        self,
        shop_id: str,
        key: str,
        method: str,
        path: str,
        body: Any,
        action: Callable[[], dict[str, Any]],
    ) -> tuple[int, dict[str, Any]]:
        """Replays a stored answer or runs `action` and stores its answer for 24 h.

        Errors are not stored: a 4xx means nothing happened, and the caller must change the request
        (with a new key) anyway.
        """
        with self._lock:
            now = self.clock.now()
            request_hash = fingerprint(method, path, body)
            stored = self._idem.lookup(shop_id, key, request_hash, now)
            if stored is not None:
                return stored.status, copy.deepcopy(stored.body)
            result = action()
            self._idem.store(shop_id, key, request_hash, 200, copy.deepcopy(result), now)
            self._save()
            return 200, result

    # ---- payments -----------------------------------------------------------------------

    def create_payment(
        self, shop_id: str, body: Any, idempotence_key: str | None = None
    ) -> dict[str, Any]:
        req = parse_payment_request(require_object(body))
        with self._lock:
            self._tick()
            now = self.clock.now()
            method = None
            if req.payment_method_id is not None:
                method = self._saved_method(shop_id, req.payment_method_id)
            payment_id = objects.new_id()
            obj = objects.new_payment(
                payment_id,
                shop_id,
                req.amount,
                now,
                req.description,
                req.metadata,
                req.merchant_customer_id,
            )
            rec = self._new_record(self._payments, shop_id, obj)
            rec.extra.update(
                idempotence_key=idempotence_key, capture=req.capture, save=req.save_payment_method
            )
            if method is not None:
                self._autopay(rec, method)
            else:
                assert req.confirmation is not None
                url = f"{self.base_url}/checkout/{payment_id}"
                obj["confirmation"] = objects.confirmation_for(req.confirmation, payment_id, url)
                rec.extra["return_url"] = req.confirmation.get("return_url")
                if req.payment_method_type is not None:
                    obj["payment_method"] = objects.bank_card_method(
                        payment_id, None, saved=False, status="pending"
                    )
            logger.info(
                "payment %s created for shop %s: %s %s, status %s",
                payment_id,
                shop_id,
                obj["amount"]["value"],
                obj["amount"]["currency"],
                obj["status"],
            )
            self._emit_payment(rec)
            self._save()
            return copy.deepcopy(obj)

    def _saved_method(self, shop_id: str, method_id: str) -> Record:
        method = self._methods.get(method_id)
        if method is None or method.shop_id != shop_id:
            # A payment made without save_payment_method has a method id that cannot be reused.
            payment = self._payments.get(method_id)
            if payment is not None and payment.shop_id == shop_id:
                raise invalid("Payment method is not saved", "payment_method_id")
            raise invalid("Payment method is not found", "payment_method_id")
        if not method.obj.get("saved") or method.obj.get("status") != "active":
            raise invalid("Payment method is not saved", "payment_method_id")
        return method

    def _autopay(self, rec: Record, method: Record) -> None:
        m = method.obj
        method_id = m["id"]
        rec.obj["payment_method"] = objects.bank_card_method(m["id"], m.get("card"), True, "active")
        card = m.get("card") or {}
        now = self.clock.now()
        if card and card_expired(int(card["expiry_month"]), int(card["expiry_year"]), now):
            objects.mark_canceled(rec.obj, "payment_network", "card_expired")
            return
        script = self._outcomes.get(method_id)
        outcome = script.pop(0) if script else "succeeded"
        self._finish(rec, outcome, three_ds=False)

    def _finish(self, rec: Record, outcome: str, three_ds: bool) -> None:
        if outcome == "pending":
            return
        if outcome == "succeeded":
            objects.mark_paid(rec.obj, bool(rec.extra.get("capture")), three_ds, self.clock.now())
        else:
            objects.mark_canceled(rec.obj, party_for(outcome), outcome)

    def get_payment(self, shop_id: str, payment_id: str) -> dict[str, Any]:
        with self._lock:
            self._tick()
            return copy.deepcopy(self._payment(shop_id, payment_id).obj)

    def list_payments(self, shop_id: str, query: Mapping[str, str]) -> dict[str, Any]:
        q = parse_query(query, ("created_at", "captured_at"), ("status", "payment_method"))
        getters: dict[str, Callable[[dict[str, Any]], Any]] = {
            "status": lambda o: o["status"],
            "payment_method": lambda o: (o.get("payment_method") or {}).get("type"),
        }
        with self._lock:
            self._tick()
            records = [(r.seq, r.obj) for r in self._payments.values() if r.shop_id == shop_id]
            return copy.deepcopy(list_page(records, q, getters))

    def capture(self, shop_id: str, payment_id: str, body: Any) -> dict[str, Any]:
        with self._lock:
            self._tick()
            rec = self._payment(shop_id, payment_id)
            if rec.obj["status"] != "waiting_for_capture":
                raise invalid("Payment can not be captured in current status", "payment_id")
            amount = parse_capture_amount(require_object(body), Money.from_json(rec.obj["amount"]))
            objects.capture_payment(rec.obj, amount, self.clock.now())
            self._emit_payment(rec)
            self._save()
            return copy.deepcopy(rec.obj)

    def cancel(self, shop_id: str, payment_id: str) -> dict[str, Any]:
        with self._lock:
            self._tick()
            rec = self._payment(shop_id, payment_id)
            if rec.obj["status"] != "waiting_for_capture":
                raise invalid("Payment can not be canceled in current status", "payment_id")
            objects.mark_canceled(rec.obj, "merchant", "canceled_by_merchant")
            self._emit_payment(rec)
            self._save()
            return copy.deepcopy(rec.obj)

    def settle_payment(self, payment_id: str, outcome: str) -> dict[str, Any]:
        """Finishes a pending payment (e.g. a scripted `pending` autopayment) and notifies."""
        if outcome not in OUTCOMES or outcome == "pending":
            raise ValueError(f"settle needs succeeded or a cancellation reason, not {outcome!r}")
        with self._lock:
            self._tick()
            rec = self._payments.get(payment_id)
            if rec is None:
                raise not_found("Payment not found or forbidden")
            if rec.obj["status"] != "pending":
                raise invalid("Payment is not pending", "payment_id")
            self._finish(rec, outcome, three_ds=False)
            self._emit_payment(rec)
            self._save()
            return copy.deepcopy(rec.obj)

    # ---- refunds ------------------------------------------------------------------------

    def create_refund(self, shop_id: str, body: Any) -> dict[str, Any]:
        req = parse_refund_request(require_object(body))
        with self._lock:
            self._tick()
            payment = self._payment(shop_id, req.payment_id)
            if payment.obj["status"] != "succeeded":
                raise invalid("Payment can not be refunded in current status.", "payment_id")
            left = objects.refundable_left(payment.obj)
            if req.amount.currency != left.currency:
                raise invalid("Currencies do not match", "amount.currency")
            if left.value <= 0:
                raise invalid("Payment is already completely refunded", "payment_id")
            if req.amount.value > left.value:
                raise invalid("Refund sum exceeded", "amount.value")
            refund = objects.new_refund(
                objects.new_id(),
                req.payment_id,
                req.amount,
                self.clock.now(),
                req.description,
                req.metadata,
            )
            outcome = self._refund_outcomes.pop(0) if self._refund_outcomes else "succeeded"
            if outcome == "canceled":
                refund["status"] = "canceled"
                refund["cancellation_details"] = {
                    "party": "refund_network",
                    "reason": "general_decline",
                }
            else:
                refund["status"] = outcome
                objects.apply_refund(payment.obj, req.amount)
            self._new_record(self._refunds, shop_id, refund)
            logger.info(
                "refund %s of %s for payment %s: %s",
                refund["id"],
                refund["amount"]["value"],
                req.payment_id,
                outcome,
            )
            if outcome == "succeeded":
                self._emit(shop_id, "refund.succeeded", refund)
            self._save()
            return copy.deepcopy(refund)

    def settle_refund(self, refund_id: str, outcome: str) -> dict[str, Any]:
        """Finishes a pending refund. Only success is notified: YooKassa has no
        `refund.canceled` event, so a canceled refund is seen only by asking."""
        if outcome not in ("succeeded", "canceled"):
            raise ValueError(f"settle a refund as succeeded or canceled, not {outcome!r}")
        with self._lock:
            rec = self._refunds.get(refund_id)
            if rec is None:
                raise not_found("Refund not found or forbidden")
            if rec.obj["status"] != "pending":
                raise invalid("Refund is not pending", "refund_id")
            rec.obj["status"] = outcome
            if outcome == "succeeded":
                self._emit(rec.shop_id, "refund.succeeded", rec.obj)
            else:
                rec.obj["cancellation_details"] = {
                    "party": "refund_network",
                    "reason": "general_decline",
                }
                payment = self._payments[rec.obj["payment_id"]]
                amount = Money.from_json(rec.obj["amount"])
                objects.apply_refund(payment.obj, Money(-amount.value, amount.currency))
            self._save()
            return copy.deepcopy(rec.obj)

    def get_refund(self, shop_id: str, refund_id: str) -> dict[str, Any]:
        with self._lock:
            rec = self._refunds.get(refund_id)
            if rec is None or rec.shop_id != shop_id:
                raise not_found("Refund not found or forbidden")
            return copy.deepcopy(rec.obj)

    def list_refunds(self, shop_id: str, query: Mapping[str, str]) -> dict[str, Any]:
        q = parse_query(query, ("created_at",), ("status", "payment_id"))
        getters: dict[str, Callable[[dict[str, Any]], Any]] = {
            "status": lambda o: o["status"],
            "payment_id": lambda o: o["payment_id"],
        }
        with self._lock:
            records = [(r.seq, r.obj) for r in self._refunds.values() if r.shop_id == shop_id]
            return copy.deepcopy(list_page(records, q, getters))

    # ---- saved payment methods ----------------------------------------------------------

    def create_payment_method(self, shop_id: str, body: Any) -> dict[str, Any]:
        confirmation = parse_payment_method_request(require_object(body))
        with self._lock:
            self._tick()
            method_id = objects.new_id()
            url = f"{self.base_url}/checkout/payment-methods/{method_id}"
            obj: dict[str, Any] = {
                "id": method_id,
                "type": "bank_card",
                "saved": False,
                "status": "pending",
                "holder": {"account_id": shop_id},
                "confirmation": objects.confirmation_for(confirmation, method_id, url),
            }
            rec = self._new_record(self._methods, shop_id, obj)
            rec.extra["created_at"] = self.clock.now().isoformat()
            rec.extra["return_url"] = confirmation.get("return_url")
            self._save()
            return copy.deepcopy(obj)

    def get_payment_method(self, shop_id: str, method_id: str) -> dict[str, Any]:
        with self._lock:
            self._tick()
            rec = self._methods.get(method_id)
            if rec is None or rec.shop_id != shop_id:
                raise not_found("Payment method not found or forbidden")
            return copy.deepcopy(rec.obj)

    # ---- the member's checkout page -----------------------------------------------------

    def checkout_view(self, kind: str, object_id: str) -> dict[str, Any]:
        """What the page shows; raises CheckoutError (404) for an unknown id."""
        with self._lock:
            self._tick()
            rec = (self._payments if kind == "payment" else self._methods).get(object_id)
            if rec is None:
                raise CheckoutError("Платёж не найден / Payment not found", 404)
            obj = rec.obj
            return {
                "kind": kind,
                "id": object_id,
                "shop_id": rec.shop_id,
                "status": obj["status"],
                "amount": obj.get("amount"),
                "description": obj.get("description"),
                "return_url": rec.extra.get("return_url"),
                "pending": obj["status"] == "pending" and "confirmation" in obj,
                "challenge": "challenge" in rec.extra and obj["status"] == "pending",
            }

    def checkout_payment(
        self, payment_id: str, number: str, expiry_month: str, expiry_year: str, csc: str
    ) -> str | None:
        """Pays with a test card; returns where to send the member (the payment's return_url)."""
        with self._lock:
            self._tick()
            rec = self._payments.get(payment_id)
            if rec is None:
                raise CheckoutError("Платёж не найден / Payment not found", 404)
            obj = rec.obj
            if obj["status"] != "pending" or "confirmation" not in obj:
                raise CheckoutError(
                    "Платёж уже не ожидает оплаты / This payment is no longer awaiting payment", 409
                )
            if "challenge" in rec.extra:
                raise CheckoutError(
                    "Подтвердите платёж кодом из SMS / Confirm the payment with the code", 409
                )
            entered = parse_card(number, expiry_month, expiry_year, csc, self.clock.now())
            if self.three_ds_step and entered.card.three_d_secure:
                # The issuer's 3-D Secure page comes next; nothing is decided before it.
                rec.extra["challenge"] = {
                    "card": entered.as_json(),
                    "number": entered.card.number,
                    "masked": entered.masked,
                }
                self._save()
                logger.info("checkout of payment %s: 3-D Secure step", payment_id)
                return None
            return self._complete_checkout(rec, entered.card, entered.as_json(), entered.masked)

    def checkout_three_ds(self, payment_id: str, confirmed: bool) -> str | None:
        """The member answers the issuer's 3-D Secure page: confirms, or gives up. A 3-D Secure
        failure test card fails here whatever the member does."""
        with self._lock:
            self._tick()
            rec = self._payments.get(payment_id)
            if rec is None:
                raise CheckoutError("Платёж не найден / Payment not found", 404)
            challenge = rec.extra.get("challenge")
            if rec.obj["status"] != "pending" or challenge is None:
                raise CheckoutError(
                    "Платёж уже не ожидает подтверждения / "
                    "This payment is no longer awaiting confirmation",
                    409,
                )
            del rec.extra["challenge"]
            known = TEST_CARDS[challenge["number"]]
            if not confirmed:
                known = KnownCard(
                    known.number, known.network, True, "payment_network", "3d_secure_failed"
                )
            return self._complete_checkout(rec, known, challenge["card"], challenge["masked"])

    def _complete_checkout(
        self, rec: Record, known: KnownCard, card: dict[str, Any], masked: str
    ) -> str | None:
        with self._lock:
            obj = rec.obj
            payment_id = obj["id"]
            return_url: str | None = rec.extra.get("return_url")
            save = bool(rec.extra.get("save"))
            if known.declines:
                assert known.decline_party and known.decline_reason
                obj["payment_method"] = objects.bank_card_method(
                    payment_id, card, False, "inactive"
                )
                objects.mark_canceled(obj, known.decline_party, known.decline_reason)
            else:
                obj["payment_method"] = objects.bank_card_method(
                    payment_id, card, save, "active" if save else "inactive"
                )
                self._finish(rec, "succeeded", known.three_d_secure)
                if save:
                    method = objects.bank_card_method(payment_id, card, True, "active")
                    method["holder"] = {"account_id": rec.shop_id}
                    self._new_record(self._methods, rec.shop_id, method)
            logger.info(
                "checkout of payment %s with card %s: %s", payment_id, masked, obj["status"]
            )
            self._emit_payment(rec)
            self._save()
            return return_url

    def checkout_payment_method(
        self, method_id: str, number: str, expiry_month: str, expiry_year: str, csc: str
    ) -> str | None:
        with self._lock:
            self._tick()
            rec = self._methods.get(method_id)
            if rec is None:
                raise CheckoutError("Способ оплаты не найден / Payment method not found", 404)
            obj = rec.obj
            if obj["status"] != "pending" or "confirmation" not in obj:
                raise CheckoutError(
                    "Привязка карты уже завершена / This card binding is already finished", 409
                )
            entered = parse_card(number, expiry_month, expiry_year, csc, self.clock.now())
            return_url: str | None = rec.extra.get("return_url")
            objects.bind_card(obj, entered.as_json(), entered.card.declines)
            if obj["status"] == "active":
                self._emit(rec.shop_id, "payment_method.active", obj)
            logger.info("binding %s with card %s: %s", method_id, entered.masked, obj["status"])
            self._save()
            return return_url

    # ---- shop ---------------------------------------------------------------------------

    def me(self, shop_id: str) -> dict[str, Any]:
        return {
            "account_id": shop_id,
            "test": True,
            "status": "enabled",
            "fiscalization_enabled": False,
            "fiscalization": {"enabled": False},
            "payment_methods": ["bank_card"],
        }

    # ---- internals ----------------------------------------------------------------------

    def _new_record(self, table: dict[str, Record], shop_id: str, obj: dict[str, Any]) -> Record:
        self._seq += 1
        rec = Record(self._seq, shop_id, obj)
        table[obj["id"]] = rec
        return rec

    def _payment(self, shop_id: str, payment_id: str) -> Record:
        rec = self._payments.get(payment_id)
        if rec is None or rec.shop_id != shop_id:
            raise not_found("Payment not found or forbidden")
        return rec

    def _tick(self) -> None:
        """Applies the timers that are due on the emulator clock."""
        now = self.clock.now()
        changed = False
        for rec in self._payments.values():
            if objects.expire_if_due(rec.obj, now):
                self._emit_payment(rec)
                changed = True
        for rec in self._methods.values():
            created = rec.extra.get("created_at")
            if (
                rec.obj["status"] == "pending"
                and created is not None
                and parse_time(created, "created_at") + objects.CONFIRMATION_WINDOW <= now
            ):
                rec.obj["status"] = "inactive"
                rec.obj.pop("confirmation", None)
                changed = True
        if changed:
            self._save()

    def _emit_payment(self, rec: Record) -> None:
        event = _PAYMENT_EVENTS.get(rec.obj["status"])
        if event is not None:
            self._emit(rec.shop_id, event, rec.obj)

    def _emit(self, shop_id: str, event: str, obj: dict[str, Any]) -> None:
        url = self._notify_urls.get(shop_id)
        if url:
            self.notifier.enqueue(url, event, obj)

    def _save(self) -> None:
        if self.state_file is None:
            return
        write_atomically(
            self.state_file,
            {
                "version": STATE_VERSION,
                "seq": self._seq,
                "payments": [r.as_json() for r in self._payments.values()],
                "methods": [r.as_json() for r in self._methods.values()],
                "refunds": [r.as_json() for r in self._refunds.values()],
                "idempotency": self._idem.dump(),
                "outcomes": self._outcomes,
                "notification_urls": self._notify_urls,
            },
        )

    def _load(self, path: Path) -> None:
        data = read_state(path)
        self._seq = int(data.get("seq", 0))
        for name, table in (
            ("payments", self._payments),
            ("methods", self._methods),
            ("refunds", self._refunds),
        ):
            for row in data.get(name, []):
                rec = Record.from_json(row)
                table[rec.obj["id"]] = rec
        self._idem.load(data.get("idempotency", []))
        self._outcomes = {k: list(v) for k, v in data.get("outcomes", {}).items()}
        self._notify_urls = dict(data.get("notification_urls", {}))
        logger.info("loaded emulator state from %s: %d payments", path, len(self._payments))
