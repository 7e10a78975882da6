"""Webhooks benchmark: inbound YooKassa notifications and outbound CRM deliveries, each as a
ratio to a bare baseline measured side by side in the same run.

    python bench/webhooks_bench.py [--seconds 15] [--rate 500] [--concurrency 32] [--rounds 2]
                                   [--deliveries 2000] [--threads 8]

Inbound: `vznos serve` (uvicorn, one process, Redis broker) takes `POST /webhooks/yookassa`;
the baseline is a bare FastAPI endpoint doing one `INSERT … ON CONFLICT DO NOTHING` into a copy
of the inbox table, served by the same uvicorn settings on the same database. Each side gets a
closed loop of `--concurrency` keep-alive connections (sustained notifications/s) and an open
loop at a fixed `--rate` (latency measured from each request's scheduled time, so a server that
falls behind is charged for the queue it builds). Outbound: `OutboundDeliveries.deliver` for
`--deliveries` events on `--threads` threads to a local receiver, against bare `httpx` posting
the same bodies to it from as many threads. Writes its section of bench/RESULTS.md.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import Request
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the bulk loader is shared with the chaos test

SHOP_ID = "100500"
SECRET_KEY = "bench_secret"
PREFIX = "wh"
EVENTS = ("payment.succeeded", "payment.waiting_for_capture", "payment.canceled")
# A closed loop stops early when its notifications run out: sized for this many per second.
MAX_SUSTAINED_RATE = 2_500
START = "<!-- webhooks-bench:start -->"
END = "<!-- webhooks-bench:end -->"


# -- the servers (each runs as its own process: `webhooks_bench.py serve-… --port P`) ----------


def serve_baseline(port: int, database_url: str) -> None:
    """A bare FastAPI endpoint: read the body, parse it, one idempotent INSERT. Served exactly as
    `vznos serve` serves the API (uvicorn.run, one process, no proxy headers, no log config)."""
    import uvicorn
    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool

    from core.db import make_engine

    engine = make_engine(database_url)
    insert = text(
        "INSERT INTO bench_inbox (id, source, shop_id, event, object_id, payload, received_at,"
        " attempts) VALUES (:id, 'yookassa', :shop, :event, :object_id, CAST(:payload AS jsonb),"
        " now(), 0) ON CONFLICT (source, shop_id, event, object_id) DO NOTHING RETURNING id"
    )
    app = FastAPI()

    def store(body: bytes) -> bool:
        payload = json.loads(body)
        with engine.begin() as connection:
            stored = connection.execute(
                insert,
                {
                    "id": uuid.uuid4(),
                    "shop": SHOP_ID,
                    "event": payload["event"],
                    "object_id": payload["object"]["id"],
                    "payload": body.decode(),
                },
            ).scalar()
        return stored is not None

    @app.post("/ingest")
    async def ingest(request: Request) -> dict[str, object]:
        body = await request.body()
        stored = await run_in_threadpool(store, body)
        return {"status": "accepted", "duplicate": not stored}

    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, proxy_headers=False)


def serve_receiver(port: int) -> None:
    """The CRM: answers every POST with 204 after reading the body. Plain ASGI, so both the
    bench's sides are measured against the same, cheap receiver."""
    import uvicorn

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    uvicorn.run(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, proxy_headers=False
    )


# -- the load generator: raw HTTP/1.1 on asyncio streams, light enough to share two cores ------


def notification(n: int) -> bytes:
    """The n-th notification: three events for each seeded payment, ~1 KB like YooKassa's."""
    payment = str(uuid.UUID(bytes=_md5(f"{PREFIX}g{n // 3 + 1}")))
    event = EVENTS[n % 3]
    body = {
        "type": "notification",
        "event": event,
        "object": {
            "id": payment,
            "status": event.split(".", 1)[1],
            "amount": {"value": "350.00", "currency": "RUB"},
            "income_amount": {"value": "338.45", "currency": "RUB"},
            "description": "Членский взнос за декабрь 2026",
            "recipient": {"account_id": SHOP_ID, "gateway_id": "2233445"},
            "payment_method": {
                "type": "bank_card",
                "id": payment,
                "saved": True,
                "title": "Bank card *4444",
                "card": {
                    "first6": "555555",
                    "last4": "4444",
                    "expiry_month": "12",
                    "expiry_year": "2030",
                    "card_type": "MasterCard",
                    "issuer_country": "RU",
                },
            },
            "captured_at": "2026-12-05T06:00:02.512Z",
            "created_at": "2026-12-05T06:00:01.101Z",
            "test": False,
            "paid": True,
            "refundable": True,
            "refunded_amount": {"value": "0.00", "currency": "RUB"},
            "authorization_details": {
                "rrn": "603668680243",
                "auth_code": "000000",
                "three_d_secure": {"applied": False},
            },
            "metadata": {"cms_name": "vznos"},
        },
    }
    return json.dumps(body, ensure_ascii=False).encode()


def _md5(value: str) -> bytes:
    import hashlib

    return hashlib.md5(value.encode()).digest()


def raw_request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def exchange(connection: Connection, request: bytes) -> int:
    reader, writer = connection
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return int(head[9:12])


@dataclass
class Load:
    requests: int
    seconds: float
    statuses: Counter[int]
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def closed_loop(
    port: int, path: str, bodies: list[bytes], concurrency: int, seconds: float
) -> Load:
    """`concurrency` connections, each sending its next request as soon as the last answered."""
    loop = asyncio.get_running_loop()
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    cursor = iter(range(len(bodies)))
    deadline = loop.time() + seconds

    async def client() -> None:
        connection = await asyncio.open_connection("127.0.0.1", port)
        try:
            while loop.time() < deadline:
                n = next(cursor, None)
                if n is None:
                    return
                started = loop.time()
                statuses[await exchange(connection, raw_request(path, bodies[n]))] += 1
                latencies.append((loop.time() - started) * 1000)
        finally:
            connection[1].close()

    started = loop.time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Load(len(latencies), loop.time() - started, statuses, latencies)


async def open_loop(
    port: int,
    path: str,
    bodies: list[bytes],
    rate: float,
    seconds: float,
    max_connections: int = 256,
) -> Load:
    """Requests start on a fixed schedule whatever the server does; latency counts from the
    scheduled start, so waiting for a free connection is part of it (no coordinated omission)."""
    loop = asyncio.get_running_loop()
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    opened = 0

    async def one(n: int, due: float) -> None:
        nonlocal opened
        if idle.empty() and opened < max_connections:
            opened += 1
            connection = await asyncio.open_connection("127.0.0.1", port)
        else:
            connection = await idle.get()
        statuses[await exchange(connection, raw_request(path, bodies[n]))] += 1
        latencies.append((loop.time() - due) * 1000)
        idle.put_nowait(connection)

    count = min(len(bodies), int(rate * seconds))
    started = loop.time()
    tasks = []
    for n in range(count):
        due = started + n / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n, due)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - started
    while not idle.empty():
        idle.get_nowait()[1].close()
    return Load(count, elapsed, statuses, latencies)


# -- orchestration ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port}")


def vznos_command() -> list[str]:
    found = shutil.which("vznos", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "vznos.cli"]


def seed(url: str, keyring: Any, payments: int) -> None:
    """Members with saved cards and subscriptions (the chaos test's loader), one succeeded
    charge and attempt each with a gateway payment id: the notifications name these payments."""
    from core.clock import SystemClock
    from core.db import make_engine, make_sessions
    from members.schemas import OrganizationCreate
    from members.service import OrganizationService
    from tests.payments.billing_dataset import seed_subscriptions

    engine = make_engine(url)
    org = OrganizationService(make_sessions(engine), SystemClock()).create(
        OrganizationCreate(code="bench", name="Bench union", timezone="Europe/Moscow"), None
    )
    now = datetime.now(UTC)
    seed_subscriptions(
        engine, keyring=keyring, organization_id=org.id, shop_id=SHOP_ID, count=payments,
        start_period=date(2026, 12, 1), now=now, prefix=PREFIX,
    )  # fmt: skip
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO charges (id, subscription_id, member_id, organization_id,"
                " period_month, kind, status, amount_kopecks, currency, created_at)"
                " SELECT md5(:p || 'c' || n)::uuid, md5(:p || 's' || n)::uuid,"
                " md5(:p || 'm' || n)::uuid, :org, DATE '2026-12-01', 'recurring', 'succeeded',"
                " 35000, 'RUB', :now FROM generate_series(1, :count) AS n"
            ),
            {"p": PREFIX, "org": org.id, "now": now, "count": payments},
        )
        connection.execute(
            text(
                "INSERT INTO charge_attempts (id, charge_id, attempt_no, status, shop_id,"
                " request_body, gateway_payment_id, created_at, next_check_at, checks)"
                " SELECT md5(:p || 'a' || n)::uuid, md5(:p || 'c' || n)::uuid, 1, 'succeeded',"
                " :shop, '{}'::jsonb, md5(:p || 'g' || n)::uuid::text, :now, :now, 0"
                " FROM generate_series(1, :count) AS n"
            ),
            {"p": PREFIX, "shop": SHOP_ID, "now": now, "count": payments},
        )
        connection.execute(text("CREATE TABLE bench_inbox (LIKE webhook_inbox INCLUDING ALL)"))
        connection.execute(text("ANALYZE"))
    engine.dispose()


@dataclass
class InboundRound:
    vznos_max: Load
    baseline_max: Load
    vznos_fixed: Load
    baseline_fixed: Load


def inbound(args: argparse.Namespace, url: str, env: dict[str, str]) -> list[InboundRound]:
    vznos_port, baseline_port = free_port(), free_port()
    logs = Path(args.log_dir)
    procs = [
        subprocess.Popen(
            [*vznos_command(), "serve", "--port", str(vznos_port)], env=env,
            stdout=subprocess.DEVNULL, stderr=(logs / "webhooks-bench-vznos.log").open("wb"),
        ),
        subprocess.Popen(
            [sys.executable, __file__, "serve-baseline", "--port", str(baseline_port),
             "--database-url", url],
            env=env, stdout=subprocess.DEVNULL,
            stderr=(logs / "webhooks-bench-baseline.log").open("wb"),
        ),
    ]  # fmt: skip
    try:
        wait_for(vznos_port)
        wait_for(baseline_port)
        sustained_phase = int(MAX_SUSTAINED_RATE * args.seconds)
        fixed_phase = int(args.rate * args.seconds) + 1
        bodies = [notification(n) for n in range(args.payments * 3)]
        used = 0

        def take(count: int) -> list[bytes]:
            nonlocal used
            if used + count > len(bodies):
                raise RuntimeError("seed more payments (--payments): notifications ran out")
            used += count
            return bodies[used - count : used]

        def both(measure: Callable[[int, str, list[bytes]], Load], count: int) -> tuple[Load, Load]:
            # The same notifications to each side (each side has its own table).
            chunk = take(count)
            return (
                measure(vznos_port, "/webhooks/yookassa", chunk),
                measure(baseline_port, "/ingest", chunk),
            )

        warm = take(500)
        asyncio.run(closed_loop(vznos_port, "/webhooks/yookassa", warm, 8, 5))
        asyncio.run(closed_loop(baseline_port, "/ingest", warm, 8, 5))
        rounds = []
        for _ in range(args.rounds):
            vznos_max, baseline_max = both(
                lambda port, path, chunk: asyncio.run(
                    closed_loop(port, path, chunk, args.concurrency, args.seconds)
                ),
                sustained_phase,
            )
            vznos_fixed, baseline_fixed = both(
                lambda port, path, chunk: asyncio.run(
                    open_loop(port, path, chunk, args.rate, args.seconds)
                ),
                fixed_phase,
            )
            rounds.append(InboundRound(vznos_max, baseline_max, vznos_fixed, baseline_fixed))
            for name, load in rounds[-1].__dict__.items():
                print(
                    f"  {name}: {load.rate:.0f}/s p50 {load.percentile(0.5):.1f} ms"
                    f" p99 {load.percentile(0.99):.1f} ms {dict(load.statuses)}",
                    flush=True,
                )
        return rounds
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass
class OutboundRound:
    vznos_rate: float
    baseline_rate: float
    delivered: int


def outbound(args: argparse.Namespace, url: str, settings: Any) -> list[OutboundRound]:
    from core.db import transaction
    from core.outbox import EventType, emit
    from members.schemas import OrganizationCreate
    from vznos.broker import build_broker
    from vznos.container import GatewayConfig, build_container
    from webhooks.outbound.schemas import WebhookEndpointCreate
    from webhooks.outbound.sender import envelope
    from webhooks.outbound.states import DeliveryStatus

    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, __file__, "serve-receiver", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=(Path(args.log_dir) / "webhooks-bench-receiver.log").open("wb"),
    )
    container = build_container(
        settings.model_copy(update={"webhook_allow_private_targets": True}),
        database_url=url,
        gateway=GatewayConfig(SHOP_ID, SECRET_KEY, "http://127.0.0.1:9/v3"),
        broker=build_broker(None),
    )
    try:
        wait_for(port)
        container.organizations.create(
            OrganizationCreate(code="crm", name="CRM union", timezone="Europe/Moscow"), None
        )
        key = container.access.create_api_key("crm", "b", ["webhooks:manage"])[1]
        principal = container.access.authenticate(key)
        container.webhook_endpoints.create(
            principal,
            WebhookEndpointCreate.model_validate({"url": f"http://127.0.0.1:{port}/hooks"}),
        )
        local = threading.local()

        def bare(body: bytes) -> None:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(timeout=30)
            answer = client.post(
                f"http://127.0.0.1:{port}/hooks",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert answer.status_code == 204

        rounds = []
        delivered_before = 0
        for _ in range(args.rounds):
            with transaction(container.sessions) as session:
                for n in range(args.deliveries):
                    emit(
                        session,
                        type=EventType.PAYMENT_SUCCEEDED,
                        organization_id=principal.organization_id,
                        occurred_at=container.clock.now(),
                        payload={
                            "charge_id": str(uuid.uuid4()),
                            "member_external_id": f"m-{n}",
                            "period": "2026-12",
                            "amount": {"value": "350.00", "currency": "RUB"},
                            "status": "succeeded",
                        },
                    )
            assert container.outbound.relay(limit=args.deliveries) == args.deliveries
            with container.sessions() as session:
                pending = session.execute(
                    text(
                        "SELECT d.id, e.id AS event_id, e.type, e.occurred_at,"
                        " e.organization_id, e.payload FROM webhook_deliveries d"
                        " JOIN events e ON e.id = d.event_id WHERE d.status = 'pending'"
                    )
                ).all()
            bodies = [
                envelope(
                    event_id=str(row.event_id), event_type=row.type, occurred_at=row.occurred_at,
                    organization_id=str(row.organization_id), data=row.payload,
                ).encode()
                for row in pending
            ]  # fmt: skip
            started = time.perf_counter()
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(bare, bodies))
            baseline_rate = len(bodies) / (time.perf_counter() - started)
            started = time.perf_counter()
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(container.outbound.deliver, [row.id for row in pending]))
            vznos_rate = len(pending) / (time.perf_counter() - started)
            with container.sessions() as session:
                delivered = session.scalar(
                    text("SELECT count(*) FROM webhook_deliveries WHERE status = :s"),
                    {"s": DeliveryStatus.SUCCEEDED.value},
                )
            delivered = int(delivered or 0)
            rounds.append(OutboundRound(vznos_rate, baseline_rate, delivered - delivered_before))
            delivered_before = delivered
            print(
                f"  outbound: vznos {vznos_rate:.0f}/s, bare httpx {baseline_rate:.0f}/s",
                flush=True,
            )
        return rounds
    finally:
        container.close()
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(timeout=30)


def summary(values: list[float]) -> float:
    return statistics.median(values)


def report(
    args: argparse.Namespace,
    inbound_rounds: list[InboundRound],
    outbound_rounds: list[OutboundRound],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
        check=False,
    ).stdout.strip()  # fmt: skip
    max_ratio = summary([r.vznos_max.rate / r.baseline_max.rate for r in inbound_rounds])
    p99 = summary([r.vznos_fixed.percentile(0.99) for r in inbound_rounds])
    out_ratio = summary([r.vznos_rate / r.baseline_rate for r in outbound_rounds])

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    def errors(load: Load) -> str:
        bad = sum(n for status, n in load.statuses.items() if status >= 300)
        return f"{bad}" if bad else "0"

    lines = [
        START,
        "# Webhooks benchmark results",
        "",
        f"How to run: `python bench/webhooks_bench.py --seconds {args.seconds:g} --rate "
        f"{args.rate:g} --concurrency {args.concurrency} --rounds {args.rounds} --deliveries "
        f"{args.deliveries} --threads {args.threads}` (see `bench/README.md`).",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; Python "
        f"{platform.python_version()}; code: git {commit} (plus any uncommitted changes)",
        "- load average (1, 5, 15 min) before: "
        + ", ".join(f"{v:.2f}" for v in load_before)
        + "; after: "
        + ", ".join(f"{v:.2f}" for v in load_after)
        + " — the 2 cores are shared with other engineers' test runs: read ratios, not rates",
        "- servers: uvicorn, one process each, asyncio loop and h11 (no uvloop/httptools "
        "installed), log level WARNING; Redis broker for `vznos serve`; load generator: raw "
        "HTTP/1.1 on asyncio in the bench process (wrk is not installed)",
        "",
        "## Inbound: `POST /webhooks/yookassa` vs a bare FastAPI idempotent INSERT",
        "",
        "| round | side | sustained req/s | p50 ms | p99 ms | non-2xx | open loop req/s | "
        "p50 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in enumerate(inbound_rounds, 1):
        for side, top, fixed in (
            ("vznos", r.vznos_max, r.vznos_fixed),
            ("baseline", r.baseline_max, r.baseline_fixed),
        ):
            lines.append(
                f"| {n} | {side} | {top.rate:,.0f} | {top.percentile(0.5):.1f} | "
                f"{top.percentile(0.99):.1f} | {errors(top)} | {fixed.rate:,.0f} | "
                f"{fixed.percentile(0.5):.1f} | {fixed.percentile(0.99):.1f} | {errors(fixed)} |"
            )
    lines += [
        "",
        f"Sustained: closed loop of {args.concurrency} keep-alive connections for "
        f"{args.seconds:g} s. Open loop: {args.rate:g} requests/s scheduled for {args.seconds:g} "
        "s, latency from each request's scheduled start. Every notification is a new one (three "
        "events per seeded payment); both sides get the same bodies.",
        "",
        f"- **ratio (sustained, median of rounds): {max_ratio:.2f}** — aim ≥ 0.5: "
        f"{verdict(max_ratio >= 0.5)}",
        f"- **p99 at {args.rate:g} req/s (median of rounds): {p99:.1f} ms** — aim < 50 ms: "
        f"{verdict(p99 < 50)}",
        "",
        "## Outbound: deliveries to a local receiver vs bare httpx",
        "",
        "| round | delivered (succeeded) | Vznos deliveries/s | bare httpx posts/s | ratio |",
        "|---|---|---|---|---|",
    ]
    for n, o in enumerate(outbound_rounds, 1):
        lines.append(
            f"| {n} | {o.delivered:,} | {o.vznos_rate:,.0f} | {o.baseline_rate:,.0f} | "
            f"{o.vznos_rate / o.baseline_rate:.2f} |"
        )
    lines += [
        "",
        f"Vznos: `OutboundDeliveries.deliver` (claim the delivery, sign, POST through the SSRF "
        f"guard, record the attempt) on {args.threads} threads, like a worker's threads without "
        f"the broker. Bare: one keep-alive `httpx.Client` per thread posting the same envelopes. "
        f"Ratio (median): **{out_ratio:.2f}** (report only; the issue sets no aim).",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if START in current and END in current:
        before, _, rest = current.partition(START)
        _, _, after = rest.partition(END)
        current = before + section.rstrip("\n") + after
    else:
        current = current.rstrip("\n") + "\n\n" + section
    path.write_text(current, encoding="utf-8")


def main(argv: list[str]) -> None:
    if argv[:1] == ["serve-baseline"]:
        serve_baseline(int(argv[argv.index("--port") + 1]), argv[argv.index("--database-url") + 1])
        return
    if argv[:1] == ["serve-receiver"]:
        serve_receiver(int(argv[argv.index("--port") + 1]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--payments", type=int, help="seeded payments (default: enough)")
    parser.add_argument("--deliveries", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("VZNOS_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
    )
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "RESULTS.md")
    parser.add_argument("--log-dir", default="/tmp", help="the servers' stderr")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    args = parser.parse_args(argv)
    # Each round uses 4 phases of fresh notifications; three per payment.
    args.payments = args.payments or int(
        args.rounds * (MAX_SUSTAINED_RATE + args.rate + 1) * args.seconds / 3 + 500
    )

    from core.crypto import MasterKey, generate_index_key
    from core.settings import Settings
    from vznos.keys import build_keyring
    from vznos.migrate import upgrade

    load_before = os.getloadavg()
    server = make_url(args.database_url)
    name = f"vznos_bench_webhooks_{os.getpid()}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        master_key, index_key = MasterKey.generate("bench").export(), generate_index_key()
        settings = Settings(
            broker_url=None, database_url=None, master_key=master_key, blind_index_key=index_key
        )
        upgrade(url)
        started = time.perf_counter()
        seed(url, build_keyring(settings), args.payments)
        print(f"seeded {args.payments:,} payments in {time.perf_counter() - started:.0f} s")
        env = dict(
            os.environ,
            VZNOS_DATABASE_URL=url,
            VZNOS_BROKER_URL=args.broker_url,
            VZNOS_YOOKASSA_SHOP_ID=SHOP_ID,
            VZNOS_YOOKASSA_SECRET_KEY=SECRET_KEY,
            VZNOS_YOOKASSA_API_URL="http://127.0.0.1:9/v3",
            VZNOS_LOG_LEVEL="WARNING",
            VZNOS_MASTER_KEY=master_key,
            VZNOS_BLIND_INDEX_KEY=index_key,
            # The load comes from loopback: it joins YooKassa's networks, so the check still runs.
            VZNOS_YOOKASSA_NOTIFICATION_NETWORKS="77.75.153.0/25,77.75.156.11/32,"
            "77.75.156.35/32,77.75.154.128/25,185.71.76.0/27,185.71.77.0/27,"
            "2a02:5180::/32,127.0.0.1/32",
        )
        import redis

        redis.Redis.from_url(args.broker_url).flushdb()
        inbound_rounds = inbound(args, url, env)
        outbound_rounds = outbound(args, url, settings)
        redis.Redis.from_url(args.broker_url).flushdb()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    section = report(args, inbound_rounds, outbound_rounds, load_before, os.getloadavg())
    print(section)
    if not args.no_write:
        write_section(args.results, section)


if __name__ == "__main__":
    main(sys.argv[1:])
