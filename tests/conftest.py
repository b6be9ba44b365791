"""Shared fixtures: the Plex and Stash emulators with a sample library, settings pointing at them,
a unique RabbitMQ queue prefix per test, and worker processes started the way operators start them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings, explicit_settings, load_settings
from tests.emulators.plex import PlexEmulator
from tests.emulators.sample_data import Dataset, make_dataset
from tests.emulators.stash import StashEmulator

ROOT = Path(__file__).resolve().parent.parent
PLEX_TOKEN = "plex-test-token-0123456789"
STASH_KEY = "stash-test-key-abcdef"
RABBIT_URL = os.environ.get("STASH2PLEX_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture
def dataset() -> Dataset:
    return make_dataset(20)


@pytest.fixture
def plex(dataset: Dataset) -> Iterator[PlexEmulator]:
    emulator = PlexEmulator(items=dataset.plex_items, token=PLEX_TOKEN)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def stash(dataset: Dataset) -> Iterator[StashEmulator]:
    emulator = StashEmulator(scenes=dataset.scenes, api_key=STASH_KEY)
    emulator.start()
    yield emulator
    emulator.stop()


def emulator_env(plex: PlexEmulator, stash: StashEmulator, data_dir: Path, **extra: Any) -> dict[str, str]:
    """STASH2PLEX_* variables that point a process at the emulators."""
    env = {
        "STASH2PLEX_PLEX_URL": plex.url,
        "STASH2PLEX_PLEX_TOKEN": PLEX_TOKEN,
        "STASH2PLEX_STASH_URL": stash.url,
        "STASH2PLEX_STASH_API_KEY": STASH_KEY,
        "STASH2PLEX_DATA_DIR": str(data_dir),
        "STASH2PLEX_PLEX_CONNECT_TIMEOUT": "2",
        "STASH2PLEX_PLEX_READ_TIMEOUT": "5",
    }
    env.update({f"STASH2PLEX_{key.upper()}": str(value) for key, value in extra.items()})
    return env


@pytest.fixture
def make_settings(plex: PlexEmulator, stash: StashEmulator, tmp_path: Path):
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "plex_url": plex.url, "plex_token": PLEX_TOKEN, "stash_url": stash.url, "stash_api_key": STASH_KEY,
            "data_dir": tmp_path / "data", "plex_connect_timeout": 2, "plex_read_timeout": 5,
        }
        values.update(overrides)
        return load_settings(**values)

    return build


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """An http:// URL whose server accepts connections and never answers (a hung Stash or Plex)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- RabbitMQ ------------------------------------------------------------------------------------
def drain_queue(queue: str) -> list[tuple[Any, bytes]]:
    """Every message waiting in `queue` as (properties, body), removed; a queue that does not exist is empty."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(RABBIT_URL))
    try:
        channel = connection.channel()
        try:
            channel.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return []
        messages = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return messages
            messages.append((properties, body))
    finally:
        if connection.is_open:
            connection.close()


def rabbit_available() -> bool:
    import pika

    try:
        pika.BlockingConnection(pika.URLParameters(RABBIT_URL + "?connection_attempts=1&socket_timeout=2")).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable" here
        return False


@pytest.fixture
def queue_prefix() -> Iterator[str]:
    """A queue prefix of this test's own; its queues are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    delete_queues(prefix)


def delete_queues(prefix: str) -> None:
    """Every queue of this prefix (stages, maintenance, their .DQ/.XQ, the DLQ); nothing to do when RabbitMQ is gone."""
    from pipeline import rabbit
    from pipeline.errors import BrokerUnreachable

    try:
        rabbit.delete_queues(explicit_settings(broker_url=RABBIT_URL, queue_prefix=prefix))
    except BrokerUnreachable:
        return


class WorkerProcess:
    """`dramatiq actors` as an operator runs it, in its own process group."""

    def __init__(self, env: dict[str, str], processes: int = 1, threads: int = 4, log_path: Path | None = None) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.args = [sys.executable, "-m", "dramatiq", "actors", "-p", str(processes), "-t", str(threads)]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "WorkerProcess":
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)


def stop_process_group(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM a process started with `start_new_session=True` and its children; SIGKILL if they linger."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def wait_for(condition, timeout: float = 30.0, interval: float = 0.1, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any("rabbitmq" in item.keywords for item in items) and not rabbit_available():
        raise pytest.UsageError(f"RabbitMQ is not reachable at {RABBIT_URL}: start it with `rabbitmq-server -detached`")
