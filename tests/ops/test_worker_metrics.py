"""`dramatiq actors` exports metrics where the settings say, only workers write metric files, and dead
processes' series go away (real RabbitMQ, emulators, worker processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from pipeline.state import StateStore
from tests.cli.conftest import run_cli
from tests.conftest import RABBIT_URL, ROOT, WorkerProcess, emulator_env, wait_for
from tests.ops.metrics_helpers import free_port, scrape, values
from tests.test_actor_chain import enqueue

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def worker_env(plex, stash, tmp_path, queue_prefix):
    def build(**extra):
        env = emulator_env(plex, stash, tmp_path / "data", queue_prefix=queue_prefix, broker_url=RABBIT_URL,
                           retry_base_seconds=0.2, not_found_base_seconds=0.2, **extra)
        env["dramatiq_prom_db"] = str(tmp_path / "prom")
        return env

    return build


@pytest.fixture
def start_worker(worker_env, tmp_path):
    started: list[WorkerProcess] = []

    def start(**extra) -> WorkerProcess:
        worker = WorkerProcess(worker_env(**extra), 1, 2, log_path=tmp_path / "worker.log").start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def test_dramatiq_actors_serves_metrics_on_the_metrics_port_setting(start_worker):
    port = free_port()
    start_worker(metrics_port=port)
    wait_for(lambda: scrape(port), timeout=30, message=f"the exporter on port {port}")
    samples = scrape(port)
    assert values(samples, "stash2plex_dead_letters_total", error_class="internal") == [0.0]
    assert values(samples, "stash2plex_scenes_total", outcome="updated") == [0.0]
    assert values(samples, "stash2plex_failures_total", error_class="plex_down", action="defer", stage="push") == [0.0]
    assert values(samples, "stash2plex_breaker_state") == [0.0]


def test_a_busy_metrics_port_is_logged_and_the_workers_keep_working(start_worker, plex, dataset, queue_prefix, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        worker = start_worker(metrics_port=port)
        log = tmp_path / "worker.log"
        wait_for(lambda: log.exists() and "metrics_exporter_failed" in log.read_text(), timeout=30,
                 message="the busy port logged")
        assert f"port={port}" in log.read_text() or f'"port": {port}' in log.read_text()
        scene = dataset.scenes[0]
        enqueue(queue_prefix, [scene["id"]])
        wait_for(lambda: plex.item(plex.rating_key_for_file(scene["files"][0]["path"]))["title"] == scene["title"],
                 timeout=60, message="the scene synced without an exporter")
        assert worker.proc is not None and worker.proc.poll() is None


def test_a_sigkilled_workers_open_breaker_is_gone_after_restart(start_worker, plex, dataset, queue_prefix, tmp_path):
    port = free_port()
    worker = start_worker(metrics_port=port, breaker_failures=1, breaker_reset_seconds=600)
    plex.go_down()
    enqueue(queue_prefix, [dataset.scenes[0]["id"]])
    wait_for(lambda: values(scrape(port), "stash2plex_breaker_state") == [2.0], timeout=60,
             message="the breaker open in the metrics")
    store = StateStore(tmp_path / "data")
    assert [row["state"] for row in store.breakers()] == ["open"]
    worker.kill()
    plex.come_up()
    start_worker(metrics_port=port)
    wait_for(lambda: scrape(port), timeout=30, message="the restarted exporter")
    wait_for(lambda: all(row["state"] != "open" for row in store.breakers()), timeout=30,
             message="the dead worker's breaker row forgotten")
    assert values(scrape(port), "stash2plex_breaker_state") == [0.0]
    run_dirs = os.listdir(tmp_path / "prom")
    assert len(run_dirs) == 1 and run_dirs[0].startswith("run-")


def metric_files(folder) -> list[str]:
    return [os.path.join(root, f) for root, _dirs, files in os.walk(folder) for f in files] if folder.exists() else []


def test_cli_runs_write_no_metric_files(worker_env, tmp_path):
    env = worker_env()
    for args in (["sync", "--scene", "1"], ["dlq", "list"]):
        result = run_cli(args, env)
        assert result.returncode == 0, result.stdout + result.stderr
    assert metric_files(tmp_path / "prom") == []


def test_a_non_worker_process_recording_outcomes_writes_no_metric_files(worker_env, tmp_path):
    script = (
        "from actors.runtime import build_runtime\n"
        "from pipeline.config import load_settings\n"
        "from pipeline.models import Job, Outcome\n"
        "from actors import metrics\n"
        "runtime = build_runtime(load_settings())\n"
        "runtime.record_outcomes([(Job(scene_id='1'), Outcome.UPDATED, '')])\n"
        "metrics.DEAD_LETTERS.labels('internal').inc()\n"
        "assert metrics.SCENES.labels('updated')._value.get() == 1\n"
    )
    full = {**os.environ, **worker_env(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], env=full, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert metric_files(tmp_path / "prom") == []


def test_dead_worker_processes_series_are_dropped_at_scrape(start_worker, tmp_path):
    port = free_port()
    start_worker(metrics_port=port)
    wait_for(lambda: scrape(port), timeout=30, message="the exporter")
    (run_dir,) = (tmp_path / "prom").iterdir()
    dead_pid = 2 ** 22 + 17  # above any pid_max default: never a running process
    (run_dir / f"gauge_liveall_{dead_pid}.db").write_bytes((run_dir / next(
        f for f in os.listdir(run_dir) if f.startswith("gauge_liveall_"))).read_bytes())
    time.sleep(0.1)
    scrape(port)
    assert not (run_dir / f"gauge_liveall_{dead_pid}.db").exists()
