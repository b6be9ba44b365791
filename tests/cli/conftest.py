"""Fixtures for the CLI tests: run `stash2plex` as a subprocess (each run binds the actors to its own
queue prefix), point it at the emulators and RabbitMQ, read queues and publish DLQ entries with pika."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RABBIT_URL, ROOT, WorkerProcess, drain_queue, emulator_env

CLI = [sys.executable, "-m", "ops.cli"]


@dataclass
class CliRun:
    """One finished `stash2plex` process."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(args: list[str], env: dict[str, str], *, stdin: str | None = None, timeout: float = 90.0) -> CliRun:
    """`python -m ops.cli ARGS` with only these STASH2PLEX_* variables (the caller's are dropped)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("STASH2PLEX_")}
    full = {**base, "COLUMNS": "250", "PYTHONPATH": str(ROOT), **env}
    proc = subprocess.run([*CLI, *args], env=full, cwd=ROOT, input=stdin if stdin is not None else "",
                          capture_output=True, text=True, timeout=timeout, check=False)
    return CliRun(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def env(plex, stash, data_dir: Path, queue_prefix: str, tmp_path: Path) -> dict[str, str]:
    """STASH2PLEX_* for the emulators, RabbitMQ and this test's queue prefix (metrics in tmp, no port)."""
    values = emulator_env(plex, stash, data_dir, queue_prefix=queue_prefix, broker_url=RABBIT_URL,
                          retry_base_seconds=0.2, not_found_base_seconds=0.2)
    values["dramatiq_prom_db"] = str(tmp_path / "prom")
    values["STASH2PLEX_METRICS_PORT"] = "0"
    return values


@pytest.fixture
def cli(env: dict[str, str]):
    """`cli("status", "--json", STASH2PLEX_X="...")` runs the CLI with the test's env plus overrides (None drops one)."""

    def run(*args: str, stdin: str | None = None, **overrides: str | None) -> CliRun:
        merged = {key: value for key, value in {**env, **overrides}.items() if value is not None}
        return run_cli(list(args), merged, stdin=stdin)

    return run


@pytest.fixture
def start_worker(env: dict[str, str], tmp_path: Path) -> Iterator:
    started: list[WorkerProcess] = []

    def start(**overrides: str) -> WorkerProcess:
        worker = WorkerProcess({**env, **overrides}, processes=1, threads=4, log_path=tmp_path / "worker.log").start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


# --- RabbitMQ helpers ------------------------------------------------------------------------------
def drain(queue: str) -> list[dict[str, Any]]:
    """Every message body waiting in `queue` (removed), decoded; a missing queue is empty."""
    return [json.loads(body) for _properties, body in drain_queue(queue)]


def queued_jobs(queue: str) -> list[list[dict[str, Any]]]:
    """The `jobs` kwarg of each dramatiq message in `queue` (drained)."""
    return [body["kwargs"]["jobs"] for body in drain(queue)]


def dlq_settings(prefix: str):
    from pipeline.config import load_settings

    return load_settings(broker_url=RABBIT_URL, queue_prefix=prefix)


def publish_dead_letter(prefix: str, scene_id: str, *, stage: str = "fetch", error_class: str = "permanent",
                        age_days: float = 0.0, job: dict[str, Any] | None = None):
    """Publish one DLQ entry the way the actors do (pipeline.dlq.RabbitDeadLetterQueue); returns it."""
    from pipeline.dlq import DlqEntry, RabbitDeadLetterQueue
    from pipeline.stages import stage_named

    now = time.time()
    entry = DlqEntry(scene_id=scene_id, stage=stage, actor=stage_named(stage).actor_name, error_class=error_class,
                     message=f"{error_class} failure of scene {scene_id}", reason="test", attempts=3, deferrals=1,
                     first_failure=now - 60, last_failure=now, dead_lettered_at=now - age_days * 86400,
                     job=job or {"scene_id": scene_id, "event": "Scene.Update.Post", "attempts": 3, "deferrals": 1,
                                 "last_error": "boom", "error_class": error_class})
    dlq = RabbitDeadLetterQueue(dlq_settings(prefix))
    try:
        dlq.publish(entry)
    finally:
        dlq.close()
    return entry


def dlq_ids(prefix: str) -> list[str]:
    from pipeline.dlq import RabbitDeadLetterQueue

    return [e.id for e in RabbitDeadLetterQueue(dlq_settings(prefix)).entries()]


def plex_item_for(plex, scene: dict) -> dict:
    return plex.item(plex.rating_key_for_file(scene["files"][0]["path"]))
