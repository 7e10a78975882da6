"""`POST /webhooks/yookassa`: check the sender, store the notification and answer fast; a worker
acts on it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from core.http import problem_responses
from webhooks.inbound.errors import NotificationTooLarge
from webhooks.inbound.service import InboxService


class Accepted(BaseModel):
    status: str
    duplicate: bool


async def read_body(request: Request, limit_bytes: int) -> bytes:
    """The body, read chunk by chunk and abandoned as soon as it passes the limit, so a huge
    body costs at most `limit_bytes` of memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit_bytes:
        raise NotificationTooLarge(f"the body is larger than {limit_bytes} bytes", field="body")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit_bytes:
            raise NotificationTooLarge(f"the body is larger than {limit_bytes} bytes", field="body")
    return bytes(body)


def build_router(*, inbox: InboxService) -> APIRouter:
    router = APIRouter(tags=["webhooks"])

    @router.post(
        "/webhooks/yookassa",
        responses=problem_responses(400, 403, 404, 413),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    async def yookassa_notification(request: Request) -> Accepted:
        """A YooKassa HTTP notification, accepted only from YooKassa's networks. It is a hint:
        the payment is re-read from YooKassa before anything changes."""
        # The sender is judged before a byte of the body is read.
        inbox.admit(
            request.client.host if request.client else None,
            request.headers.getlist("x-forwarded-for"),
        )
        body = await read_body(request, inbox.policy.max_body_bytes)
        received = await run_in_threadpool(inbox.receive, body)
        return Accepted(status="accepted", duplicate=received.inbox_id is None)

    return router
