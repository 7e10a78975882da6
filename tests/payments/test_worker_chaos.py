"""T06: real dramatiq worker processes on RabbitMQ and on Redis, killed with SIGKILL at random
during a billing run of a few hundred charges, partly from the outside and partly at the named
points between the gateway's answer and our commit, and between the work and the ack. Then the
sweeper runs until quiet. Zero double charges (the emulator's record), zero lost (every charge
succeeded and posted once), every attempt terminal, and redeliveries observed.

Isolated from other test runs on the shared brokers: a RabbitMQ vhost of its own (made with
rabbitmqctl, removed after) and a Redis db and namespace of its own. Skips with a printed reason
when a broker is absent. Sizes: VZNOS_CHAOS_CHARGES (default 300), VZNOS_CHAOS_KILLS (default 10).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from core.settings import Settings
from members.models import Organization
from payments.charges.models import Charge, ChargeAttempt
from payments.charges.repository import OPEN_ATTEMPT_STATUSES
from payments.charges.service import META_CHARGE
from payments.gateway.emulator import EmulatorServer
from tests.conftest import BLIND_INDEX_KEY, MASTER_KEY, ROOT, SECRET_KEY, SHOP_ID
from tests.payments.billing_dataset import card_tokens, seed_subscriptions
from tests.payments.chaos_worker import chaos_broker
from vznos.container import Container, GatewayConfig, build_container

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

CHARGES = int(os.environ.get("VZNOS_CHAOS_CHARGES", "300"))
KILLS = int(os.environ.get("VZNOS_CHAOS_KILLS", "10"))
PERIOD = date(2026, 12, 1)
HEAL_SECONDS = 180
REDIS_DB = 11  # other suites use db 15; this one is ours


class ShiftedClock:
    """The real time, shifted forward while healing so the sweeper takes every open attempt."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.shift


def reachable(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def rabbitmqctl(*args: str) -> bool:
    tool = shutil.which("rabbitmqctl")
    if tool is None:
        return False
    done = subprocess.run([tool, *args], capture_output=True, timeout=60, check=False)
    return done.returncode == 0


@pytest.fixture(params=["rabbitmq", "redis"])
def broker_url(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    namespace = f"vznos-chaos-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    if request.param == "rabbitmq":
        if not reachable(5672):
            pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
        vhost = namespace
        if not (
            rabbitmqctl("add_vhost", vhost)
            and rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        ):
            pytest.skip("cannot make a RabbitMQ vhost of our own (rabbitmqctl unavailable)")
        try:
            yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}", namespace
        finally:
            rabbitmqctl("delete_vhost", vhost)
    else:
        if not reachable(6379):
            pytest.skip("Redis is not running on 127.0.0.1:6379")
        yield f"redis://127.0.0.1:6379/{REDIS_DB}", namespace


class Workers:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self._env = env
        self._log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}
        self.started = 0
        self.killed_by_us = 0

    def start(self) -> subprocess.Popen[bytes]:
        self.started += 1
        log = self._log_dir / f"worker-{self.started}.log"
        out = log.open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.payments.chaos_worker"],
            cwd=ROOT,
            env=self._env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        self.logs[proc.pid] = log
        return proc

    def wait_ready(self, timeout_seconds: float = 90) -> None:
        """Until every live worker consumes (it prints `ready`): a kill must hit a worker that
        may be in the middle of a message, not one still importing on a busy machine."""
        deadline = time.monotonic() + timeout_seconds
        for proc in self.alive():
            while b"ready" not in self.logs[proc.pid].read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        self.killed_by_us += 1

    def killed_at_fault_points(self) -> int:
        sigkilled = sum(1 for p in self.procs if p.returncode == -signal.SIGKILL)
        return sigkilled - self.killed_by_us

    def kill_all(self) -> None:
        for proc in self.alive():
            self.kill(proc)
            proc.wait()

    def stop(self) -> None:
        for proc in self.alive():
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_sigkilled_workers_neither_double_charge_nor_lose(
    broker_url: tuple[str, str],
    container: Container,
    database_url: str,
    emulator: EmulatorServer,
    org_code: str,
    tmp_path: Path,
) -> None:
    url, namespace = broker_url
    broker = chaos_broker(url, namespace)
    broker.flush_all()  # our own vhost / namespace only
    clock = ShiftedClock()
    production = build_container(
        Settings(broker_url=url, database_url=None, precharge_notice_days=0),
        database_url=database_url,
        gateway=GatewayConfig(SHOP_ID, SECRET_KEY, emulator.api_url),
        clock=clock,
        broker=broker,
        keyring=container.keyring,
    )
    with container.sessions() as session:
        org_id = session.scalar(select(Organization.id).where(Organization.code == org_code))
    assert org_id is not None
    prefix = f"chaos{uuid.uuid4().hex[:8]}"
    emulator.state.seed_saved_cards(SHOP_ID, card_tokens(prefix, CHARGES))
    seed_subscriptions(
        container.engine,
        keyring=container.keyring,
        organization_id=org_id,
        shop_id=SHOP_ID,
        count=CHARGES,
        start_period=PERIOD,
        now=clock.now(),
        prefix=prefix,
    )
    message_log = tmp_path / "messages.log"
    env = dict(
        os.environ,
        CHAOS_BROKER_URL=url,
        VZNOS_MASTER_KEY=MASTER_KEY,
        VZNOS_BLIND_INDEX_KEY=BLIND_INDEX_KEY,
        CHAOS_NAMESPACE=namespace,
        CHAOS_DATABASE_URL=database_url,
        CHAOS_SHOP_ID=SHOP_ID,
        CHAOS_SECRET_KEY=SECRET_KEY,
        CHAOS_API_URL=emulator.api_url,
        CHAOS_MESSAGE_LOG=str(message_log),
        CHAOS_KILL_PROBABILITY="0.01",
        VZNOS_LOG_LEVEL="WARNING",
    )
    workers = Workers(env, tmp_path)
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    print(f"\nchaos seed {seed} on {url}")
    kills = 0
    try:
        for _ in range(2):
            workers.start()
        workers.wait_ready()
        assert production.billing.run(PERIOD).charges_created == CHARGES
        deadline = time.monotonic() + 120
        while kills < KILLS and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.5, 1.5))
            alive = workers.alive()
            if alive:
                workers.kill(rng.choice(alive))
                kills += 1
            while len(workers.alive()) < 2:  # restart the dead, whoever killed them
                workers.start()
            workers.wait_ready()
        # Heal: the chaos stops (fresh workers that never kill themselves), and the sweeper,
        # with time moved on, re-drives whatever is open until quiet.
        workers.kill_all()
        env["CHAOS_KILL_PROBABILITY"] = "0"
        clock.shift = timedelta(days=1)
        deadline = time.monotonic() + HEAL_SECONDS
        while open_attempts(production) and time.monotonic() < deadline:
            while len(workers.alive()) < 2:
                workers.start()
            production.charges.sweep()
            clock.shift += timedelta(days=1)
            time.sleep(2)
    finally:
        workers.stop()
        production.close()

    assert kills >= KILLS
    assert open_attempts(production) == 0
    # Zero double: the emulator charged each charge at most once.
    succeeded = Counter(
        p["metadata"].get(META_CHARGE)
        for p in emulator.state.payments()
        if p["status"] == "succeeded"
    )
    assert max(succeeded.values()) == 1
    with container.sessions() as session:
        charges = session.scalars(select(Charge).where(Charge.period_month == PERIOD)).all()
        attempts = session.scalar(select(func.count()).select_from(ChargeAttempt))
        posted = session.scalar(
            text(
                "SELECT count(DISTINCT source_id) FROM ledger_entries "
                "WHERE kind = 'payment' AND source_id = ANY(:ids)"
            ),
            {"ids": [str(c.id) for c in charges]},
        )
    # Zero lost: every charge succeeded, at the gateway and in the ledger, exactly once.
    assert len(charges) == CHARGES
    assert all(c.status == "succeeded" for c in charges)
    assert all(succeeded[str(c.id)] == 1 for c in charges)
    assert posted == CHARGES
    assert attempts == CHARGES + 0  # no second attempt was ever needed
    # Proof the test exercised redelivery: some message was started more than once.
    starts = Counter(line.split()[1] for line in message_log.read_text().splitlines())
    redelivered = sum(1 for n in starts.values() if n > 1)
    print(
        f"kills {kills} (+{workers.killed_at_fault_points()} at fault points), "
        f"workers started {workers.started}, redelivered messages {redelivered}"
    )
    assert redelivered > 0


def open_attempts(container: Container) -> int:
    with container.sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(ChargeAttempt)
                .where(ChargeAttempt.status.in_(OPEN_ATTEMPT_STATUSES))
            )
            or 0
        )
