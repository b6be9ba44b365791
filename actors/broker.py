"""The dramatiq broker, built from settings before any actor is declared.

RabbitMQ with publisher confirms (a message the broker did not confirm is not "sent"), queues named
`<queue_prefix>.<actor>`, late acks (dramatiq acks after the actor returns, so a killed worker's
message is redelivered), and middleware: age and time limits, callbacks/pipelines, retries (only
for infrastructure failures: the actors apply the error-class policy themselves), current message,
and the Prometheus exporter. `stub://` gives dramatiq's in-process broker (demo without RabbitMQ).
"""

from __future__ import annotations

import os
import tempfile

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Retries
from periodiq import PeriodiqMiddleware

from actors.middleware import DeadLetterGuard
from pipeline.config import Settings

# Retries for failures the policy cannot see (RabbitMQ unreachable while forwarding, a time limit).
INFRA_MAX_RETRIES = 20
INFRA_MIN_BACKOFF_MS = 1_000
INFRA_MAX_BACKOFF_MS = 300_000
PROMETHEUS_DB_DEFAULT = os.path.join(tempfile.gettempdir(), "dramatiq-prometheus")


def prometheus_db() -> str:
    """The multiprocess metrics folder, shared by dramatiq's exporter and our own metrics."""
    return os.environ.get("dramatiq_prom_db", PROMETHEUS_DB_DEFAULT)


def prepare_prometheus_env() -> None:
    """Must run before prometheus_client is imported anywhere, so every metric is multiprocess-safe."""
    path = prometheus_db()
    os.makedirs(path, exist_ok=True)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", path)
    os.environ.setdefault("prometheus_multiproc_dir", path)


def build_broker(settings: Settings) -> dramatiq.Broker:
    if settings.broker_url.startswith("stub://"):
        broker: dramatiq.Broker = StubBroker()
    else:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
        os.environ.setdefault("dramatiq_prom_port", str(settings.metrics_port))  # read when the module loads
        from dramatiq.middleware.prometheus import Prometheus

        broker.add_middleware(Prometheus())
    for middleware in broker.middleware:
        if isinstance(middleware, Retries):
            middleware.max_retries = INFRA_MAX_RETRIES
            middleware.min_backoff = INFRA_MIN_BACKOFF_MS
            middleware.max_backoff = INFRA_MAX_BACKOFF_MS
    broker.add_middleware(DeadLetterGuard(), before=Retries)  # its after-hook then runs after Retries decided
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(PeriodiqMiddleware(skip_delay=60))  # schedules: actors/schedules.py, `periodiq actors`
    return broker


def setup_broker(settings: Settings) -> dramatiq.Broker:
    broker = build_broker(settings)
    dramatiq.set_broker(broker)
    return broker
