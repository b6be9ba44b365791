"""The dramatiq broker of a runtime, with its middleware, built from settings before any actor is declared.

RabbitMQ with publisher confirms (a message the broker did not confirm is not "sent"), late acks
(dramatiq acks after the actor returns, so a killed worker's message is redelivered), queues named
`<queue_prefix>.<actor>` (pipeline/broker_address.py). `stub://` gives dramatiq's in-process broker
(the demo without RabbitMQ).

Middleware, in order (dramatiq runs `before_*` hooks in this order and `after_*` hooks reversed):

    AgeLimit, TimeLimit (10 min), ShutdownNotifications, Callbacks, Pipelines   dramatiq's own
    CurrentMessage                                   the hook's publish time, for the latency metric
    WorkerMetrics                                    dramatiq_* series and ours, exporter on metrics_port
                                                     (RabbitMQ only; actors/exporter.py)
    RetryPolicy                                      ours, added by `build_runtime`: THE retry/defer/DLQ decision
    PeriodiqMiddleware                               schedules (actors/schedules.py, `periodiq actors`)

dramatiq's own `Retries` is left out on purpose: `RetryPolicy` replaces it, so a failure is never
retried twice over.
"""

from __future__ import annotations

import os
import tempfile

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)

from pipeline.config import Settings

PROMETHEUS_DB_DEFAULT = os.path.join(tempfile.gettempdir(), "dramatiq-prometheus")


def prometheus_db() -> str:
    """The multiprocess metrics folder of the workers (each run writes to its own folder inside it)."""
    return os.environ.get("dramatiq_prom_db", PROMETHEUS_DB_DEFAULT)


def base_middleware() -> list[Middleware]:
    return [AgeLimit(), TimeLimit(), ShutdownNotifications(), Callbacks(), Pipelines(), CurrentMessage()]


def build_broker(settings: Settings) -> dramatiq.Broker:
    """The broker alone (no actors yet); `actors.runtime.build_runtime` adds our middleware and the actors."""
    if settings.uses_stub_broker:
        return StubBroker(middleware=base_middleware())
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from actors.exporter import WorkerMetrics

    broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True, middleware=base_middleware())
    broker.add_middleware(WorkerMetrics(settings))
    return broker
