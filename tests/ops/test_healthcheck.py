"""`python -m ops.healthcheck` as compose runs it in the containers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.conftest import RABBIT_URL, ROOT
from tests.ops.metrics_helpers import free_port


def healthcheck(kind: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("STASH2PLEX_")}
    return subprocess.run([sys.executable, "-m", "ops.healthcheck", kind], env={**base, "PYTHONPATH": str(ROOT), **env},
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


class Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"# metrics\n")

    def log_message(self, *args: object) -> None:
        return None


@pytest.mark.rabbitmq
def test_worker_is_healthy_when_its_exporter_answers_and_rabbitmq_accepts_the_login():
    server = HTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = healthcheck("worker", STASH2PLEX_BROKER_URL=RABBIT_URL, STASH2PLEX_METRICS_PORT=str(server.server_port))
    finally:
        server.shutdown()
    assert result.returncode == 0 and "healthy" in result.stdout


@pytest.mark.rabbitmq
def test_worker_is_unhealthy_when_its_exporter_does_not_answer():
    result = healthcheck("worker", STASH2PLEX_BROKER_URL=RABBIT_URL, STASH2PLEX_METRICS_PORT=str(free_port()))
    assert result.returncode == 1 and "metrics exporter" in result.stdout


@pytest.mark.rabbitmq
def test_scheduler_is_unhealthy_when_rabbitmq_refuses_the_login_and_the_password_is_not_shown():
    result = healthcheck("broker", STASH2PLEX_BROKER_URL="amqp://nobody:wrong-secret-pw@127.0.0.1:5672/")
    assert result.returncode == 1 and "RabbitMQ" in result.stdout
    assert "wrong-secret-pw" not in result.stdout + result.stderr
