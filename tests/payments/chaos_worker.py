"""A real dramatiq worker process for the SIGKILL chaos test (T06).

It is `vznos worker` with three test-only differences: the broker is isolated (its own RabbitMQ
vhost or Redis db and namespace) and on Redis notices a dead worker after 5 s instead of 60 s;
armed fault points kill the process with SIGKILL (with a probability per hit) instead of raising;
and every message it starts is appended to a shared log, so the test can see redeliveries.

Run as `python -m tests.payments.chaos_worker` with the environment the test sets.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from core.faults import FaultPoints
from core.settings import Settings
from vznos.container import GatewayConfig, build_container

KILL_POINTS = ("charge.after_reply_before_commit", "actor.after_effect_before_ack")


def chaos_broker(url: str, namespace: str) -> dramatiq.Broker:
    if url.startswith("amqp"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url, confirm_delivery=True)
    from dramatiq.brokers.redis import RedisBroker

    # Requeue a dead worker's messages after 5 s, and look for dead workers often.
    return RedisBroker(  # type: ignore[no-untyped-call]
        url=url, namespace=namespace, heartbeat_timeout=5_000, maintenance_chance=200_000
    )


class KillingFaultPoints(FaultPoints):
    """A hit on an armed point is this process's death by SIGKILL, with probability p."""

    def __init__(self, names: tuple[str, ...], probability: float) -> None:
        super().__init__()
        self._names = frozenset(names)
        self._probability = probability
        self._rng = random.Random()

    def hit(self, name: str) -> None:
        if name in self._names and self._rng.random() < self._probability:
            os.kill(os.getpid(), signal.SIGKILL)


class MessageLog(Middleware):
    def __init__(self, path: str, faults: FaultPoints) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._faults = faults

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        # One short write with O_APPEND: lines from several processes never interleave.
        os.write(self._fd, f"{os.getpid()} {message.message_id} {message.actor_name}\n".encode())

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        self._faults.hit("actor.after_effect_before_ack")


def main() -> None:
    env = os.environ
    url = env["CHAOS_BROKER_URL"]
    faults = KillingFaultPoints(KILL_POINTS, float(env.get("CHAOS_KILL_PROBABILITY", "0.01")))
    broker = chaos_broker(url, env["CHAOS_NAMESPACE"])
    container = build_container(
        Settings(broker_url=url, database_url=None, precharge_notice_days=0),
        database_url=env["CHAOS_DATABASE_URL"],
        gateway=GatewayConfig(env["CHAOS_SHOP_ID"], env["CHAOS_SECRET_KEY"], env["CHAOS_API_URL"]),
        broker=broker,
        faults=faults,
    )
    broker.add_middleware(MessageLog(env["CHAOS_MESSAGE_LOG"], faults))
    worker = dramatiq.Worker(broker, worker_threads=int(env.get("CHAOS_THREADS", "4")))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker.start()
    print("ready", flush=True)
    stop.wait()
    worker.stop()
    container.close()


if __name__ == "__main__":
    main()
