"""Ledger benchmark: posting throughput against a plain-psycopg baseline, the monthly accrual,
the arrears list and a ten-year member statement, on a fresh database of N members.

    python bench/ledger_bench.py [--members N] [--database-url URL]
                                 [--only posting|accrual|arrears|statement] [--keep]

Prints a table and writes it, with the machine's facts, to bench/RESULTS.md. See bench/README.md
for what each row measures and how to read the ratios.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import platform
import pstats
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from unittest.mock import patch

import ledger_dataset as dataset

# Run as a script from anywhere: the project's packages come from the repository root (the
# editable install in the venv may predate some of them, e.g. migrations/).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from core.clock import ManualClock
from core.db import make_engine, make_sessions, transaction
from core.periods import next_period, period_start
from core.settings import normalize_database_url
from ledger.batch import Accrual, accrual_draft, post_accruals
from ledger.journal import post_entry
from ledger.reads import LedgerReads
from members.dues import service as dues_service
from members.dues.service import DuesService
from vznos.migrate import upgrade

BENCH_DIR = Path(__file__).resolve().parent
SCENARIOS = ("posting", "accrual", "arrears", "statement")
DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
HISTORY_MONTHS = [date(2026, 1, 1), date(2026, 2, 1)]
ACCRUAL_MONTH = date(2026, 3, 1)
STATEMENT_FIRST_MONTH = date(2016, 1, 1)
STATEMENT_MONTHS = 120
POSTING_FIRST_MONTH = date(2027, 1, 1)  # after every month of the other scenarios
POSTING_POOL = 100_000  # members the posting scenario cycles through
BATCH_ENTRIES = 1_000
THREADS = 8
MEMBER_PREFIX = "M"  # members with a plan: the accrual streams them
STATEMENT_PREFIX = "S"  # members without a plan, with a ten-year history

T = TypeVar("T")


# -- measuring ------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    count: int
    seconds: float
    rate: float | None = None
    baseline_rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    peak_rss_mb: float | None = None
    aim: str = ""
    verdict: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.rate is None or not self.baseline_rate:
            return None
        return self.rate / self.baseline_rate


def percentile_ms(seconds: list[float], p: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    ordered = sorted(seconds)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1] * 1000


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def mb(n_bytes: float) -> float:
    return n_bytes / 2**20


class RssSampler:
    """Samples this process's resident set every `interval` seconds while a run lasts."""

    def __init__(self, interval: float = 0.1) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.samples: list[tuple[float, int]] = []

    def _run(self) -> None:
        start = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - start, rss_bytes()))
            self._stop.wait(self._interval)
        self.samples.append((time.perf_counter() - start, rss_bytes()))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max(rss for _, rss in self.samples)

    def at(self, fraction: float) -> int:
        """The resident set when `fraction` of the run's time had passed."""
        end = self.samples[-1][0]
        return min(self.samples, key=lambda sample: abs(sample[0] - fraction * end))[1]


class Profiler:
    """cProfile around the measured calls of one thread, when --profile names a folder."""

    def __init__(self, folder: Path | None) -> None:
        self._folder = folder

    def run(self, name: str, call: Callable[[], T]) -> T:
        if self._folder is None:
            return call()
        profile = cProfile.Profile()
        result = profile.runcall(call)
        self._folder.mkdir(parents=True, exist_ok=True)
        profile.dump_stats(self._folder / f"{name}.prof")
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out).sort_stats("cumulative")
        stats.print_stats(40)
        out.write("\n--- by own time ---\n")
        stats.sort_stats("tottime").print_stats(25)
        (self._folder / f"{name}.txt").write_text(out.getvalue())
        return result


# -- the database ---------------------------------------------------------------------------


@contextmanager
def fresh_database(server_url: str, *, keep: bool) -> Iterator[str]:
    name = f"vznos_bench_{os.getpid()}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        if keep:
            print(f"kept database {name}")
        else:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def psycopg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def checkpoint(engine: Engine) -> None:
    """Start each write run from a clean slate, as the machine's baseline did."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("CHECKPOINT"))


# -- posting: the application against plain psycopg into bare tables ------------------------

BARE_TABLES = """
CREATE TABLE IF NOT EXISTS bench_bare_entries (
    id uuid PRIMARY KEY, idempotency_key text NOT NULL, body_hash text NOT NULL,
    kind text NOT NULL, organization_id uuid, member_id uuid, occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL, booked_period date NOT NULL, period_month date,
    source_type text NOT NULL, source_id text NOT NULL, description text NOT NULL);
CREATE TABLE IF NOT EXISTS bench_bare_postings (
    id bigserial PRIMARY KEY, entry_id uuid NOT NULL, account_id uuid NOT NULL,
    amount_kopecks bigint NOT NULL, currency text NOT NULL, occurred_at timestamptz NOT NULL);
"""
BARE_ENTRY = (
    "INSERT INTO bench_bare_entries (id, idempotency_key, body_hash, kind, organization_id,"
    " member_id, occurred_at, recorded_at, booked_period, period_month, source_type, source_id,"
    " description) VALUES (%s, %s, %s, 'accrual', %s, %s, %s, %s, %s, %s, 'bench', %s, %s)"
)
BARE_POSTINGS = (
    "INSERT INTO bench_bare_postings (entry_id, account_id, amount_kopecks, currency,"
    " occurred_at) VALUES (%s, %s, %s, 'RUB', %s), (%s, %s, %s, 'RUB', %s)"
)


@dataclass(frozen=True)
class BareEntry:
    """The rows one accrual writes to the journal, as plain tuples."""

    entry: tuple[object, ...]
    postings: tuple[tuple[object, ...], tuple[object, ...]]


class BareAccounts:
    """Account ids handed to the baseline as given: it looks nothing up."""

    def __init__(self) -> None:
        self._ids: dict[uuid.UUID, uuid.UUID] = {}
        self._lock = threading.Lock()

    def of(self, owner: uuid.UUID) -> uuid.UUID:
        with self._lock:
            return self._ids.setdefault(owner, uuid.uuid4())


def bare_entry(item: Accrual, recorded_at: datetime, accounts: BareAccounts) -> BareEntry:
    entry_id = uuid.uuid4()
    key = f"accrual:{item.member_id}:{item.period_month:%Y-%m}"
    entry = (
        entry_id,
        key,
        hashlib.sha256(key.encode()).hexdigest(),
        item.organization_id,
        item.member_id,
        item.occurred_at,
        recorded_at,
        item.period_month,
        item.period_month,
        item.source_id,
        f"Dues for {item.period_month:%Y-%m}",
    )
    debit = (entry_id, accounts.of(item.member_id), item.amount_kopecks, item.occurred_at)
    credit = (entry_id, accounts.of(item.organization_id), -item.amount_kopecks, item.occurred_at)
    return BareEntry(entry, (debit, credit))


def accrual_of(member: dataset.MemberRow, period: date, source_id: str) -> Accrual:
    return Accrual(
        member_id=member.member_id,
        organization_id=member.organization_id,
        timezone=member.timezone,
        period_month=period,
        amount_kopecks=dataset.FIXED_PLAN_KOPECKS,
        occurred_at=period_start(period, member.timezone),
        source_type="bench",
        source_id=source_id,
    )


def run_threads(
    seconds: float, post: Callable[[int, int], bool], threads: int = THREADS
) -> tuple[int, float, list[float]]:
    """Each thread calls post(thread, n) until the time is up or post returns False.
    Returns (transactions, elapsed seconds, latencies)."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    window: dict[str, float] = {}
    barrier = threading.Barrier(
        threads, action=lambda: window.__setitem__("start", time.perf_counter())
    )

    def work(thread: int) -> None:
        barrier.wait()
        stop_at = window["start"] + seconds
        mine = latencies[thread]
        while True:
            started = time.perf_counter()
            if started >= stop_at or not post(thread, len(mine)):
                break
            mine.append(time.perf_counter() - started)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - window["start"]
    flat = [latency for mine in latencies for latency in mine]
    return len(flat), elapsed, flat


def bench_posting(
    url: str, engine: Engine, clock: ManualClock, args: argparse.Namespace, profiler: Profiler
) -> list[Row]:
    with engine.begin() as connection:
        connection.execute(text(BARE_TABLES))
        members = dataset.fetch_members(
            connection, prefix=MEMBER_PREFIX, limit=min(args.members, POSTING_POOL)
        )
    members = members[: len(members) // BATCH_ENTRIES * BATCH_ENTRIES]
    clock.set(datetime(2027, 12, 1, 6, tzinfo=UTC))
    sessions = make_sessions(engine)
    accounts = BareAccounts()
    dsn = psycopg_dsn(url)
    rows: list[Row] = []

    # Single entries: 8 threads, one accrual per transaction, each thread its own members.
    per_thread = [members[n::THREADS] for n in range(THREADS)]
    single_month = POSTING_FIRST_MONTH
    bare_connections = [psycopg.connect(dsn) for _ in range(THREADS)]

    def post_bare(thread: int, n: int) -> bool:
        if n >= len(per_thread[thread]):
            return False
        item = accrual_of(per_thread[thread][n], single_month, "single")
        bare = bare_entry(item, clock.now(), accounts)
        connection = bare_connections[thread]
        with connection.cursor() as cursor:
            cursor.execute(BARE_ENTRY, bare.entry)
            cursor.execute(BARE_POSTINGS, bare.postings[0] + bare.postings[1])
        connection.commit()
        return True

    def post_app(thread: int, n: int) -> bool:
        if n >= len(per_thread[thread]):
            return False
        item = accrual_of(per_thread[thread][n], single_month, "single")
        with transaction(sessions) as session:
            post_entry(session, accrual_draft(item), recorded_at=clock.now())
        return True

    checkpoint(engine)
    base_n, base_s, base_lat = run_threads(args.seconds, post_bare)
    for bare_connection in bare_connections:
        bare_connection.close()
    checkpoint(engine)
    with RssSampler() as rss:
        app_n, app_s, app_lat = run_threads(args.seconds, post_app)
    rows.append(
        Row(
            "posting: single entry, 8 threads",
            app_n,
            app_s,
            rate=app_n / app_s,
            baseline_rate=base_n / base_s,
            p50_ms=percentile_ms(app_lat, 50),
            p99_ms=percentile_ms(app_lat, 99),
            peak_rss_mb=mb(rss.peak),
            aim="report only",
            notes=[
                f"baseline: {base_n} txns (1 entry + 2 postings each), p50 "
                f"{percentile_ms(base_lat, 50):.2f} ms, p99 {percentile_ms(base_lat, 99):.2f} ms"
            ],
        )
    )

    # Batched import: 1,000 accruals per transaction, one thread.
    batches = min(args.batches, len(members) // BATCH_ENTRIES * 3)

    def batch_items(number: int) -> list[Accrual]:
        start = number * BATCH_ENTRIES
        period = POSTING_FIRST_MONTH
        for _ in range(1 + start // len(members)):
            period = next_period(period)
        first = start % len(members)
        chunk = members[first : first + BATCH_ENTRIES]
        return [accrual_of(member, period, "batch") for member in chunk]

    checkpoint(engine)
    base_lat = []
    with psycopg.connect(dsn) as copier:
        for number in range(batches):
            started = time.perf_counter()
            recorded_at = clock.now()
            bare = [bare_entry(item, recorded_at, accounts) for item in batch_items(number)]
            with copier.cursor() as cursor:
                with cursor.copy(
                    "COPY bench_bare_entries (id, idempotency_key, body_hash, organization_id,"
                    " member_id, occurred_at, recorded_at, booked_period, period_month,"
                    " source_id, description, kind, source_type) FROM STDIN"
                ) as copy:
                    for one in bare:
                        copy.write_row((*one.entry, "accrual", "bench"))
                with cursor.copy(
                    "COPY bench_bare_postings (entry_id, account_id, amount_kopecks, occurred_at,"
                    " currency) FROM STDIN"
                ) as copy:
                    for one in bare:
                        for posting in one.postings:
                            copy.write_row((*posting, "RUB"))
            copier.commit()
            base_lat.append(time.perf_counter() - started)
    checkpoint(engine)

    def post_batches() -> list[float]:
        latencies = []
        for number in range(batches):
            started = time.perf_counter()
            items = batch_items(number)
            with transaction(sessions) as session:
                post_accruals(session, items, recorded_at=clock.now())
            latencies.append(time.perf_counter() - started)
        return latencies

    with RssSampler() as rss:
        app_lat = profiler.run("posting_batch", post_batches)
    entries = batches * BATCH_ENTRIES
    rows.append(
        Row(
            "posting: batch of 1,000 per txn",
            entries,
            sum(app_lat),
            rate=entries / sum(app_lat),
            baseline_rate=entries / sum(base_lat),
            p50_ms=percentile_ms(app_lat, 50),
            p99_ms=percentile_ms(app_lat, 99),
            peak_rss_mb=mb(rss.peak),
            aim="ratio ≥ 0.5",
            notes=[
                f"p50/p99 per 1,000-entry txn; baseline COPY txn p50 "
                f"{percentile_ms(base_lat, 50):.1f} ms, p99 {percentile_ms(base_lat, 99):.1f} ms"
            ],
        )
    )
    rows[-1].verdict = verdict((rows[-1].ratio or 0) >= 0.5)
    return rows


# -- accrual, arrears, statement ------------------------------------------------------------


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


class AccrualBudgetSpent(Exception):
    """Raised between two batches when the accrual has run for its time budget."""


def bench_accrual(
    engine: Engine, clock: ManualClock, args: argparse.Namespace, profiler: Profiler
) -> Row:
    """`DuesService.accrue` for one month, timed batch by batch. The bench wraps the service's
    call to `post_accruals` (nothing else changes) to time each batch and to stop the run,
    between batches, once it has used `--accrual-budget` seconds; the time for all members is
    then projected from the batches done."""
    clock.set(period_start(ACCRUAL_MONTH, "Europe/Moscow").astimezone(UTC) + timedelta(hours=9))
    service = DuesService(make_sessions(engine), clock)
    batch_seconds: list[float] = []
    accrued = 0
    checkpoint(engine)
    before = rss_bytes()
    started = time.perf_counter()

    counting = threading.Lock()

    def timed_batch(session: Session, items: list[Accrual], *, recorded_at: datetime) -> int:
        # Called from the service's worker threads (see `DuesService.accrue`).
        nonlocal accrued
        if time.perf_counter() - started > args.accrual_budget:
            raise AccrualBudgetSpent
        batch_started = time.perf_counter()
        posted = post_accruals(session, items, recorded_at=recorded_at)
        with counting:
            batch_seconds.append(time.perf_counter() - batch_started)
            accrued += posted
        return posted

    stopped = False
    with RssSampler() as rss, patch.object(dues_service, "post_accruals", timed_batch):
        try:
            profiler.run("accrual", lambda: service.accrue(ACCRUAL_MONTH))
        except AccrualBudgetSpent:
            stopped = True
    seconds = time.perf_counter() - started
    per_million = seconds * 1_000_000 / max(accrued, 1)
    projected = seconds * args.members / max(accrued, 1)
    notes = [
        f"{len(batch_seconds)} batches of 5,000 by 2 workers at once: post_accruals p50 "
        f"{percentile_ms(batch_seconds, 50) / 1000:.2f} s, p99 "
        f"{percentile_ms(batch_seconds, 99) / 1000:.2f} s, first {batch_seconds[0]:.2f} s, "
        f"last {batch_seconds[-1]:.2f} s; {per_million:.0f} s per 1M members",
        f"RSS before {mb(before):.0f} MB, at 10 % of the run {mb(rss.at(0.1)):.0f} MB, "
        f"at 100 % {mb(rss.at(1.0)):.0f} MB",
    ]
    if stopped:
        notes.insert(
            0,
            f"stopped after its {args.accrual_budget:.0f} s budget with {accrued:,} of "
            f"{args.members:,} members accrued; all of them projected at {projected:.0f} s",
        )
    return Row(
        f"accrual: one month of {args.members:,} members",
        accrued,
        seconds,
        rate=accrued / seconds,
        p50_ms=percentile_ms(batch_seconds, 50),
        p99_ms=percentile_ms(batch_seconds, 99),
        peak_rss_mb=mb(rss.peak),
        aim="< 120 s per 1M, flat memory",
        verdict=verdict(per_million < 120),
        notes=notes,
    )


def bench_arrears(engine: Engine, organizations: list[uuid.UUID], profiler: Profiler) -> list[Row]:
    reads = LedgerReads(make_sessions(engine))
    first_pages = []
    for _ in range(20):
        started = time.perf_counter()
        reads.arrears_list(organizations, min_months=2, limit=1000)
        first_pages.append(time.perf_counter() - started)

    def whole_list() -> tuple[int, int]:
        after: uuid.UUID | None = None
        members = pages = 0
        while True:
            page = reads.arrears_list(organizations, min_months=2, limit=1000, after=after)
            if not page:
                return members, pages
            members += len(page)
            pages += 1
            after = page[-1][0]

    def streamed() -> int:
        return sum(1 for _ in reads.arrears_stream(organizations, min_months=2))

    runs = []
    for _ in range(3):
        started = time.perf_counter()
        members, pages = whole_list()
        runs.append(time.perf_counter() - started)
    streams = []
    for run in range(3):
        started = time.perf_counter()
        streamed_members = profiler.run("arrears_full", streamed) if run == 0 else streamed()
        streams.append(time.perf_counter() - started)
    assert streamed_members == members, (streamed_members, members)
    full = statistics.median(runs)
    stream = statistics.median(streams)
    return [
        Row(
            "arrears: first page (1,000 members)",
            len(first_pages),
            sum(first_pages),
            p50_ms=percentile_ms(first_pages, 50),
            p99_ms=percentile_ms(first_pages, 99),
            aim="report only",
            notes=[f"all {len(organizations)} organisations (the federation's view)"],
        ),
        Row(
            "arrears: whole list, owing ≥ 2 months",
            members,
            stream,
            rate=members / stream,
            aim="< 1 s",
            verdict=verdict(stream < 1),
            notes=[
                f"`arrears_stream`: one query through a server-side cursor; median of 3 runs "
                f"({', '.join(f'{run:.2f}' for run in streams)} s)"
            ],
        ),
        Row(
            "arrears: whole list by pages of 1,000",
            members,
            full,
            rate=members / full,
            aim="report only",
            notes=[
                f"{pages} pages of 1,000 by keyset (`arrears_list(after=)`); median of 3 runs "
                f"({', '.join(f'{run:.2f}' for run in runs)} s)"
            ],
        ),
    ]


def bench_statement(
    engine: Engine,
    clock: ManualClock,
    members: list[dataset.MemberRow],
    args: argparse.Namespace,
    profiler: Profiler,
) -> Row:
    reads = LedgerReads(make_sessions(engine))
    start = period_start(STATEMENT_FIRST_MONTH, "Europe/Moscow")
    end = period_start(date(STATEMENT_FIRST_MONTH.year + 10, 1, 1), "Europe/Moscow")
    rng = random.Random(42)
    for member in members[:10]:  # warm the pool and the plan cache
        reads.statement(member.member_id, start, end)

    def statements() -> tuple[list[float], list[int]]:
        latencies, lines = [], []
        for _ in range(args.statements):
            member = rng.choice(members)
            started = time.perf_counter()
            statement = reads.statement(member.member_id, start, end)
            latencies.append(time.perf_counter() - started)
            lines.append(len(statement.lines))
        return latencies, lines

    latencies, lines = profiler.run("statement", statements)
    p99 = percentile_ms(latencies, 99)
    return Row(
        "statement: ten years, one member",
        len(latencies),
        sum(latencies),
        rate=len(latencies) / sum(latencies),
        p50_ms=percentile_ms(latencies, 50),
        p99_ms=p99,
        aim="p99 < 20 ms",
        verdict=verdict(p99 < 20),
        notes=[
            f"{len(members)} members with {STATEMENT_MONTHS} accruals and "
            f"{STATEMENT_MONTHS // 3} payments each; {statistics.mean(lines):.0f} lines "
            "per statement"
        ],
    )


# -- the run --------------------------------------------------------------------------------


@dataclass
class Setup:
    """What was loaded, and how long it took (not measured as a scenario)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"… {name}", flush=True)
        started = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - started
        print(f"  {name}: {self.seconds[name]:.1f} s", flush=True)


def run(args: argparse.Namespace, url: str) -> tuple[list[Row], Setup]:
    only = set(SCENARIOS) if args.only is None else {args.only}
    setup = Setup()
    profiler = Profiler(args.profile)
    clock = ManualClock(datetime(2026, 1, 1, 6, tzinfo=UTC))
    rows: list[Row] = []
    with setup.step("migrations"):
        upgrade(url)
    engine = make_engine(url, pool_size=THREADS)
    try:
        loading = f"load {args.members:,} members, plans and the organisation tree"
        with setup.step(loading), engine.begin() as connection:
            tree = dataset.load_tree(connection, clock.now())
            dataset.load_members(connection, tree, args.members, clock.now(), prefix=MEMBER_PREFIX)
            dataset.load_members(
                connection, tree, args.statement_members, clock.now(), prefix=STATEMENT_PREFIX
            )
            dataset.load_plans(connection, tree, clock.now(), prefix=MEMBER_PREFIX)
        if only & {"accrual", "arrears"}:
            with setup.step(f"history: {len(HISTORY_MONTHS)} months accrued and paid, set-based"):
                dataset.load_history(engine, tree, HISTORY_MONTHS, clock.now())
        with setup.step("vacuum analyze"):
            dataset.vacuum_analyze(engine)
        if only & {"accrual", "arrears"}:
            print("… accrual", flush=True)
            rows.append(bench_accrual(engine, clock, args, profiler))
            print(f"  {rows[-1].seconds:.1f} s", flush=True)
            if "arrears" in only:
                with setup.step(f"the rest of {ACCRUAL_MONTH:%Y-%m}, set-based"):
                    dataset.complete_month(engine, ACCRUAL_MONTH, clock.now())
        if "arrears" in only:
            with setup.step("vacuum analyze after the accrual"):
                dataset.vacuum_analyze(engine)
            print("… arrears", flush=True)
            rows += bench_arrears(engine, tree.everyone, profiler)
        if "statement" in only:
            with engine.connect() as connection:
                members = dataset.fetch_members(
                    connection, prefix=STATEMENT_PREFIX, limit=args.statement_members
                )
            with setup.step(f"ten-year history of {len(members)} members through the ledger"):
                dataset.build_statement_history(
                    make_sessions(engine), clock, members, STATEMENT_FIRST_MONTH, STATEMENT_MONTHS
                )
                dataset.vacuum_analyze(engine)
            print("… statement", flush=True)
            rows.append(bench_statement(engine, clock, members, args, profiler))
        if "posting" in only:
            print("… posting", flush=True)
            rows += bench_posting(url, engine, clock, args, profiler)
    finally:
        engine.dispose()
    return rows, setup


# -- the report -----------------------------------------------------------------------------

HEADER = (
    "scenario",
    "count",
    "seconds",
    "rate/s",
    "baseline rate/s",
    "ratio",
    "p50 ms",
    "p99 ms",
    "peak RSS MB",
    "aim",
    "verdict",
)


def cells(row: Row) -> tuple[str, ...]:
    def num(value: float | None, digits: int = 0) -> str:
        return "—" if value is None else f"{value:,.{digits}f}"

    return (
        row.scenario,
        f"{row.count:,}",
        f"{row.seconds:,.2f}",
        num(row.rate),
        num(row.baseline_rate),
        num(row.ratio, 2),
        num(row.p50_ms, 2),
        num(row.p99_ms, 2),
        num(row.peak_rss_mb),
        row.aim,
        row.verdict or "—",
    )


def text_table(rows: list[Row]) -> str:
    table = [HEADER, *(cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = [
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True))
        for line in table
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def machine_facts(url: str) -> list[tuple[str, str]]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    with psycopg.connect(psycopg_dsn(url)) as connection:

        def show(setting: str) -> str:
            row = connection.execute(f"SHOW {setting}").fetchone()
            return str(row[0]) if row else "?"

        version = show("server_version")
        settings = ", ".join(
            f"{name} {show(name)}"
            for name in ("shared_buffers", "work_mem", "synchronous_commit", "jit")
        )
    commit = subprocess.run(
        ["git", "-C", str(BENCH_DIR.parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("nproc", str(os.cpu_count())),
        ("CPU", cpu),
        ("RAM", f"{mem_kb / 2**20:.1f} GiB"),
        ("PostgreSQL", f"{version} ({settings})"),
        ("Python", platform.python_version()),
        ("code", f"git {commit or '?'} (plus any uncommitted changes)"),
    ]


def write_results(
    path: Path, rows: list[Row], setup: Setup, facts: list[tuple[str, str]], command: str
) -> None:
    notes = [f"- **{row.scenario}**: {'; '.join(row.notes)}" for row in rows if row.notes]
    loading = [f"{name} {seconds:.1f} s" for name, seconds in setup.seconds.items()]
    # The billing benchmark's section (between its markers) is its own: keep it.
    previous = path.read_text() if path.exists() else ""
    billing = previous[previous.find(BILLING_START) :] if BILLING_START in previous else ""
    path.write_text(
        "\n".join(
            [
                "# Ledger benchmark results",
                "",
                f"How to run: `{command}` (from the repository root; see `bench/README.md`).",
                "",
                "## Machine",
                "",
                *[f"- {name}: {value}" for name, value in facts],
                "",
                "## Results",
                "",
                markdown_table(rows),
                "",
                "ratio = rate / baseline rate, both measured in this run on this machine.",
                "",
                "## Notes",
                "",
                *notes,
                f"- setup (not measured): {'; '.join(loading)}",
                f"- peak RSS of the whole process: "
                f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB",
                "",
                billing,
            ]
        )
    )


BILLING_START = "<!-- billing-bench:start -->"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("VZNOS_DATABASE_URL") or os.environ.get("DATABASE_URL"),
        help="the server to create the benchmark database on (any database on it)",
    )
    parser.add_argument("--only", choices=SCENARIOS)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--seconds", type=float, default=10.0, help="per side, single entries")
    parser.add_argument("--batches", type=int, default=30, help="1,000-entry batches per side")
    parser.add_argument(
        "--accrual-budget",
        type=float,
        default=240.0,
        help="stop the accrual between batches after this many seconds and project the rest",
    )
    parser.add_argument(
        "--statement-members",
        type=int,
        help="members with a ten-year history (default: N / 5,000, between 20 and 200)",
    )
    parser.add_argument("--statements", type=int, default=200)
    parser.add_argument("--profile", type=Path, help="write cProfile output to this folder")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md")
    args = parser.parse_args(argv)
    if args.statement_members is None:
        args.statement_members = min(200, max(20, args.members // 5_000))
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    server = normalize_database_url(args.database_url or DEFAULT_SERVER)
    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    with fresh_database(server, keep=args.keep) as url:
        rows, setup = run(args, url)
        facts = machine_facts(url)
    # Other engineers' runs share the cores: the load says how much of them this run had.
    facts.append(
        (
            "load average (1 min)",
            f"{load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
        )
    )
    print()
    print(text_table(rows))
    for row in rows:
        for note in row.notes:
            print(f"  {row.scenario}: {note}")
    print(f"total {time.perf_counter() - started:.0f} s")
    command = "python bench/ledger_bench.py " + " ".join(argv)
    write_results(args.results, rows, setup, facts, command.strip())
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main(sys.argv[1:])
