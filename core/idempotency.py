"""Idempotency for the API's creates: the CRM may send every POST again with the same
`Idempotency-Key` and get the first answer back instead of a second effect.

One row per (principal, key) holds a hash of the request and, once the operation answered,
its response. The row is claimed (inserted) before the operation runs, so of concurrent
requests with one key exactly one executes; the others see the claim and get 409, or the
stored response once it is there. Only a 2xx answer is stored: every refusal of this API
changes nothing (services raise before they commit), so after a 4xx or a 5xx the claim is
released and the same key may be sent again, corrected or not. A claim whose process died is
taken over after `lock_timeout`. Rows expire after `retention` and the scheduler sweeps them.

The HTTP side is here too: a FastAPI dependency factory (`IdempotencyGuard.dependency`) that
every POST of the API gets, and an ASGI middleware (`IdempotencyRecorder`) that stores the
response of a claimed request before it leaves.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    Index,
    LargeBinary,
    SmallInteger,
    String,
    delete,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.clock import Clock
from core.crypto import SEALED_SCHEME, CryptoError, KeyRing, column_aad
from core.db import Base, transaction
from core.errors import Conflict, DomainError, InvalidInput

log = structlog.get_logger("idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_MIN_LENGTH = 20
KEY_MAX_LENGTH = 200
# Visible ASCII: what an HTTP header carries safely and a CRM generates (UUIDs, ULIDs, hashes);
# at most 200, the length a refund keeps its key in.
KEY_PATTERN = r"^[!-~]{20,200}$"
_KEY_RE = re.compile(KEY_PATTERN)
# Response headers worth replaying; the rest (date, length, rate-limit counters) are per answer.
REPLAYED_HEADERS = frozenset({"content-type", "location", "content-disposition"})
# A route that moves money passes this as `openapi_extra`: there a missing key is a 400.
MOVES_MONEY: dict[str, Any] = {"x-idempotency-key-required": True}
# Where the request's claim and raw body travel from the dependency to the middleware.
CLAIM_STATE = "idempotency_claim"
BODY_STATE = "request_body"


class IdempotencyKeyMissing(DomainError):
    status = 400
    type_slug = "idempotency-key-missing"
    title = "Idempotency-Key required"


class IdempotencyKeyInvalid(DomainError):
    status = 400
    type_slug = "idempotency-key-invalid"
    title = "Invalid Idempotency-Key"


class IdempotencyKeyReused(InvalidInput):
    type_slug = "idempotency-key-reused"
    title = "Idempotency-Key reused with another request"


class IdempotentAnswerUnreadable(Conflict):
    type_slug = "idempotent-answer-unreadable"
    title = "The first answer under this Idempotency-Key can no longer be read"


class IdempotencyKeyInUse(Conflict):
    type_slug = "idempotency-key-in-use"
    title = "A request with this Idempotency-Key is in progress"


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)

    # The API key (or other principal) the key belongs to: keys of two callers never meet.
    principal_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY_MAX_LENGTH), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(2048))
    # Set while a request holds the key; a new token on every claim or takeover.
    lock_token: Mapped[uuid.UUID | None]
    locked_at: Mapped[datetime | None]
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


@dataclass(frozen=True)
class Claim:
    """This request holds the key and runs the operation."""

    principal_id: uuid.UUID
    key: str
    token: uuid.UUID


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def request_fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """A hash of what the request asks for. A JSON body is canonicalised first, so the same
    object sent with other spacing or key order is the same request."""
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except ValueError:
        canonical = body
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


_SEALED_PREFIX = (SEALED_SCHEME + ".").encode()


def _answer_aad(principal_id: uuid.UUID, key: str) -> str:
    return column_aad("idempotency_keys", "response_body", f"{principal_id}:{key}")


class IdempotencyStore:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        *,
        retention: timedelta,
        lock_timeout: timedelta,
        keyring: KeyRing | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        # Stored answers are sealed: one may carry a secret shown once (an API key, a
        # `whsec_` webhook secret) or a member's data, which must not sit in plaintext here.
        self._keyring = keyring
        self.retention = retention
        self.lock_timeout = lock_timeout

    def begin(
        self, principal_id: uuid.UUID, key: str, *, request_hash: str, method: str, path: str
    ) -> Claim | StoredResponse:
        """Claim the key for this request, or answer with what the first request got.
        Raises IdempotencyKeyReused (another request under this key) and IdempotencyKeyInUse
        (the first request is still running)."""
        now = self._clock.now()
        token = uuid.uuid4()
        with transaction(self._sessions) as session:
            inserted = session.execute(
                insert(IdempotencyKey)
                .values(
                    principal_id=principal_id,
                    key=key,
                    request_hash=request_hash,
                    method=method,
                    path=path,
                    lock_token=token,
                    locked_at=now,
                    created_at=now,
                    expires_at=now + self.retention,
                )
                # A concurrent insert of the same key waits here for the first to commit.
                .on_conflict_do_nothing()
                .returning(IdempotencyKey.key)
            ).first()
            if inserted is not None:
                return Claim(principal_id, key, token)
            row = session.scalars(
                select(IdempotencyKey)
                .where(IdempotencyKey.principal_id == principal_id, IdempotencyKey.key == key)
                .with_for_update()
            ).one_or_none()
            if row is None:
                # Released (or swept) between our insert and our read: the caller may retry.
                raise IdempotencyKeyInUse(
                    "a request with this Idempotency-Key just finished; send it again",
                    field=HEADER,
                    headers={"Retry-After": "1"},
                )
            if row.expires_at <= now:
                # Past retention the key is new again, whatever it was used for.
                _reclaim(row, token, now, request_hash, method, path, self.retention)
                return Claim(principal_id, key, token)
            if row.request_hash != request_hash:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was used with another request (method, path or body); "
                    "use a new key for a new request",
                    field=HEADER,
                )
            if row.response_status is not None:
                return StoredResponse(
                    row.response_status,
                    dict(row.response_headers or {}),
                    self._opened(principal_id, key, row.response_body or b""),
                )
            if row.locked_at is not None and row.locked_at > now - self.lock_timeout:
                raise IdempotencyKeyInUse(
                    "the first request with this Idempotency-Key is still in progress; "
                    "retry shortly to get its answer",
                    field=HEADER,
                    headers={"Retry-After": "1"},
                )
            # The holder died without answering: this request runs the operation instead.
            log.warning("idempotency.lock_taken_over", principal_id=str(principal_id))
            row.lock_token = token
            row.locked_at = now
            return Claim(principal_id, key, token)

    def complete(self, claim: Claim, response: StoredResponse) -> None:
        """Store the answer, so every later request with the key gets it."""
        with transaction(self._sessions) as session:
            session.execute(
                update(IdempotencyKey)
                .where(*_held(claim))
                .values(
                    response_status=response.status,
                    response_headers=response.headers,
                    response_body=self._sealed(claim.principal_id, claim.key, response.body),
                    lock_token=None,
                    locked_at=None,
                )
            )

    def _sealed(self, principal_id: uuid.UUID, key: str, body: bytes) -> bytes:
        if self._keyring is None:
            return body
        return self._keyring.seal_bytes(body, _answer_aad(principal_id, key)).encode()

    def _opened(self, principal_id: uuid.UUID, key: str, stored: bytes) -> bytes:
        if self._keyring is None or not stored.startswith(_SEALED_PREFIX):
            return stored  # stored before answers were sealed, or an empty body
        try:
            return self._keyring.open_bytes(stored.decode(), _answer_aad(principal_id, key))
        except CryptoError as exc:
            # Its master key was removed within the retention: the operation ran, so it is
            # never run again; the caller reads the object instead.
            log.warning("idempotency.answer_unreadable", principal_id=str(principal_id))
            raise IdempotentAnswerUnreadable(
                "the request with this Idempotency-Key was done, but its stored answer can no "
                "longer be read (master key retired); read the object instead",
                field=HEADER,
            ) from exc

    def release(self, claim: Claim) -> None:
        """Forget the claim: the operation refused or failed and changed nothing."""
        with transaction(self._sessions) as session:
            session.execute(delete(IdempotencyKey).where(*_held(claim)))

    def sweep(self, limit: int = 5000) -> int:
        """Delete expired keys, oldest first, a batch at a time. Returns how many went."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            expired = (
                select(IdempotencyKey.principal_id, IdempotencyKey.key)
                .where(IdempotencyKey.expires_at <= now)
                .order_by(IdempotencyKey.expires_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            result = session.execute(
                delete(IdempotencyKey).where(
                    tuple_(IdempotencyKey.principal_id, IdempotencyKey.key).in_(expired)
                )
            )
            deleted = int(getattr(result, "rowcount", 0) or 0)
        if deleted:
            log.info("idempotency.swept", deleted=deleted)
        return deleted


def _held(claim: Claim) -> tuple[Any, ...]:
    return (
        IdempotencyKey.principal_id == claim.principal_id,
        IdempotencyKey.key == claim.key,
        IdempotencyKey.lock_token == claim.token,
    )


def _reclaim(
    row: IdempotencyKey,
    token: uuid.UUID,
    now: datetime,
    request_hash: str,
    method: str,
    path: str,
    retention: timedelta,
) -> None:
    row.request_hash = request_hash
    row.method = method
    row.path = path
    row.lock_token = token
    row.locked_at = now
    row.response_status = None
    row.response_headers = None
    row.response_body = None
    row.created_at = now
    row.expires_at = now + retention


# -- HTTP ------------------------------------------------------------------------------------


class IdempotentReplay(Exception):
    """Raised by the dependency to answer with the stored response instead of running."""

    def __init__(self, response: StoredResponse) -> None:
        super().__init__("replay")
        self.response = response


def replay_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IdempotentReplay)
    stored = exc.response
    return Response(
        stored.body,
        status_code=stored.status,
        headers={**stored.headers, REPLAYED_HEADER: "true"},
    )


def header_parameter(*, required: bool, retention_hours: float) -> dict[str, Any]:
    """The OpenAPI description of the header, for operations that take it."""
    need = (
        "Required: this operation moves money, and a retry without a key could move it twice."
        if required
        else "Optional but recommended: without it a retried request runs again."
    )
    return {
        "name": HEADER,
        "in": "header",
        "required": required,
        "description": (
            f"A unique key per intended operation (a UUID is fine), {KEY_MIN_LENGTH}–"
            f"{KEY_MAX_LENGTH} visible ASCII characters. Sending the request again with the same "
            "key and body returns the first 2xx answer with `Idempotent-Replayed: true` instead "
            "of acting twice; the same key with another body is a 422; while the first request "
            f"runs, 409. Keys belong to the API key that sent them and are kept "
            f"{retention_hours:g} hours. {need}"
        ),
        "schema": {
            "type": "string",
            "minLength": KEY_MIN_LENGTH,
            "maxLength": KEY_MAX_LENGTH,
            "pattern": KEY_PATTERN,
        },
        "example": "4c1f7c0e-8d2a-4f57-9a8e-2f0f8a1f3b9d",
    }


class IdempotencyGuard:
    """Builds the dependency a POST route gets. `identity` names whose keys these are (the
    API key id of the principal)."""

    def __init__(self, store: IdempotencyStore, identity: Callable[[Any], uuid.UUID]) -> None:
        self.store = store
        self._identity = identity

    async def check(self, request: Request, caller: Any, *, required: bool) -> None:
        key = request.headers.get(HEADER)
        if key is None:
            if required:
                raise IdempotencyKeyMissing(
                    f"this operation needs an {HEADER} header: a unique key per operation, "
                    "sent again unchanged on every retry",
                    field=HEADER,
                )
            return
        if not _KEY_RE.match(key):
            raise IdempotencyKeyInvalid(
                f"{HEADER} must be {KEY_MIN_LENGTH}–{KEY_MAX_LENGTH} visible ASCII characters",
                field=HEADER,
            )
        body = request.scope.get("state", {}).get(BODY_STATE)
        if body is None:
            body = await request.body()
        path = request.url.path
        fingerprint = request_fingerprint(request.method, path, request.url.query, body)
        outcome = await run_in_threadpool(
            self.store.begin,
            self._identity(caller),
            key,
            request_hash=fingerprint,
            method=request.method,
            path=path,
        )
        if isinstance(outcome, StoredResponse):
            log.info("idempotency.replayed", path=path, status=outcome.status)
            raise IdempotentReplay(outcome)
        request.state.idempotency_claim = outcome


class IdempotencyRecorder:
    """ASGI middleware: the response of a request that claimed a key is stored (2xx) or the
    claim released (anything else) before the response leaves."""

    def __init__(self, app: ASGIApp, store: IdempotencyStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        start: Message | None = None
        chunks: list[bytes] = []
        settled = False

        async def settle(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
            nonlocal settled
            claim = state.pop(CLAIM_STATE, None)
            settled = True
            if not isinstance(claim, Claim):
                return
            try:
                if 200 <= status < 300:
                    kept = {
                        name.decode("latin-1").lower(): value.decode("latin-1")
                        for name, value in headers
                        if name.decode("latin-1").lower() in REPLAYED_HEADERS
                    }
                    await run_in_threadpool(
                        self.store.complete, claim, StoredResponse(status, kept, body)
                    )
                else:
                    await run_in_threadpool(self.store.release, claim)
            except Exception:
                # The answer still goes out; the claim expires by the lock timeout.
                log.exception("idempotency.record_failed", status=status)

        async def capture(message: Message) -> None:
            nonlocal start
            if settled or CLAIM_STATE not in state:
                await send(message)
                return
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                assert start is not None
                body = b"".join(chunks)
                await settle(start["status"], list(start.get("headers", [])), body)
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            if not settled:
                await settle(500, [], b"")
            raise
        if not settled and CLAIM_STATE in state:
            await settle(500, [], b"")
