"""Billing benchmark: a monthly billing run of N subscriptions against the YooKassa emulator over
loopback with realistic latency, charged by 2 real worker processes (`vznos worker`) on Redis.

    python bench/billing_bench.py [--count 100000] [--small-count N/10] [--latency-ms 30,80]
                                  [--workers 2] [--threads 8] [--broker-url redis://…/12]

Reports charges per second, the ratio to the emulator's own throughput measured in the same run
at the same concurrency (our overhead), the peak memory of the worker processes at two sizes
(it must stay flat as the count grows), and the time until every charge is terminal. Asserts
correctness: every charge succeeded, one attempt each, one ledger entry each. Writes its section
of bench/RESULTS.md. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the bulk loader is shared with the chaos test

from core.crypto import MasterKey, generate_index_key  # noqa: E402
from core.settings import Settings  # noqa: E402
from members.schemas import OrganizationCreate  # noqa: E402
from tests.payments.billing_dataset import card_tokens, seed_subscriptions  # noqa: E402
from vznos.broker import build_broker  # noqa: E402
from vznos.container import GatewayConfig, build_container  # noqa: E402
from vznos.migrate import upgrade  # noqa: E402

SHOP_ID = "100500"
SECRET_KEY = "bench_secret"
START = "<!-- billing-bench:start -->"
END = "<!-- billing-bench:end -->"


@dataclass(frozen=True)
class Result:
    count: int
    billing_seconds: float
    terminal_seconds: float
    charges_per_second: float
    emulator_per_second: float
    peak_worker_rss_mb: float
    peak_bench_rss_mb: float

    @property
    def ratio(self) -> float:
        return self.charges_per_second / self.emulator_per_second


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def vznos_command() -> list[str]:
    found = shutil.which("vznos", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "vznos.cli"]


def wait_for(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def emulator_throughput(base: str, requests: int, concurrency: int) -> float:
    """The emulator alone: autopayments at the workers' concurrency, nothing of ours around."""
    tokens = [str(uuid.uuid4()) for _ in range(min(requests, 2_000))]
    httpx.post(
        f"{base}/_emulator/saved-cards", json={"shop_id": SHOP_ID, "ids": tokens}
    ).raise_for_status()
    local = threading.local()

    def one(n: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(
                base_url=base, auth=(SHOP_ID, SECRET_KEY), timeout=30
            )
        body = {
            "amount": {"value": "350.00", "currency": "RUB"},
            "capture": True,
            "payment_method_id": tokens[n % len(tokens)],
            "description": "bench",
        }
        answer = client.post(
            "/v3/payments", json=body, headers={"Idempotence-Key": str(uuid.uuid4())}
        )
        answer.raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    return requests / (time.perf_counter() - started)


class RssSampler(threading.Thread):
    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak_worker = 0
        self.peak_self = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            for pid in self.pids:
                self.peak_worker = max(self.peak_worker, rss_bytes(pid))
            self.peak_self = max(self.peak_self, rss_bytes(os.getpid()))


def rss_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run_once(args: argparse.Namespace, count: int) -> Result:
    server = make_url(args.database_url)
    name = f"vznos_bench_billing_{os.getpid()}_{count}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        upgrade(url)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        procs.append(
            subprocess.Popen(
                [*vznos_command(), "emulator", "--port", str(port), "--shop-id", SHOP_ID,
                 "--secret-key", SECRET_KEY],
                stdout=subprocess.DEVNULL,
                stderr=(Path(args.log_dir) / f"emulator-{count}.log").open("wb"),
            )
        )  # fmt: skip
        wait_for(f"{base}/_emulator/options", seconds=120)
        low, high = (float(v) for v in args.latency_ms.split(","))
        httpx.post(f"{base}/_emulator/options", json={"latency_ms": [low, high]}).raise_for_status()
        concurrency = args.workers * args.threads
        emulator_rate = emulator_throughput(base, min(args.baseline_requests, count), concurrency)

        # A key pair for this run, shared with the worker processes through the environment.
        master_key, index_key = MasterKey.generate("bench").export(), generate_index_key()
        settings = Settings(
            broker_url=args.broker_url,
            database_url=None,
            # The run measures charging, not the pre-charge notice: every charge is due at once.
            precharge_notice_days=0,
            master_key=master_key,
            blind_index_key=index_key,
        )
        broker = build_broker(args.broker_url)
        container = build_container(
            settings, database_url=url, gateway=GatewayConfig(SHOP_ID, SECRET_KEY, f"{base}/v3"),
            broker=broker,
        )  # fmt: skip
        broker.flush_all()
        org = container.organizations.create(
            OrganizationCreate(code="bench", name="Bench union", timezone="Europe/Moscow"), None
        )
        now = datetime.now(UTC)
        period = date(now.year + now.month // 12, now.month % 12 + 1, 1)
        prefix = f"b{count}"
        tokens = card_tokens(prefix, count)
        for first in range(0, count, 10_000):
            httpx.post(
                f"{base}/_emulator/saved-cards",
                json={"shop_id": SHOP_ID, "ids": tokens[first : first + 10_000]},
                timeout=60,
            ).raise_for_status()
        seed_subscriptions(
            container.engine, keyring=container.keyring, organization_id=org.id,
            shop_id=SHOP_ID, count=count, start_period=period, now=now, prefix=prefix,
        )  # fmt: skip
        with container.engine.begin() as connection:
            connection.execute(text("ANALYZE"))

        env = dict(
            os.environ,
            VZNOS_DATABASE_URL=url,
            VZNOS_BROKER_URL=args.broker_url,
            VZNOS_YOOKASSA_SHOP_ID=SHOP_ID,
            VZNOS_YOOKASSA_SECRET_KEY=SECRET_KEY,
            VZNOS_YOOKASSA_API_URL=f"{base}/v3",
            VZNOS_LOG_LEVEL="WARNING",
            VZNOS_MASTER_KEY=master_key,
            VZNOS_BLIND_INDEX_KEY=index_key,
        )
        workers = [
            subprocess.Popen(
                [*vznos_command(), "worker", "--threads", str(args.threads)],
                env=env, stdout=subprocess.DEVNULL,
                stderr=(Path(args.log_dir) / f"worker-{count}-{n}.log").open("wb"),
            )
            for n in range(args.workers)
        ]  # fmt: skip
        procs += workers
        sampler = RssSampler([w.pid for w in workers])
        sampler.start()
        time.sleep(args.worker_boot_seconds)

        started = time.perf_counter()
        created = container.billing.run(period).charges_created
        billing_seconds = time.perf_counter() - started
        assert created == count, created
        while True:
            with container.engine.connect() as connection:
                done = connection.scalar(
                    text(
                        "SELECT count(*) FROM charge_attempts "
                        "WHERE status IN ('succeeded', 'canceled')"
                    )
                )
            if done == count:
                break
            time.sleep(0.5)
        terminal_seconds = time.perf_counter() - started
        sampler.stop.set()
        with container.engine.connect() as connection:
            succeeded, attempts, entries = connection.execute(
                text(
                    "SELECT (SELECT count(*) FROM charges WHERE status = 'succeeded'),"
                    " (SELECT count(*) FROM charge_attempts),"
                    " (SELECT count(*) FROM ledger_entries WHERE kind = 'payment')"
                )
            ).one()
        assert (succeeded, attempts, entries) == (count, count, count), (
            succeeded,
            attempts,
            entries,
        )
        container.close()
        return Result(
            count=count,
            billing_seconds=billing_seconds,
            terminal_seconds=terminal_seconds,
            charges_per_second=count / terminal_seconds,
            emulator_per_second=emulator_rate,
            peak_worker_rss_mb=sampler.peak_worker / 2**20,
            peak_bench_rss_mb=sampler.peak_self / 2**20,
        )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def report(args: argparse.Namespace, results: list[Result]) -> str:
    small, large = results[0], results[-1]
    growth = large.peak_worker_rss_mb / small.peak_worker_rss_mb
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    lines = [
        START,
        "# Billing benchmark results",
        "",
        "How to run: `python bench/billing_bench.py "
        f"--count {large.count} --small-count {small.count}` (see `bench/README.md`).",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; "
        f"Python {platform.python_version()}; code: git {commit}",
        f"- emulator latency {args.latency_ms} ms per request; {args.workers} worker processes × "
        f"{args.threads} threads on {make_url(args.broker_url).drivername}; the machine was shared "
        f"(load average {os.getloadavg()[0]:.1f} at the end)",
        "",
        "| subscriptions | billing run s | until all terminal s | charges/s | emulator alone/s "
        "| ratio | peak worker RSS MB | peak bench RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.count:,} | {r.billing_seconds:.1f} | {r.terminal_seconds:.1f} | "
            f"{r.charges_per_second:.0f} | {r.emulator_per_second:.0f} | {r.ratio:.2f} | "
            f"{r.peak_worker_rss_mb:.0f} | {r.peak_bench_rss_mb:.0f} |"
        )
    lines += [
        "",
        "ratio = our charges/s ÷ the emulator's own autopayments/s at the same concurrency, both "
        "measured in this run. Every charge succeeded with one attempt and one ledger entry "
        f"(asserted). Worker memory grew ×{growth:.2f} from {small.count:,} to {large.count:,} "
        f"subscriptions ({'flat' if growth < 1.25 else 'NOT flat'}).",
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--small-count", type=int, help="the second size for memory (N/10)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("VZNOS_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
    )
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--latency-ms", default="30,80")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--baseline-requests", type=int, default=2_000)
    parser.add_argument("--worker-boot-seconds", type=float, default=5.0)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "RESULTS.md")
    parser.add_argument("--log-dir", default="/tmp", help="the emulator's and workers' stderr")
    args = parser.parse_args(argv)
    random.seed(0)
    results = []
    for count in (args.small_count or max(1, args.count // 10), args.count):
        result = run_once(args, count)
        print(result, flush=True)
        results.append(result)
    section = report(args, results)
    print(section)
    write_section(args.results, section)


if __name__ == "__main__":
    main(sys.argv[1:])
