"""Metric bookkeeping without a broker: labelled series at 0, internal dead letters counted, dead processes forgotten."""

from __future__ import annotations

import os

import dramatiq
import pytest

from actors import metrics
from actors.boot import forget_dead_breakers
from actors.exporter import RUN_PREFIX, mark_dead_processes, pid_alive, remove_dead_runs
from actors.runtime import build_runtime
from pipeline.config import explicit_settings
from pipeline.errors import ErrorClass
from pipeline.models import Outcome
from pipeline.state import StateStore

DEAD_PID = 2 ** 22 + 11  # above Linux's largest pid_max: never a running process


def sample(counter, *labels: str) -> float:
    return float(counter.labels(*labels)._value.get())


def test_initialise_creates_every_labelled_series_at_zero():
    metrics.initialise()
    exported = {tuple(s.labels.values()) for s in metrics.DEAD_LETTERS.collect()[0].samples if s.name.endswith("_total")}
    assert {(error_class.value,) for error_class in ErrorClass} <= exported
    outcomes = {s.labels["outcome"] for s in metrics.SCENES.collect()[0].samples}
    assert {outcome.value for outcome in Outcome} <= outcomes
    failures = {tuple(s.labels.values()) for s in metrics.FAILURES.collect()[0].samples if s.name.endswith("_total")}
    assert ("internal", "dead_letter", "fetch") in failures and ("plex_down", "defer", "performers") in failures


@pytest.mark.parametrize("payload", [{"jobs": "not a list"}, {"scene_id": None}, {"jobs": [{"scene_id": "1", "attempts": "x"}]}],
                         ids=["jobs_not_a_list", "no_scene_id", "invalid_job"])
def test_a_malformed_message_is_dead_lettered_and_counted_as_internal(payload, tmp_path):
    runtime = build_runtime(explicit_settings(broker_url="stub://", data_dir=tmp_path))
    before = sample(metrics.DEAD_LETTERS, "internal")
    runtime.stage_actors["match"].send_with_options(kwargs=payload)
    worker = dramatiq.Worker(runtime.broker, worker_timeout=50)
    worker.start()
    try:
        runtime.broker.join(runtime.stage_actors["match"].queue_name, timeout=10_000)
        worker.join()
    finally:
        worker.stop()
    assert [entry.error_class for entry in runtime.dlq().entries()] == ["internal"]
    assert sample(metrics.DEAD_LETTERS, "internal") == before + 1


def test_pid_alive_tells_a_running_process_from_a_gone_one():
    assert pid_alive(os.getpid()) and not pid_alive(DEAD_PID)


def test_folders_of_dead_runs_are_removed_and_the_live_run_kept(tmp_path):
    live, dead = tmp_path / f"{RUN_PREFIX}{os.getpid()}", tmp_path / f"{RUN_PREFIX}{DEAD_PID}"
    live.mkdir()
    dead.mkdir()
    (tmp_path / "counter_123.db").write_bytes(b"")  # the old single-folder layout
    remove_dead_runs(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]


def test_live_gauge_files_of_dead_processes_are_dropped(tmp_path):
    for name in (f"gauge_liveall_{DEAD_PID}.db", f"gauge_liveall_{os.getpid()}.db", f"counter_{DEAD_PID}.db"):
        (tmp_path / name).write_bytes(b"")
    assert mark_dead_processes(str(tmp_path)) == [DEAD_PID]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"counter_{DEAD_PID}.db", f"gauge_liveall_{os.getpid()}.db"]


def test_breaker_rows_of_dead_processes_on_this_host_are_forgotten(tmp_path):
    store = StateStore(tmp_path)
    store.save_breaker(f"here:{DEAD_PID}", "open", 5, 1.0, "Plex down")
    store.save_breaker(f"here:{os.getpid()}", "closed", 0, None, None)
    store.save_breaker(f"elsewhere:{DEAD_PID}", "open", 5, 1.0, "Plex down")
    assert forget_dead_breakers(store, "here") == [f"here:{DEAD_PID}"]
    assert sorted(row["owner"] for row in store.breakers()) == [f"elsewhere:{DEAD_PID}", f"here:{os.getpid()}"]
