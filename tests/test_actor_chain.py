"""The actor chain on the real RabbitMQ, with `dramatiq actors` worker processes and the emulators."""

from __future__ import annotations

import json
import time

import pika
import pytest
from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from pipeline import rabbit
from pipeline.config import explicit_settings
from pipeline.dlq import DlqEntry
from tests.conftest import (
    PLEX_TOKEN,
    RABBIT_URL,
    STASH_KEY,
    WorkerProcess,
    emulator_env,
    wait_for,
)

pytestmark = pytest.mark.rabbitmq


def enqueue(prefix: str, scene_ids: list[str], event: str = "Scene.Update.Post") -> None:
    """Publish fetch_scene messages as the hook does: one per scene."""
    broker = RabbitmqBroker(url=RABBIT_URL, confirm_delivery=True)
    try:
        for scene_id in scene_ids:
            broker.enqueue(Message(queue_name=f"{prefix}.fetch_scene", actor_name="fetch_scene",
                                   args=(scene_id, event), kwargs={}, options={}))
    finally:
        broker.close()


def dlq_entries(prefix: str) -> list[DlqEntry]:
    connection = pika.BlockingConnection(pika.URLParameters(RABBIT_URL))
    channel = connection.channel()
    entries = []
    try:
        while True:
            method, _props, body = channel.basic_get(f"{prefix}.dlq", auto_ack=False)
            if method is None:
                break
            entries.append(DlqEntry.model_validate(json.loads(body)))
    except pika.exceptions.ChannelClosedByBroker:
        return []  # no DLQ declared yet: nothing was dead-lettered
    finally:
        if connection.is_open:
            connection.close()
    return entries


def queue_depth(name: str) -> int:
    return rabbit.queue_depth(explicit_settings(broker_url=RABBIT_URL), name)


def synced(plex, dataset, scene_ids) -> bool:
    by_id = {s["id"]: s for s in dataset.scenes}
    return all(plex.item(plex.rating_key_for_file(by_id[i]["files"][0]["path"]))["title"] == by_id[i]["title"]
               for i in scene_ids)


@pytest.fixture
def worker_env(plex, stash, tmp_path, queue_prefix):
    def build(**extra):
        env = emulator_env(plex, stash, tmp_path / "data", queue_prefix=queue_prefix, broker_url=RABBIT_URL,
                           retry_base_seconds=0.2, not_found_base_seconds=0.2, **extra)
        env["dramatiq_prom_db"] = str(tmp_path / "prom")
        env["STASH2PLEX_METRICS_PORT"] = "0"
        return env

    return build


@pytest.fixture
def start_worker(worker_env, tmp_path):
    started: list[WorkerProcess] = []

    def start(processes: int = 1, threads: int = 4, **extra) -> WorkerProcess:
        worker = WorkerProcess(worker_env(**extra), processes, threads, log_path=tmp_path / "worker.log").start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def test_hook_messages_flow_through_the_four_actors_into_plex(start_worker, plex, stash, dataset, queue_prefix):
    start_worker()
    ids = [s["id"] for s in dataset.scenes]
    enqueue(queue_prefix, ids)
    wait_for(lambda: synced(plex, dataset, ids), timeout=60, message="every scene in Plex")
    assert dlq_entries(queue_prefix) == []
    assert all(queue_depth(f"{queue_prefix}.{a}.XQ") == 0 for a in ("fetch_scene", "match_plex", "push_metadata", "sync_performers"))


def test_a_burst_of_events_for_one_scene_sends_one_edit(start_worker, plex, stash, dataset, queue_prefix):
    start_worker()
    enqueue(queue_prefix, ["4"] * 10)
    wait_for(lambda: synced(plex, dataset, ["4"]), timeout=60, message="scene 4 in Plex")
    time.sleep(1.0)
    assert len(plex.edit_requests()) == 1


def test_transient_faults_are_retried_until_success(start_worker, plex, stash, dataset, queue_prefix):
    plex.faults.fail_next(2, 503, path_prefix="/library/sections/1/all", method="PUT")
    start_worker()
    enqueue(queue_prefix, ["1"])
    wait_for(lambda: synced(plex, dataset, ["1"]), timeout=60, message="scene 1 in Plex after retries")
    assert dlq_entries(queue_prefix) == []


def test_a_permanent_error_goes_to_the_dlq_with_its_reason(start_worker, plex, stash, dataset, queue_prefix):
    plex.faults.fail_next(1, 400, path_prefix="/library/sections/1/all", method="PUT")
    start_worker()
    enqueue(queue_prefix, ["2"])
    wait_for(lambda: queue_depth(f"{queue_prefix}.dlq") == 1, timeout=60, message="one DLQ entry")
    [entry] = dlq_entries(queue_prefix)
    assert entry.scene_id == "2" and entry.error_class == "permanent" and entry.stage == "performers"
    assert entry.actor == "sync_performers" and entry.attempts == 0
    assert "400" in entry.message and entry.first_failure and entry.last_failure
    assert entry.job["scene_id"] == "2"
    raw = entry.model_dump_json()
    assert PLEX_TOKEN not in raw and STASH_KEY not in raw


def test_a_scene_plex_never_gets_is_dead_lettered_as_not_in_plex(start_worker, plex, stash, dataset, queue_prefix):
    stash.update_scene("6", files=["/data/videos/never_scanned.mp4"])
    start_worker(not_found_retries=2)
    enqueue(queue_prefix, ["6"])
    wait_for(lambda: queue_depth(f"{queue_prefix}.dlq") == 1, timeout=60, message="not-in-Plex DLQ entry")
    [entry] = dlq_entries(queue_prefix)
    assert entry.error_class == "not_in_plex" and entry.stage == "match" and entry.attempts == 3


def test_plex_down_longer_than_the_retry_budget_defers_then_syncs_everything(start_worker, plex, stash, dataset, queue_prefix):
    start_worker(max_retries=1, breaker_failures=2, breaker_reset_seconds=1)
    plex.go_down()
    ids = [s["id"] for s in dataset.scenes]
    enqueue(queue_prefix, ids)
    time.sleep(8)  # ~8 breaker periods, far past what one retry would last
    assert dlq_entries(queue_prefix) == []
    plex.come_up()
    wait_for(lambda: synced(plex, dataset, ids), timeout=60, message="every scene after Plex came back")
    assert dlq_entries(queue_prefix) == []


def test_a_worker_killed_mid_batch_loses_nothing(start_worker, plex, stash, queue_prefix):
    from tests.emulators.sample_data import make_dataset

    big = make_dataset(300, root="/data/videos")
    for scene in big.scenes[20:]:
        stash.add_scene(scene)
        plex.add_item(next(i for i in big.plex_items if i["files"][0] == scene["files"][0]["path"]))
    plex.faults.stall_next(10_000, delay=0.01, method="PUT")  # slow edits so the kill lands mid-work
    worker = start_worker(processes=1, threads=2)
    ids = [s["id"] for s in big.scenes]
    enqueue(queue_prefix, ids)
    wait_for(lambda: len(plex.edit_requests()) >= 30, timeout=60, message="work under way")
    worker.kill()
    assert len(plex.edit_requests()) < len(ids)
    plex.faults.clear()
    start_worker(processes=1, threads=4)
    wait_for(lambda: synced(plex, big, ids), timeout=120, message="every scene after the restart")
    assert dlq_entries(queue_prefix) == []


def enqueue_maintenance(prefix: str, actor_name: str) -> None:
    broker = RabbitmqBroker(url=RABBIT_URL, confirm_delivery=True)
    try:
        broker.enqueue(Message(queue_name=f"{prefix}.maintenance", actor_name=actor_name, args=(), kwargs={}, options={}))
    finally:
        broker.close()


def test_the_scheduled_reconcile_enqueues_every_scene_that_differs(start_worker, plex, stash, dataset, queue_prefix):
    start_worker(reconcile_scope="all")
    enqueue_maintenance(queue_prefix, "reconcile_library")
    ids = [s["id"] for s in dataset.scenes]
    wait_for(lambda: synced(plex, dataset, ids), timeout=60, message="every scene after reconcile")


def test_the_spool_flush_schedule_publishes_what_the_hook_spooled(start_worker, plex, stash, dataset, queue_prefix, tmp_path):
    from plugin.spool import append_events, has_pending

    data_dir = tmp_path / "data"
    append_events(data_dir, [("7", "Scene.Update.Post"), ("8", "Scene.Update.Post")])
    start_worker()
    enqueue_maintenance(queue_prefix, "flush_hook_spool")
    wait_for(lambda: synced(plex, dataset, ["7", "8"]), timeout=60, message="spooled scenes in Plex")
    assert not has_pending(data_dir)


def test_a_rejected_token_is_dead_lettered_and_no_secret_reaches_logs_or_the_dlq(start_worker, plex, stash, dataset, queue_prefix, tmp_path):
    plex.faults.fail_next(1, 401, path_prefix="/library/metadata")
    start_worker(log_level="DEBUG")
    enqueue(queue_prefix, ["9"])
    wait_for(lambda: queue_depth(f"{queue_prefix}.dlq") == 1, timeout=60, message="the 401 in the DLQ")
    [entry] = dlq_entries(queue_prefix)
    assert entry.error_class == "permanent" and "plex_token" in entry.message
    log = (tmp_path / "worker.log").read_text()
    assert "dead_letter" in log and "scene_id=9" in log
    for secret in (PLEX_TOKEN, STASH_KEY):
        assert secret not in log and secret not in entry.model_dump_json()


def test_a_429_is_retried_after_its_retry_after(start_worker, plex, stash, dataset, queue_prefix):
    plex.faults.rate_limit_next(1, retry_after=1, path_prefix="/library/sections/1/all")
    start_worker()
    started = time.monotonic()
    enqueue(queue_prefix, ["12"])
    wait_for(lambda: synced(plex, dataset, ["12"]), timeout=60, message="scene 12 after the 429")
    assert time.monotonic() - started >= 1.0
    assert dlq_entries(queue_prefix) == []


def test_a_malformed_message_dramatiq_gives_up_on_is_copied_to_the_dlq(start_worker, queue_prefix, plex, stash):
    broker = RabbitmqBroker(url=RABBIT_URL, confirm_delivery=True)
    try:
        broker.enqueue(Message(queue_name=f"{queue_prefix}.match_plex", actor_name="match_plex", args=(),
                               kwargs={"jobs": [{"scene_id": "5", "attempts": "many"}]}, options={}))
    finally:
        broker.close()
    start_worker()
    wait_for(lambda: queue_depth(f"{queue_prefix}.dlq") == 1, timeout=30, message="the malformed message in the DLQ")
    [entry] = dlq_entries(queue_prefix)
    assert entry.error_class == "internal" and entry.stage == "match" and entry.scene_id == "5"
    assert "ValidationError" in entry.message
