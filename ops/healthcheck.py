"""Container healthchecks (docker-compose.yml, Dockerfile `HEALTHCHECK`); exit 0 healthy, 1 not.

    python -m ops.healthcheck worker    the worker's metrics exporter answers and RabbitMQ accepts our login
    python -m ops.healthcheck broker    RabbitMQ accepts our login (the scheduler)
    python -m ops.healthcheck provider  the metadata provider answers /healthz on provider_port

Settings come from the environment like the workers'. The one line printed never holds a secret.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from pipeline import rabbit
from pipeline.config import Settings, load_settings
from pipeline.errors import BrokerRefused, BrokerUnreachable

TIMEOUT_SECONDS = 5.0


def exporter_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.metrics_host in ("0.0.0.0", "", "::") else settings.metrics_host
    return f"http://{host}:{settings.metrics_port}/metrics"


def check_exporter(settings: Settings) -> str | None:
    """None when the exporter answers, else what is wrong."""
    if settings.metrics_port == 0:
        return None  # no exporter configured: nothing to ask
    try:
        with urllib.request.urlopen(exporter_url(settings), timeout=TIMEOUT_SECONDS) as response:
            return None if response.status == 200 else f"metrics exporter answered HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"metrics exporter on port {settings.metrics_port} does not answer ({type(exc).__name__})"


def check_provider(settings: Settings) -> str | None:
    """None when the provider answers its health route (its index may still be building)."""
    host = "127.0.0.1" if settings.provider_host in ("0.0.0.0", "", "::") else settings.provider_host
    try:
        with urllib.request.urlopen(f"http://{host}:{settings.provider_port}/healthz", timeout=TIMEOUT_SECONDS) as response:
            return None if response.status == 200 else f"provider answered HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"provider on port {settings.provider_port} does not answer ({type(exc).__name__})"


def check_broker(settings: Settings) -> str | None:
    try:
        rabbit.server_version(settings)
    except (BrokerUnreachable, BrokerRefused) as exc:
        return f"RabbitMQ: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    kind = args[0] if args else "worker"
    checks_of = {"worker": [check_exporter, check_broker], "broker": [check_broker], "provider": [check_provider]}
    if kind not in checks_of:
        print("usage: python -m ops.healthcheck [worker|broker|provider]", file=sys.stderr)
        return 2
    settings = load_settings()
    checks = checks_of[kind]
    problems = [problem for check in checks if (problem := check(settings)) is not None]
    if problems:
        print("unhealthy: " + "; ".join(problems))
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
