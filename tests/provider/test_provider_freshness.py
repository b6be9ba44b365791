"""The index stays fresh incrementally, survives a restart, and answers while Stash is down or hung."""

from pathlib import Path

import requests

from pipeline.provider.index import SceneIndex, Snapshot
from tests.conftest import wait_for


def test_an_edit_in_stash_reaches_the_answers_by_the_incremental_refresh(provider, stash):
    stash.update_scene("3", title="Edited in Stash", tags=["Fresh Tag"])
    wait_for(lambda: provider.metadata("3")["title"] == "Edited in Stash", timeout=20, message="the edit to show")
    assert provider.metadata("3")["Genre"] == [{"tag": "Fresh Tag"}]


def test_incremental_refreshes_ask_only_for_scenes_updated_since_the_watermark(provider, stash):
    seen = len(stash.graphql_requests())
    stash.update_scene("4", title="Another edit")
    wait_for(lambda: provider.metadata("4")["title"] == "Another edit", timeout=20, message="the edit to show")
    later = stash.graphql_requests()[seen:]
    listings = [variables for name, variables in later if name == "FindScenesPage"]
    since = [variables for name, variables in later if name == "FindScenesUpdatedSince"]
    assert since and not listings  # no full listing after the first build


def test_a_moved_file_is_matched_at_its_new_path_only(provider, stash):
    stash.update_scene("5", files=["/data/moved/renamed_5.mp4"])
    body = {"type": 1, "filename": "/data/moved/renamed_5.mp4", "includeAdult": 1}
    wait_for(lambda: provider.matched_ids(body) == ["5"], timeout=20, message="the new path to match")
    assert provider.matched_ids({"type": 1, "filename": "/data/videos/scene_000005.mp4", "includeAdult": 1}) == []


def test_a_full_rebuild_forgets_scenes_gone_from_stash(provider, stash, dataset):
    stash.reset([s for s in dataset.scenes if s["id"] != "9"])
    provider.service.index.built_at = 1.0  # long ago: the next refresh lists everything
    provider.service.refresh_once()
    assert provider.get("/library/metadata/9").status_code == 404
    assert provider.matched_ids({"type": 1, "filename": "/data/videos/scene_000009.mp4", "includeAdult": 1}) == []


def test_stash_down_answers_still_come_from_the_index(provider, stash):
    stash.go_down()
    try:
        assert provider.metadata("2")["title"] == stash.scene("2")["title"]
        assert provider.matched_ids({"type": 1, "filename": "/data/videos/scene_000002.mp4", "includeAdult": 1}) == ["2"]
        # misses cannot ask Stash: an honest 404 / empty answer, well inside the client's timeout
        assert provider.get("/library/metadata/4040", timeout=5).status_code == 404
        assert provider.match({"type": 1, "filename": "/nope/x.mp4", "includeAdult": 1}, timeout=5).json()["MediaContainer"]["size"] == 0
        wait_for(lambda: provider.get("/healthz").json()["stash"] == "failing", timeout=20, message="Stash marked failing")
    finally:
        stash.come_up()
    wait_for(lambda: provider.get("/healthz").json()["stash"] == "ok", timeout=30, message="Stash back")


def test_a_hung_stash_delays_a_miss_by_the_provider_timeout_only(provider, stash):
    stash.faults.stall_next(count=5, delay=8, path_prefix="/graphql")
    response = provider.get("/library/metadata/4041", timeout=6)  # provider_stash_timeout is 1 s here
    assert response.status_code == 404
    assert provider.metadata("1")["title"] == stash.scene("1")["title"]


def test_a_restarted_provider_answers_from_its_snapshot_while_stash_is_down(start_provider, stash, tmp_path):
    data_dir = tmp_path / "snapshot-data"
    first = start_provider(data_dir=data_dir, provider_public_url="http://provider:8787")
    expected = first.metadata("8")
    first.stop()
    stash.go_down()
    try:
        second = start_provider(data_dir=data_dir, wait_built=False, provider_public_url="http://provider:8787")
        assert second.metadata("8") == expected
    finally:
        stash.come_up()


def test_snapshot_round_trips_the_index(tmp_path: Path, stash):
    from pipeline.models import StashScene
    from pipeline.stash import StashClient
    from tests.provider.conftest import provider_settings

    scenes = [scene for _total, page in StashClient(provider_settings(stash, tmp_path)).iter_scene_pages() for scene in page]
    index = SceneIndex()
    index.replace_all(scenes)
    Snapshot(tmp_path).save(index, scenes, full=True)
    loaded = SceneIndex()
    Snapshot(tmp_path).load(loaded)
    assert loaded.scenes == index.scenes and loaded.watermark == index.watermark
    assert isinstance(next(iter(loaded.scenes.values())), StashScene)


def test_health_reports_the_index(provider):
    health = requests.get(provider.url + "/healthz", timeout=5).json()
    assert health["status"] == "ok" and health["scenes"] == 20 and health["built"] is True


def test_a_refresh_that_cannot_write_its_snapshot_is_logged_and_retried(provider, stash, raw_logs, monkeypatch):
    import sqlite3

    def broken(*_args, **_kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(provider.service.snapshot, "save", broken)
    stash.update_scene("6", title="Edited while the disk fails")
    wait_for(lambda: any("provider_refresh_failed" in line for line in raw_logs.lines), timeout=20,
             message="the failure to be logged")
    assert provider.service._thread is not None and provider.service._thread.is_alive()
    assert provider.metadata("6")["title"] == "Edited while the disk fails"  # the index took it; only the snapshot failed
