"""HTTP face of the emulator: the YooKassa v3 subset, the checkout pages and the control API."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from payments.gateway.emulator.cards import FEATURED_CARDS
from payments.gateway.emulator.errors import (
    CODE_BY_STATUS,
    CheckoutError,
    EmulatorError,
    error_body,
    invalid,
)
from payments.gateway.emulator.faults import (
    Answer,
    DropConnection,
    Fault,
    Reply,
    ResetMidBody,
    apply_fault,
)
from payments.gateway.emulator.notifier import NotificationFault
from payments.gateway.emulator.state import EmulatorState
from payments.gateway.emulator.validation import check_idempotence_key

logger = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
CARD_FIELDS = ("card_number", "expiry_month", "expiry_year", "csc")


@dataclass(frozen=True)
class ApiCall:
    shop_id: str
    path_params: dict[str, str]
    query: dict[str, str]
    body: Any
    idempotence_key: str | None


Operation = Callable[[ApiCall], dict[str, Any]]
Endpoint = Callable[[Request], Awaitable[Response]]


class _DropReply(BaseException):
    """Raised through Starlette (which only catches Exception) to the outermost layer, which
    closes the connection without a response: the client sees a disconnect, not an HTTP error."""


class _ResetReply(BaseException):
    """Like `_DropReply`, after sending the head and half the body of `reply`."""

    def __init__(self, reply: Reply) -> None:
        super().__init__("reset mid-body")
        self.reply = reply


class EmulatorApp(Starlette):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except _DropReply:
            _cut(send)
        except _ResetReply as reset:
            body = json.dumps(reset.reply.body).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send(
                {"type": "http.response.start", "status": reset.reply.status, "headers": headers}
            )
            await send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
            _cut(send)


def _cut(send: Any) -> None:
    # uvicorn hands the app its request cycle's bound `send`; the cycle owns the connection.
    # Abort it (nothing more written) and mark it gone, so the server does not fall back to a
    # 500 of its own.
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if cycle is None or transport is None:
        raise RuntimeError("cannot drop a connection outside uvicorn") from None
    transport.abort()
    cycle.disconnected = True


def _json_error(exc: EmulatorError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.http_status)


def _shop_of(state: EmulatorState, request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    shop_id, sep, secret = decoded.partition(":")
    if not sep or not state.authenticate(shop_id, secret):
        return None
    return shop_id


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        # The SDK posts capture/cancel with an empty body and a JSON content type.
        return None
    if "json" not in request.headers.get("content-type", "").lower():
        raise EmulatorError(415, "unsupported_media_type", "Content-Type must be application/json")
    try:
        return json.loads(raw)
    except ValueError:
        raise invalid("Request body is not valid JSON") from None


def _api(state: EmulatorState, operation: Operation, *, mutating: bool) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        shop_id = _shop_of(state, request)
        if shop_id is None:
            return _json_error(
                EmulatorError(
                    401,
                    "invalid_credentials",
                    "Authentication by given credentials failed: check shopId and secret key",
                )
            )
        key: str | None = None
        body: Any = None
        try:
            if mutating:
                key = check_idempotence_key(request.headers.get("idempotence-key"))
                body = await _json_body(request)
        except EmulatorError as exc:
            return _json_error(exc)
        method, path = request.method, request.url.path
        call = ApiCall(shop_id, dict(request.path_params), dict(request.query_params), body, key)
        fault = state.take_fault(method, path)
        state.note_request(method, path, key, fault.kind if fault else None)
        if state.latency_seconds is not None:
            # Waiting without a thread: the emulator stays able to take many calls at once.
            await anyio.sleep(random.uniform(*state.latency_seconds))  # noqa: S311

        def process() -> Answer:
            try:
                if key is not None:
                    return state.idempotent(
                        shop_id, key, method, path, body, lambda: operation(call)
                    )
                return 200, operation(call)
            except EmulatorError as exc:
                return exc.http_status, exc.body()

        try:
            reply = await run_in_threadpool(apply_fault, fault, process)
        except DropConnection:
            raise _DropReply from None
        except ResetMidBody as reset:
            raise _ResetReply(reset.reply) from None
        except Exception:
            logger.exception("emulator failed on %s %s", method, path)
            reply = Reply(500, error_body("internal_server_error", "Emulator failure"), {})
        return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)

    return endpoint


def _api_routes(state: EmulatorState) -> list[Route]:
    s = state

    def pid(call: ApiCall) -> str:
        return call.path_params["id"]

    def read(op: Operation) -> Endpoint:
        return _api(s, op, mutating=False)

    def write(op: Operation) -> Endpoint:
        return _api(s, op, mutating=True)

    return [
        Route(
            "/v3/payments",
            write(lambda c: s.create_payment(c.shop_id, c.body, c.idempotence_key)),
            methods=["POST"],
        ),
        Route("/v3/payments", read(lambda c: s.list_payments(c.shop_id, c.query)), methods=["GET"]),
        Route(
            "/v3/payments/{id}", read(lambda c: s.get_payment(c.shop_id, pid(c))), methods=["GET"]
        ),
        Route(
            "/v3/payments/{id}/capture",
            write(lambda c: s.capture(c.shop_id, pid(c), c.body)),
            methods=["POST"],
        ),
        Route(
            "/v3/payments/{id}/cancel",
            write(lambda c: s.cancel(c.shop_id, pid(c))),
            methods=["POST"],
        ),
        Route("/v3/refunds", write(lambda c: s.create_refund(c.shop_id, c.body)), methods=["POST"]),
        Route("/v3/refunds", read(lambda c: s.list_refunds(c.shop_id, c.query)), methods=["GET"]),
        Route("/v3/refunds/{id}", read(lambda c: s.get_refund(c.shop_id, pid(c))), methods=["GET"]),
        Route(
            "/v3/payment_methods",
            write(lambda c: s.create_payment_method(c.shop_id, c.body)),
            methods=["POST"],
        ),
        Route(
            "/v3/payment_methods/{id}",
            read(lambda c: s.get_payment_method(c.shop_id, pid(c))),
            methods=["GET"],
        ),
        Route("/v3/me", read(lambda c: s.me(c.shop_id)), methods=["GET"]),
    ]


def _format_amount(amount: dict[str, str] | None) -> str | None:
    if not amount:
        return None
    sign = "₽" if amount["currency"] == "RUB" else amount["currency"]
    return f"{amount['value'].replace('.', ',')} {sign}"


def _checkout_routes(state: EmulatorState, templates: Jinja2Templates) -> list[Route]:
    def render(
        request: Request,
        view: dict[str, Any] | None,
        error: str | None,
        status: int,
        form: dict[str, str] | None = None,
    ) -> Response:
        name = "message.html"
        if view is not None and view.get("challenge"):
            name = "three_ds.html"
        elif view is not None and view["pending"]:
            name = "checkout.html"
        context = {
            "view": view,
            "error": error,
            "cards": FEATURED_CARDS,
            "amount": _format_amount(view["amount"]) if view else None,
            "form": form or {},
            "action": request.url.path,
        }
        return templates.TemplateResponse(request, name, context, status_code=status)

    def page(kind: str) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            object_id = request.path_params["id"]
            try:
                view = await run_in_threadpool(state.checkout_view, kind, object_id)
            except CheckoutError as exc:
                return render(request, None, exc.message, exc.http_status)
            if request.method == "GET":
                return render(request, view, None, 200)
            form = await request.form()
            values = {name: str(form.get(name) or "") for name in CARD_FIELDS}
            submit = state.checkout_payment if kind == "payment" else state.checkout_payment_method
            try:
                return_url = await run_in_threadpool(
                    submit,
                    object_id,
                    values["card_number"],
                    values["expiry_month"],
                    values["expiry_year"],
                    values["csc"],
                )
            except CheckoutError as exc:
                view = await run_in_threadpool(state.checkout_view, kind, object_id)
                # Never echo the card number or code back into the page.
                kept = {
                    "expiry_month": values["expiry_month"],
                    "expiry_year": values["expiry_year"],
                }
                return render(request, view, exc.message, exc.http_status, kept)
            if return_url:
                return RedirectResponse(return_url, status_code=303)
            view = await run_in_threadpool(state.checkout_view, kind, object_id)
            return render(request, view, None, 200)

        return endpoint

    async def three_ds(request: Request) -> Response:
        object_id = request.path_params["id"]
        form = await request.form()
        confirmed = str(form.get("action") or "confirm") == "confirm"
        try:
            return_url = await run_in_threadpool(state.checkout_three_ds, object_id, confirmed)
        except CheckoutError as exc:
            return render(request, None, exc.message, exc.http_status)
        if return_url:
            return RedirectResponse(return_url, status_code=303)
        view = await run_in_threadpool(state.checkout_view, "payment", object_id)
        return render(request, view, None, 200)

    return [
        Route("/checkout/payment-methods/{id}", page("payment_method"), methods=["GET", "POST"]),
        Route("/checkout/{id}/3ds", three_ds, methods=["POST"]),
        Route("/checkout/{id}", page("payment"), methods=["GET", "POST"]),
    ]


def _control_routes(state: EmulatorState) -> list[Route]:
    def control(handler: Callable[[Request, dict[str, Any]], Any]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                body = await _json_body(request) if request.method == "POST" else None
                payload = await run_in_threadpool(handler, request, body or {})
            except EmulatorError as exc:
                return _json_error(exc)
            except (ValueError, KeyError, TypeError) as exc:
                return JSONResponse(error_body("invalid_request", str(exc)), status_code=400)
            return JSONResponse(payload)

        return endpoint

    def oracle(request: Request, _: dict[str, Any]) -> Any:
        return {"items": state.payments(request.query_params.get("shop_id"))}

    def outcomes(request: Request, body: dict[str, Any]) -> Any:
        method_id = request.path_params["id"]
        scripted = [str(o) for o in body["outcomes"]]
        state.script_outcomes(method_id, scripted)
        return {"payment_method_id": method_id, "outcomes": scripted}

    def faults(request: Request, body: dict[str, Any]) -> Any:
        if request.method == "DELETE":
            state.clear_faults()
        elif request.method == "POST":
            state.inject_fault(Fault.from_json(body))
        return {"items": [f.as_json() for f in state.pending_faults()]}

    def saved_cards(_: Request, body: dict[str, Any]) -> Any:
        ids = [str(i) for i in body["ids"]]
        state.seed_saved_cards(
            str(body["shop_id"]), ids, str(body.get("number", "5555555555554444"))
        )
        return {"seeded": len(ids)}

    def notification_faults(request: Request, body: dict[str, Any]) -> Any:
        if request.method == "DELETE":
            state.notifier.clear_faults()
        elif request.method == "POST":
            state.script_notifications(NotificationFault.from_json(body))
        return {"items": [f.as_json() for f in state.notifier.pending_faults()]}

    def options(request: Request, body: dict[str, Any]) -> Any:
        value = body.get("three_ds_step")
        if value is not None and not isinstance(value, bool):
            raise ValueError("three_ds_step must be true or false")
        latency = body.get("latency_ms")
        if latency is not None:
            low, high = (float(v) for v in latency)
            return state.set_options(three_ds_step=value, latency_ms=(low, high))
        return state.set_options(three_ds_step=value)

    def journal(_: Request, __: dict[str, Any]) -> Any:
        return {
            "items": [dict(r, at=r["at"].isoformat()) for r in state.requests()],
        }

    def notification_url(_: Request, body: dict[str, Any]) -> Any:
        state.set_notification_url(str(body["shop_id"]), body.get("url"))
        return {"shop_id": body["shop_id"], "url": body.get("url")}

    def settle(request: Request, body: dict[str, Any]) -> Any:
        return state.settle_payment(request.path_params["id"], str(body["outcome"]))

    def advance_clock(_: Request, body: dict[str, Any]) -> Any:
        advance = getattr(state.clock, "advance", None)
        if advance is None:
            raise ValueError("the emulator runs on a real clock; start it with a ManualClock")
        return {"now": advance(timedelta(seconds=float(body["seconds"]))).isoformat()}

    def flush(_: Request, body: dict[str, Any]) -> Any:
        state.flush_notifications(float(body.get("timeout", 5.0)))
        return {"deliveries": [vars(r) for r in state.notifier.history()]}

    def reset(_: Request, __: dict[str, Any]) -> Any:
        state.reset()
        return {"ok": True}

    return [
        Route("/_emulator/payments", control(oracle), methods=["GET"]),
        Route("/_emulator/payment_methods/{id}/outcomes", control(outcomes), methods=["POST"]),
        Route("/_emulator/faults", control(faults), methods=["GET", "POST", "DELETE"]),
        Route("/_emulator/notification-url", control(notification_url), methods=["POST"]),
        Route(
            "/_emulator/notification-faults",
            control(notification_faults),
            methods=["GET", "POST", "DELETE"],
        ),
        Route("/_emulator/options", control(options), methods=["GET", "POST"]),
        Route("/_emulator/saved-cards", control(saved_cards), methods=["POST"]),
        Route("/_emulator/requests", control(journal), methods=["GET"]),
        Route("/_emulator/payments/{id}/settle", control(settle), methods=["POST"]),
        Route("/_emulator/clock/advance", control(advance_clock), methods=["POST"]),
        Route("/_emulator/notifications/flush", control(flush), methods=["POST"]),
        Route("/_emulator/reset", control(reset), methods=["POST"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    # Unknown routes answer in YooKassa's error shape: the SDK cannot parse an HTML/text body.
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = CODE_BY_STATUS.get(status, "internal_server_error")
    return JSONResponse(
        error_body(code, f"{request.method} {request.url.path}: {exc}"), status_code=status
    )


def create_emulator_app(state: EmulatorState) -> Starlette:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True)
    templates = Jinja2Templates(env=env)
    routes = _api_routes(state) + _checkout_routes(state, templates) + _control_routes(state)
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        404: _http_error,
        405: _http_error,
    }
    app = EmulatorApp(routes=routes, exception_handlers=handlers)
    app.state.emulator = state
    return app
