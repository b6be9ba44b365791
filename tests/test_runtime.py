"""The composition root and the RetryPolicy middleware, on dramatiq's in-process broker with the emulators.

`build_runtime(settings)` is given its settings (no environment), may be built several times in one
process, and opens no connection until something is sent. Every failed job goes through the one
`RetryPolicy` middleware: retried at the stage it restarts at, dead-lettered with its failure
record once exhausted, a malformed message dead-lettered at once.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest

from actors.runtime import Runtime, build_runtime
from pipeline.config import Settings, explicit_settings
from pipeline.models import Job
from tests.conftest import PLEX_TOKEN, ROOT, STASH_KEY, wait_for


@pytest.fixture
def stub_settings(plex, stash, tmp_path: Path):
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "broker_url": "stub://", "plex_url": plex.url, "plex_token": PLEX_TOKEN, "stash_url": stash.url,
            "stash_api_key": STASH_KEY, "data_dir": tmp_path / "data", "plex_connect_timeout": 2,
            "plex_read_timeout": 5, "retry_base_seconds": 0.05, "not_found_base_seconds": 0.05,
        }
        return explicit_settings(**{**values, **overrides})

    return build


@pytest.fixture
def running(stub_settings) -> Iterator:
    """`running(**settings)` -> a runtime on the in-process broker with a worker consuming its queues."""
    started: list[tuple[Runtime, dramatiq.Worker]] = []

    def start(**overrides: Any) -> Runtime:
        runtime = build_runtime(stub_settings(**overrides))
        worker = dramatiq.Worker(runtime.broker, worker_threads=2, worker_timeout=50)
        worker.start()
        started.append((runtime, worker))
        return runtime

    yield start
    for runtime, worker in started:
        worker.stop(timeout=5000)
        runtime.close()


def item_of(plex, dataset, scene_id: str) -> dict:
    scene = next(s for s in dataset.scenes if s["id"] == scene_id)
    return plex.item(plex.rating_key_for_file(scene["files"][0]["path"]))


def test_a_retried_sync_performers_reads_the_plex_item_again(running, plex, dataset):
    rating_key = plex.rating_key_for_file(dataset.scenes[0]["files"][0]["path"])
    plex.faults.fail_next(1, 503, path_prefix="/library/sections/1/all", method="PUT")
    runtime = running()
    runtime.send("fetch", [Job(scene_id="1")])
    wait_for(lambda: len(plex.edit_requests()) == 2, timeout=30, message="the edit retried after its 503")

    kinds = [(plex.route_name(r), r.path) for r in list(plex.requests)]
    edits = [i for i, (kind, _path) in enumerate(kinds) if kind == "edit"]
    reads_between = [path for kind, path in kinds[edits[0] + 1:edits[1]]
                     if kind.startswith("/library/metadata") and str(rating_key) in path]
    assert reads_between, "the retry wrote from the snapshot of the failed attempt"
    assert item_of(plex, dataset, "1")["title"] == dataset.scenes[0]["title"]


def test_a_job_that_keeps_failing_is_dead_lettered_once_with_its_failure_record(running, plex):
    plex.faults.fail_next(20, 503, path_prefix="/library/sections/1/all", method="PUT")
    runtime = running(max_retries=1, breaker_failures=100)
    runtime.send("fetch", [Job(scene_id="2")])
    wait_for(lambda: runtime.dlq().count() == 1, timeout=30, message="one DLQ entry")

    [entry] = runtime.dlq().entries()
    assert (entry.scene_id, entry.stage, entry.actor, entry.error_class) == ("2", "performers", "sync_performers", "transient")
    assert entry.attempts == 2 and "503" in entry.message and "1 retries" in entry.reason
    assert entry.first_failure is not None and entry.last_failure >= entry.first_failure
    assert runtime.engine().store.outcomes_since(0)["2"][0] == "dead_letter"
    assert len(plex.edit_requests()) == 2


def test_a_malformed_message_is_dead_lettered_without_retries(running):
    runtime = running()
    runtime.stage_actors["match"].send_with_options(kwargs={"jobs": [{"scene_id": "5", "attempts": "many"}]})
    wait_for(lambda: runtime.dlq().count() == 1, timeout=30, message="the malformed message in the DLQ")

    [entry] = runtime.dlq().entries()
    assert (entry.scene_id, entry.stage, entry.error_class, entry.attempts) == ("5", "match", "internal", 0)
    assert "ValidationError" in entry.message


def test_good_jobs_of_a_batch_go_on_while_a_failing_one_is_retried(running, plex, dataset, stash):
    stash.faults.fail_next(1, 500, path_prefix="/graphql")
    runtime = running()
    runtime.send("fetch", [Job(scene_id="3"), Job(scene_id="4")])
    wait_for(lambda: all(item_of(plex, dataset, i)["title"] == dataset.scenes[int(i) - 1]["title"] for i in ("3", "4")),
             timeout=30, message="both scenes in Plex after the Stash 500 was retried")
    assert runtime.dlq().count() == 0


def test_two_runtimes_in_one_process_keep_their_own_broker_and_queues(stub_settings):
    first = build_runtime(stub_settings(queue_prefix="alpha"))
    second = build_runtime(stub_settings(queue_prefix="beta"))
    assert first.broker is not second.broker
    assert first.stage_actors["fetch"].queue_name == "alpha.fetch_scene"
    assert second.stage_actors["performers"].queue_name == "beta.sync_performers"
    assert second.maintenance_actors["reconcile_library"].queue_name == "beta.maintenance"


def test_building_a_runtime_for_an_unreachable_rabbitmq_opens_no_connection(stub_settings, closed_port):
    runtime = build_runtime(stub_settings(broker_url=f"amqp://guest:guest@127.0.0.1:{closed_port}/"))
    assert sorted(runtime.stage_actors) == ["fetch", "match", "performers", "push"]
    assert runtime.dlq() is not None  # made, not connected: the DLQ connects on first use


def test_importing_any_module_of_pipeline_plugin_and_ops_opens_no_connection(tmp_path: Path):
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for package in ("pipeline", "plugin", "ops")
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py" and "bench" not in path.parts and path.name != "stash2plex_entry.py"
    )
    probe = (
        "import socket, importlib, sys\n"
        "attempts = []\n"
        "real = socket.socket.connect\n"
        "def connect(self, address): attempts.append(address); return real(self, address)\n"
        "socket.socket.connect = connect\n"
        "socket.socket.connect_ex = lambda self, address: attempts.append(address) or 111\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(len(attempts), attempts)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "STASH2PLEX_STASH_URL": "http://127.0.0.1:9", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("0 "), proc.stdout
    assert len(modules) > 20


def test_the_worker_entry_point_builds_its_runtime_from_the_environment_without_asking_stash(tmp_path, hanging_url):
    """Stash accepts the connection and never answers (timeout 300 s): the import must not wait on it."""
    probe = "import actors; print(actors.fetch_scene.queue_name, actors.runtime.settings.stash_url)"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "STASH2PLEX_QUEUE_PREFIX": "fromenv",
           "STASH2PLEX_STASH_URL": hanging_url, "STASH2PLEX_STASH_TIMEOUT": "300",
           "dramatiq_prom_db": str(tmp_path / "prom")}
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["fromenv.fetch_scene", hanging_url]
