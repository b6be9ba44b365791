"""Running unattended (issue 10), on the real RabbitMQ with `dramatiq actors` workers and the emulators:
one DLQ entry per scene, scenes without files skipped, a Stash outage deferred, several hosts alike."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ops.sync import enqueue as enqueue_bulk
from ops.sync import read_outcomes
from pipeline.config import explicit_settings
from tests.conftest import RABBIT_URL, WorkerProcess, emulator_env, wait_for
from tests.emulators.sample_data import make_plex_item
from tests.test_actor_chain import dlq_entries, queue_depth, synced

pytestmark = pytest.mark.rabbitmq
STAGE_QUEUES = ("fetch_scene", "match_plex", "push_metadata", "sync_performers")
AMBIGUOUS, NO_FILE = "7", "3"


@pytest.fixture
def hosts(plex, stash, tmp_path, queue_prefix):
    """Start worker groups ("hosts"), each with a data_dir of its own, on the same queues."""
    started: list[WorkerProcess] = []

    def start(name: str = "host-a", processes: int = 1, threads: int = 4, **extra) -> Path:
        data_dir = tmp_path / name
        env = emulator_env(plex, stash, data_dir, queue_prefix=queue_prefix, broker_url=RABBIT_URL,
                           retry_base_seconds=0.2, not_found_base_seconds=0.2, **extra)
        env.update({"dramatiq_prom_db": str(tmp_path / f"prom-{name}"), "STASH2PLEX_METRICS_PORT": "0"})
        started.append(WorkerProcess(env, processes, threads, log_path=tmp_path / f"{name}.log").start())
        return data_dir

    yield start
    for worker in started:
        worker.stop()


def sync_all(queue_prefix: str, scene_ids: list[str]) -> None:
    """What `stash2plex sync --all` sends: batches of `batch_size` jobs to fetch_scene."""
    enqueue_bulk(explicit_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix, batch_size=5), scene_ids)


def settled(queue_prefix: str, data_dirs: list[Path], scene_ids: list[str], since: float) -> bool:
    """Every scene has an outcome recorded since `since` (on some host) and no stage queue holds work."""
    seen: dict[str, tuple[str, str]] = {}
    for data_dir in data_dirs:
        seen.update(read_outcomes(data_dir, since))
    idle = all(queue_depth(f"{queue_prefix}.{q}") == 0 and queue_depth(f"{queue_prefix}.{q}.DQ") == 0 for q in STAGE_QUEUES)
    return idle and set(scene_ids) <= set(seen)


def outcomes(data_dirs: list[Path], since: float) -> dict[str, str]:
    seen: dict[str, str] = {}
    for data_dir in data_dirs:
        seen.update({scene: outcome for scene, (outcome, _detail) in read_outcomes(data_dir, since).items()})
    return seen


def writes(plex) -> int:
    return len(plex.edit_requests()) + len(plex.poster_uploads())


def make_one_scene_ambiguous(plex, dataset) -> None:
    path = next(s for s in dataset.scenes if s["id"] == AMBIGUOUS)["files"][0]["path"]
    plex.add_item(make_plex_item(900, 9000, "/data/other/" + path.rsplit("/", 1)[1]))


def test_three_full_syncs_leave_only_the_ambiguous_scene_in_the_dlq_once(hosts, plex, stash, dataset, queue_prefix):
    make_one_scene_ambiguous(plex, dataset)
    stash.update_scene(AMBIGUOUS, files=["/elsewhere/" + next(s for s in dataset.scenes if s["id"] == AMBIGUOUS)["files"][0]["basename"]])
    stash.update_scene(NO_FILE, files=[])
    data_dir = hosts()
    ids = [s["id"] for s in dataset.scenes]
    for run in range(1, 4):
        since = time.time()
        sync_all(queue_prefix, ids)
        wait_for(lambda: settled(queue_prefix, [data_dir], ids, since), timeout=90, message=f"full sync {run} settled")
        ended = outcomes([data_dir], since)
        assert ended[NO_FILE] == "skipped" and ended[AMBIGUOUS] == "dead_letter"
    wait_for(lambda: len(dlq_entries(queue_prefix)) == 1, timeout=60, message="the workers' DLQ tidy")
    [entry] = dlq_entries(queue_prefix)
    assert entry.scene_id == AMBIGUOUS and entry.count == 3 and entry.error_class == "permanent"
    assert entry.first_seen < entry.last_seen


def test_a_later_success_removes_the_scenes_dlq_entry(hosts, plex, stash, dataset, queue_prefix):
    scene = next(s for s in dataset.scenes if s["id"] == AMBIGUOUS)
    make_one_scene_ambiguous(plex, dataset)
    stash.update_scene(AMBIGUOUS, files=["/elsewhere/" + scene["files"][0]["basename"]])
    data_dir = hosts()
    since = time.time()
    sync_all(queue_prefix, [AMBIGUOUS])
    wait_for(lambda: queue_depth(f"{queue_prefix}.dlq") == 1, timeout=60, message="the ambiguous scene dead-lettered")
    stash.update_scene(AMBIGUOUS, files=scene["files"])  # the exact path now tells the two items apart
    sync_all(queue_prefix, [AMBIGUOUS])
    wait_for(lambda: outcomes([data_dir], since).get(AMBIGUOUS) == "updated", timeout=60, message="the scene synced")
    wait_for(lambda: queue_depth(f"{queue_prefix}.dlq") == 0, timeout=30, message="its DLQ entry removed")


def test_a_stash_outage_longer_than_the_retry_budget_is_deferred_and_all_scenes_sync(hosts, plex, stash, dataset, queue_prefix):
    data_dir = hosts(max_retries=1, breaker_failures=2, breaker_reset_seconds=1, stash_timeout=2)
    ids = [s["id"] for s in dataset.scenes]
    stash.go_down()
    since = time.time()
    sync_all(queue_prefix, ids)
    time.sleep(8)  # ~8 breaker periods, far past what one retry would last
    assert dlq_entries(queue_prefix) == []
    stash.come_up()
    wait_for(lambda: synced(plex, dataset, ids), timeout=90, message="every scene after Stash came back")
    wait_for(lambda: settled(queue_prefix, [data_dir], ids, since), timeout=30, message="the chain settled")
    assert dlq_entries(queue_prefix) == []


def test_stash_answering_503_for_a_while_is_deferred_not_dead_lettered(hosts, plex, stash, dataset, queue_prefix):
    hosts(max_retries=1, breaker_failures=2, breaker_reset_seconds=1)
    stash.faults.fail_next(40, 503, path_prefix="/graphql")
    ids = [s["id"] for s in dataset.scenes]
    sync_all(queue_prefix, ids)
    wait_for(lambda: synced(plex, dataset, ids), timeout=120, message="every scene after the 503s")
    assert dlq_entries(queue_prefix) == []


def test_two_hosts_write_nothing_when_an_unchanged_library_is_synced_again(hosts, plex, stash, dataset, queue_prefix):
    host_dirs = [hosts("host-a", processes=1, threads=2), hosts("host-b", processes=1, threads=2)]
    ids = [s["id"] for s in dataset.scenes]
    since = time.time()
    for start in range(0, len(ids), 2):  # small messages, so both hosts take part
        sync_all(queue_prefix, ids[start:start + 2])
    wait_for(lambda: settled(queue_prefix, host_dirs, ids, since), timeout=90, message="first sync settled")
    assert synced(plex, dataset, ids)
    assert all(read_outcomes(d, since) for d in host_dirs), "both hosts synced scenes"
    written = writes(plex)
    assert written >= len(ids)
    for _rerun in range(2):
        since = time.time()
        for start in range(0, len(ids), 2):
            sync_all(queue_prefix, ids[start:start + 2])
        wait_for(lambda: settled(queue_prefix, host_dirs, ids, since), timeout=90, message="rerun settled")
        assert set(outcomes(host_dirs, since).values()) == {"unchanged"}
    assert writes(plex) == written
