"""`stash2plex reconcile`: categories, differing fields, --missing-only, --scope, and what it enqueues."""

from __future__ import annotations

import pytest

from pipeline.inline import run_inline
from pipeline.sync import SyncEngine
from tests.cli.conftest import queued_jobs
from tests.emulators.sample_data import make_plex_item


@pytest.fixture
def synced(make_settings, data_dir):
    """Sync some scenes inline first, with the CLI's data_dir (what stash2plex wrote is remembered there)."""

    def sync(*scene_ids: str) -> None:
        run_inline(SyncEngine.from_settings(make_settings(data_dir=data_dir)), scene_ids=list(scene_ids))

    return sync


def test_reconcile_dry_run_puts_every_scene_in_one_category(cli, synced, stash, plex, dataset):
    synced("1", "2", "3")
    stash.update_scene("6", files=["/data/videos/never_scanned.mp4"])
    stash.update_scene("7", files=["/elsewhere/scene_000007.mp4"])
    plex.add_item(make_plex_item(900, 9000, "/data/videos/copy/scene_000007.mp4"))
    result = cli("reconcile", "--dry-run", "--json")
    assert result.returncode == 0, result.output
    report = result.json()
    assert report["counts"] == {"in_sync": 3, "not_in_plex": 1, "ambiguous": 1, "differs": len(dataset.scenes) - 5}
    assert [s["scene_id"] for s in report["not_in_plex"]] == ["6"]
    assert [s["scene_id"] for s in report["ambiguous"]] == ["7"] and "scene_000007.mp4" in report["ambiguous"][0]["detail"]
    assert report["queued"] == 0


def test_reconcile_names_the_fields_that_differ(cli, synced, stash):
    synced(*[str(i) for i in range(1, 21)])
    stash.update_scene("2", title="Renamed in Stash")
    report = cli("reconcile", "--dry-run", "--json").json()
    assert report["differs"] == [{"scene_id": "2", "fields": ["title"], "detail": ""}]


def test_reconcile_prints_a_summary_table_for_people(cli, synced):
    synced("1")
    result = cli("reconcile", "--dry-run")
    assert result.returncode == 0, result.output
    for label in ("not in Plex", "ambiguous", "differs", "in sync"):
        assert label in result.stdout
    assert "Dry run: 19 differing scene(s) not queued" in result.stdout


def test_reconcile_missing_only_skips_scenes_stash2plex_wrote_before(cli, synced, dataset):
    synced("1", "2")
    report = cli("reconcile", "--missing-only", "--dry-run", "--json").json()
    assert report["skipped_written"] == 2
    assert report["counts"]["differs"] == len(dataset.scenes) - 2
    assert {"1", "2"}.isdisjoint(s["scene_id"] for s in report["differs"])


def test_reconcile_scope_24h_compares_only_recently_updated_scenes(cli, stash):
    stash.update_scene("4", title="Fresh edit")
    report = cli("reconcile", "--scope", "24h", "--dry-run", "--json").json()
    assert report["scanned"] == 1 and [s["scene_id"] for s in report["differs"]] == ["4"]


def test_reconcile_dry_run_writes_nothing_to_plex(cli, plex):
    cli("reconcile", "--dry-run")
    assert plex.edit_requests() == [] and plex.poster_uploads() == []


@pytest.mark.rabbitmq
def test_reconcile_enqueues_the_differing_scenes_as_fetch_scene_batches(cli, synced, queue_prefix, dataset):
    synced("1", "2", "3")
    result = cli("reconcile", STASH2PLEX_BATCH_SIZE="10")
    assert result.returncode == 0, result.output
    batches = queued_jobs(f"{queue_prefix}.fetch_scene")
    assert [len(b) for b in batches] == [10, 7]
    ids = sorted(int(j["scene_id"]) for b in batches for j in b)
    assert ids == list(range(4, len(dataset.scenes) + 1))
    assert all(j["event"] == "reconcile" for b in batches for j in b)
