"""dramatiq wiring: the broker by URL (or in-process), the actors, and the task-queue port.

Actors are registered explicitly on the broker built here, never at import time, so importing a
domain module configures nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import dramatiq
import structlog
from dramatiq.brokers.stub import StubBroker

log = structlog.get_logger("vznos.broker")

QUEUE_PAYMENTS = "payments"
QUEUE_WEBHOOKS = "webhooks"


def build_broker(url: str | None) -> dramatiq.Broker:
    if url is None:
        broker: dramatiq.Broker = StubBroker()
        broker.emit_after("process_boot")
        return broker
    if url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        # Publisher confirms: a publish that RabbitMQ did not take raises instead of vanishing.
        return RabbitmqBroker(url=url, confirm_delivery=True)
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(url=url)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    queue: str
    handler: Callable[[uuid.UUID], None]
    id_name: str
    max_retries: int = 5
    time_limit_ms: int = 120_000


def register(broker: dramatiq.Broker, specs: list[TaskSpec]) -> None:
    for spec in specs:

        def run(_spec: TaskSpec = spec, **ids: str) -> None:
            _spec.handler(uuid.UUID(ids[_spec.id_name]))

        dramatiq.Actor(
            run,
            broker=broker,
            actor_name=spec.name,
            queue_name=spec.queue,
            priority=0,
            # Explicit limits on money actors (dramatiq's default retries for ~30 days); the
            # sweepers, not retries, are what guarantee the work gets done.
            options={
                "max_retries": spec.max_retries,
                "min_backoff": 1_000,
                "max_backoff": 300_000,
                "time_limit": spec.time_limit_ms,
            },
        )


class DramatiqQueue:
    """The TaskQueue port on a dramatiq broker. A failed publish is logged, not raised: the
    database already holds the work, and a sweeper will find it."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self._broker = broker

    def enqueue(self, task: str, *, delay_seconds: float | None = None, **ids: str) -> None:
        try:
            actor = self._broker.get_actor(task)
            delay = int(delay_seconds * 1000) if delay_seconds else None
            actor.send_with_options(kwargs=ids, delay=delay)
        except Exception as exc:  # noqa: BLE001 - any broker failure: the sweeper recovers
            log.error("queue.enqueue_failed", task=task, error=type(exc).__name__)
