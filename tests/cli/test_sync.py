"""`stash2plex sync`: enqueue (batches of fetch_scene jobs), --wait, --inline and --dry-run."""

from __future__ import annotations

import re

import pytest

from pipeline.models import Job
from tests.cli.conftest import plex_item_for, queued_jobs


def queued(queue: str) -> list[list[Job]]:
    """The jobs of each message in `queue` (drained), as the workers read them."""
    return [[Job.model_validate(raw) for raw in batch] for batch in queued_jobs(queue)]


def row(output: str, label: str) -> int:
    """The number in the outcome table's row `label`."""
    found = re.search(rf"{re.escape(label)}\s*│\s*(\d+)", output)
    assert found, f"no row {label!r} in:\n{output}"
    return int(found.group(1))


@pytest.mark.rabbitmq
def test_sync_scene_enqueues_one_fetch_scene_message_of_cli_jobs(cli, queue_prefix):
    result = cli("sync", "--scene", "1", "2")
    assert result.returncode == 0, result.output
    [batch] = queued(f"{queue_prefix}.fetch_scene")
    assert [(job.scene_id, job.event, job.dry_run) for job in batch] == [("1", "cli", False), ("2", "cli", False)]


@pytest.mark.rabbitmq
def test_sync_all_sends_batches_of_batch_size_scene_ids(cli, queue_prefix, dataset):
    result = cli("sync", "--all", STASH2PLEX_BATCH_SIZE="8")
    assert result.returncode == 0, result.output
    batches = queued_jobs(f"{queue_prefix}.fetch_scene")
    assert [len(b) for b in batches] == [8, 8, 4]
    assert sorted(int(j["scene_id"]) for b in batches for j in b) == list(range(1, len(dataset.scenes) + 1))


@pytest.mark.rabbitmq
def test_sync_reads_the_queue_prefix_from_the_config_file(cli, queue_prefix, tmp_path):
    config = tmp_path / "s2p.toml"
    config.write_text(f'queue_prefix = "{queue_prefix}"\nbatch_size = 1\n')
    result = cli("--config", str(config), "sync", "--scene", "4", "5", STASH2PLEX_QUEUE_PREFIX=None)
    assert result.returncode == 0, result.output
    assert [[job.scene_id for job in batch] for batch in queued(f"{queue_prefix}.fetch_scene")] == [["4"], ["5"]]


@pytest.mark.rabbitmq
def test_sync_recent_enqueues_only_scenes_updated_within_the_duration(cli, queue_prefix, stash):
    stash.update_scene("3", title="Edited just now")
    result = cli("sync", "--recent", "24h")
    assert result.returncode == 0, result.output
    assert [[j["scene_id"] for j in b] for b in queued_jobs(f"{queue_prefix}.fetch_scene")] == [["3"]]


@pytest.mark.rabbitmq
def test_sync_scene_skips_ids_stash_does_not_know(cli, queue_prefix):
    result = cli("sync", "--scene", "2,999")
    assert result.returncode == 0, result.output
    assert "999" in result.stderr
    assert [[j["scene_id"] for j in b] for b in queued_jobs(f"{queue_prefix}.fetch_scene")] == [["2"]]


@pytest.mark.rabbitmq
def test_sync_wait_prints_the_outcome_table_once_the_workers_finish(cli, start_worker, plex, dataset):
    start_worker()
    result = cli("sync", "--all", "--wait", "--timeout", "60")
    assert result.returncode == 0, result.output
    assert row(result.stdout, "updated") == len(dataset.scenes)
    for label in ("unchanged", "not found", "failed", "dead-lettered"):
        assert row(result.stdout, label) == 0
    assert plex_item_for(plex, dataset.scenes[0])["title"] == dataset.scenes[0]["title"]


@pytest.mark.rabbitmq
def test_sync_wait_counts_a_dead_lettered_scene_and_exits_1(cli, start_worker, plex):
    plex.faults.fail_next(1, 400, path_prefix="/library/sections/1/all", method="PUT")
    start_worker()
    result = cli("sync", "--scene", "2", "--wait", "--timeout", "60")
    assert result.returncode == 1, result.output
    assert row(result.stdout, "dead-lettered") == 1
    assert "400" in result.stdout


@pytest.mark.rabbitmq
def test_sync_wait_reports_scenes_the_workers_skipped(cli, start_worker):
    start_worker(STASH2PLEX_ENABLED="false")  # the workers skip every scene, and record that
    result = cli("sync", "--scene", "1", "--wait", "--timeout", "60")
    assert result.returncode == 0, result.output
    assert row(result.stdout, "skipped") == 1


@pytest.mark.rabbitmq
def test_sync_wait_times_out_without_workers_and_exits_1(cli):
    result = cli("sync", "--scene", "1", "--wait", "--timeout", "2")
    assert result.returncode == 1, result.output
    assert "timed out" in result.stderr and "worker" in result.stderr


def test_sync_inline_writes_to_plex_without_any_broker(cli, plex, dataset, closed_port):
    result = cli("sync", "--scene", "1", "--inline", STASH2PLEX_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{closed_port}/")
    assert result.returncode == 0, result.output
    assert row(result.stdout, "updated") == 1
    assert plex_item_for(plex, dataset.scenes[0])["title"] == dataset.scenes[0]["title"]


def test_sync_dry_run_prints_the_field_diff_and_writes_nothing_to_plex(cli, plex, dataset):
    result = cli("sync", "--scene", "1", "--dry-run")
    assert result.returncode == 0, result.output
    scene = dataset.scenes[0]
    diff_line = next(line for line in result.stdout.splitlines() if "│ title" in line)
    assert "scene_000001" in diff_line and scene["title"] in diff_line
    assert "nothing was written" in result.stdout
    assert plex.edit_requests() == [] and plex.poster_uploads() == []
    assert plex_item_for(plex, scene)["title"] == "scene_000001"


def test_sync_without_a_selection_is_a_usage_error(cli):
    result = cli("sync")
    assert result.returncode == 2
    assert "--scene" in result.stderr and "Traceback" not in result.output


def test_sync_recent_rejects_a_malformed_duration(cli):
    result = cli("sync", "--recent", "yesterday")
    assert result.returncode == 2
    assert "30m, 24h or 7d" in result.stderr


def test_sync_to_the_stub_broker_outside_the_demo_exits_2_naming_broker_url(cli):
    result = cli("sync", "--all", STASH2PLEX_BROKER_URL="stub://")
    assert result.returncode == 2
    assert "broker_url" in result.stderr
