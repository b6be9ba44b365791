"""The four steps in-process against the emulators: what lands in Plex, and what it costs."""

import pytest

from pipeline.inline import run_inline
from pipeline.sync import SyncEngine


@pytest.fixture
def engine(make_settings):
    return SyncEngine.from_settings(make_settings())


def plex_item_for(plex, scene):
    return plex.item(plex.rating_key_for_file(scene["files"][0]["path"]))


def test_inline_sync_writes_every_field_to_plex(engine, plex, stash, dataset):
    summary = run_inline(engine, all_scenes=True)
    assert summary.counts["updated"] == len(dataset.scenes)
    for scene in dataset.scenes:
        item = plex_item_for(plex, scene)
        assert item["title"] == scene["title"]
        assert item["studio"] == (scene["studio"]["name"] if scene["studio"] else "")
        assert item["originallyAvailableAt"] == scene["date"]
        assert sorted(item["genres"]) == sorted(t["name"] for t in scene["tags"])
        assert [a["tag"] for a in item["actors"]] == [p["name"] for p in scene["performers"]]
        assert "title" in item["locked"]
        assert item.get("poster_sha256")


def test_second_run_sends_no_edit_and_no_poster(engine, plex, stash):
    run_inline(engine, all_scenes=True)
    plex.reset_requests()
    summary = run_inline(engine, all_scenes=True)
    assert summary.counts["unchanged"] == 20
    assert plex.edit_requests() == [] and plex.poster_uploads() == []


def test_a_scene_edited_in_stash_reaches_plex_on_the_next_sync_all(engine, plex, stash, dataset):
    run_inline(engine, all_scenes=True)
    stash.update_scene("3", title="Edited In Stash")
    plex.reset_requests()
    summary = run_inline(engine, all_scenes=True)
    assert summary.counts["updated"] == 1
    assert plex_item_for(plex, dataset.scenes[2])["title"] == "Edited In Stash"
    assert len(plex.edit_requests()) == 1


def test_a_changed_scene_costs_one_edit_plus_amortized_reads(engine, plex, stash):
    run_inline(engine, all_scenes=True)
    stash.update_scene("5", title="New Title")
    stash.bump_screenshot("5")
    plex.reset_requests()
    run_inline(engine, scene_ids=["5"])
    kinds = {k: v for k, v in plex.request_counts.items()}
    assert kinds.get("PUT edit") == 1 and kinds.get("POST poster") == 1
    assert sum(kinds.values()) <= 3  # edit, poster, and one batched read of the item


def test_the_path_index_is_persisted_so_a_restart_does_not_list_plex_again(make_settings, plex, stash):
    settings = make_settings()
    run_inline(SyncEngine.from_settings(settings), scene_ids=["1"])
    plex.reset_requests()
    run_inline(SyncEngine.from_settings(settings), scene_ids=["2"])
    assert not any(k.endswith("listing") for k in plex.request_counts)


def test_client_identifier_is_stable_across_restarts(make_settings, plex, stash):
    settings = make_settings()
    run_inline(SyncEngine.from_settings(settings), scene_ids=["1"])
    run_inline(SyncEngine.from_settings(settings), scene_ids=["2"])
    assert len(plex.client_identifiers) == 1


def test_duplicate_scenes_in_one_batch_are_fetched_once_and_reported(engine, plex, stash):
    from pipeline.models import Job

    result = engine.fetch([Job(scene_id="1", event="cli"), Job(scene_id="1", event="cli"), Job(scene_id="2", event="cli")])
    assert [job.scene_id for job in result.forward] == ["1", "2"]
    assert [(job.scene_id, outcome.value) for job, outcome, _ in result.done] == [("1", "coalesced")]
