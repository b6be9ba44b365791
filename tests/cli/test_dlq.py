"""`stash2plex dlq list|show|replay|purge` on entries published as the actors publish them."""

from __future__ import annotations

import pytest

from tests.cli.conftest import dlq_ids, plex_item_for, publish_dead_letter, queued_jobs
from tests.conftest import wait_for

pytestmark = pytest.mark.rabbitmq

ENTRY_KEYS = {"id": str, "scene_id": str, "stage": str, "actor": str, "error_class": str, "message": str,
              "reason": str, "attempts": int, "deferrals": int, "first_failure": (float, type(None)),
              "last_failure": (float, type(None)), "dead_lettered_at": float, "age_seconds": float,
              "count": int, "first_seen": float, "last_seen": float}


def test_dlq_list_json_lists_every_entry_with_typed_keys(cli, queue_prefix):
    first = publish_dead_letter(queue_prefix, "1")
    second = publish_dead_letter(queue_prefix, "2", stage="match", error_class="not_in_plex")
    result = cli("dlq", "list", "--json")
    assert result.returncode == 0, result.output
    listing = result.json()
    assert listing["total"] == 2 and listing["count"] == 2
    assert [e["id"] for e in listing["entries"]] == [first.id, second.id]
    for entry in listing["entries"]:
        for key, kind in ENTRY_KEYS.items():
            assert isinstance(entry[key], kind), f"{key}={entry[key]!r}"
        assert "job" not in entry


def test_dlq_list_shows_a_scene_dead_lettered_twice_once_with_its_count(cli, queue_prefix):
    publish_dead_letter(queue_prefix, "1")
    publish_dead_letter(queue_prefix, "1", stage="match", error_class="not_in_plex")
    listing = cli("dlq", "list", "--json").json()
    [entry] = listing["entries"]
    assert entry["count"] == 2 and entry["error_class"] == "not_in_plex" and entry["first_seen"] <= entry["last_seen"]
    table = cli("dlq", "list")
    assert table.returncode == 0 and "times" in table.stdout and "first seen" in table.stdout


def test_dlq_list_accepts_json_as_a_global_option(cli, queue_prefix):
    entry = publish_dead_letter(queue_prefix, "1")
    result = cli("--json", "dlq", "list")
    assert result.returncode == 0 and [e["id"] for e in result.json()["entries"]] == [entry.id]


def test_dlq_list_filters_by_error_class_and_limit(cli, queue_prefix):
    publish_dead_letter(queue_prefix, "1", error_class="permanent")
    publish_dead_letter(queue_prefix, "2", error_class="not_in_plex")
    publish_dead_letter(queue_prefix, "3", error_class="not_in_plex")
    listing = cli("dlq", "list", "--json", "--error-class", "not_in_plex", "--limit", "1").json()
    assert listing["total"] == 2 and [e["scene_id"] for e in listing["entries"]] == ["2"]


def test_dlq_list_prints_a_table_for_people(cli, queue_prefix):
    entry = publish_dead_letter(queue_prefix, "5", error_class="transient")
    result = cli("dlq", "list")
    assert result.returncode == 0
    assert entry.id in result.stdout and "transient" in result.stdout


def test_dlq_show_prints_the_entry_and_the_job_a_replay_would_send(cli, queue_prefix):
    entry = publish_dead_letter(queue_prefix, "6", stage="push")
    shown = cli("dlq", "show", entry.id[:6], "--json").json()
    assert shown["id"] == entry.id and shown["stage"] == "push" and shown["actor"] == "push_metadata"
    assert shown["job"]["scene_id"] == "6"


def test_dlq_show_of_an_unknown_id_exits_1(cli, queue_prefix):
    publish_dead_letter(queue_prefix, "6")
    result = cli("dlq", "show", "000000000000")
    assert result.returncode == 1 and "no DLQ entry" in result.stderr


def test_dlq_replay_resends_the_job_to_fetch_scene_with_attempts_reset_then_removes_it(cli, queue_prefix):
    entry = publish_dead_letter(queue_prefix, "7", stage="match")  # replayed from Stash's state of now
    result = cli("dlq", "replay", entry.id)
    assert result.returncode == 0, result.output
    [[job]] = queued_jobs(f"{queue_prefix}.fetch_scene")
    assert job["scene_id"] == "7"
    assert job.get("attempts", 0) == 0 and job.get("deferrals", 0) == 0 and "last_error" not in job
    assert dlq_ids(queue_prefix) == []


def test_dlq_replay_by_error_class_keeps_the_other_entries(cli, queue_prefix):
    publish_dead_letter(queue_prefix, "1", error_class="permanent")
    kept = publish_dead_letter(queue_prefix, "2", error_class="not_in_plex")
    result = cli("dlq", "replay", "--error-class", "permanent")
    assert result.returncode == 0, result.output
    assert [[j["scene_id"] for j in batch] for batch in queued_jobs(f"{queue_prefix}.fetch_scene")] == [["1"]]
    assert dlq_ids(queue_prefix) == [kept.id]


def test_dlq_replay_all_brings_the_scene_to_plex_through_the_workers(cli, queue_prefix, start_worker, plex, dataset):
    publish_dead_letter(queue_prefix, "8", job={"scene_id": "8", "event": "Scene.Update.Post", "attempts": 6})
    start_worker()
    result = cli("dlq", "replay", "--all")
    assert result.returncode == 0, result.output
    scene = dataset.scenes[7]
    wait_for(lambda: plex_item_for(plex, scene)["title"] == scene["title"], timeout=30, message="scene 8 in Plex")


def test_dlq_replay_of_an_unknown_id_exits_1(cli, queue_prefix):
    result = cli("dlq", "replay", "feedfacecafe")
    assert result.returncode == 1 and "feedfacecafe" in result.stderr


def test_dlq_replay_without_a_selection_is_a_usage_error(cli):
    assert cli("dlq", "replay").returncode == 2


def test_dlq_purge_asks_first_and_keeps_everything_on_no(cli, queue_prefix):
    publish_dead_letter(queue_prefix, "1")
    result = cli("dlq", "purge", stdin="n\n")
    assert result.returncode == 1
    assert "Delete 1 DLQ entry" in result.stdout
    assert len(dlq_ids(queue_prefix)) == 1


def test_dlq_purge_with_yes_deletes_every_entry(cli, queue_prefix):
    publish_dead_letter(queue_prefix, "1")
    publish_dead_letter(queue_prefix, "2")
    result = cli("dlq", "purge", "--yes")
    assert result.returncode == 0 and "Purged 2 entries" in result.stdout
    assert dlq_ids(queue_prefix) == []


def test_dlq_purge_older_than_keeps_recent_entries(cli, queue_prefix):
    publish_dead_letter(queue_prefix, "1", age_days=40)
    recent = publish_dead_letter(queue_prefix, "2", age_days=1)
    result = cli("dlq", "purge", "--older-than", "30d", "--yes")
    assert result.returncode == 0 and "Purged 1 entry" in result.stdout
    assert dlq_ids(queue_prefix) == [recent.id]
