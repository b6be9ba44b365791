"""push_mode=refresh: the chain asks Plex to refresh the matched item, and Plex pulls from the provider."""

import hashlib

import pytest

from pipeline.inline import run_inline
from pipeline.provider.documents import IDENTIFIER
from pipeline.sync import SyncEngine
from tests.emulators.stash import png_image


@pytest.fixture
def refreshing(plex, start_provider, make_settings):
    """A Plex whose library agent is our provider, and an engine in push_mode=refresh."""
    provider = start_provider()
    plex.provider_url = provider.url
    return provider, SyncEngine.from_settings(make_settings(push_mode="refresh"))


def item_for(plex, scene):
    return plex.item(plex.rating_key_for_file(scene["files"][0]["path"]))


def test_refresh_mode_asks_plex_to_refresh_instead_of_editing(refreshing, plex, dataset):
    _provider, engine = refreshing
    summary = run_inline(engine, all_scenes=True)
    assert summary.counts["updated"] == len(dataset.scenes)
    expected = sorted(plex.rating_key_for_file(s["files"][0]["path"]) for s in dataset.scenes)
    assert sorted(plex.refreshed_keys()) == expected
    assert plex.poster_uploads() == []
    for edit in plex.edit_requests():  # only the cover label that says which screenshot Plex pulled
        assert {key for key, _value in edit.query if key not in ("type", "id")} <= {"label[0].tag.tag", "label[].tag.tag-"}


def test_refresh_mode_end_to_end_every_field_arrives_from_the_provider(refreshing, plex, stash, dataset):
    _provider, engine = refreshing
    run_inline(engine, all_scenes=True)
    for sample in dataset.scenes:
        scene, item = stash.scene(sample["id"]), item_for(plex, sample)
        assert item["guid"] == f"{IDENTIFIER}://movie/{scene['id']}"
        assert item["title"] == scene["title"]
        assert item["summary"] == scene["details"]
        assert item["studio"] == (scene["studio"]["name"] if scene["studio"] else "")
        assert item["originallyAvailableAt"] == scene["date"]
        assert item["genres"] == [tag["name"] for tag in scene["tags"]]
        assert [actor["tag"] for actor in item["actors"]] == [p["name"] for p in scene["performers"]]
        assert item["poster_sha256"] == hashlib.sha256(png_image(f"scene:{scene['id']}:1")).hexdigest()
        assert item["locked"] == []  # nothing written field by field, so nothing locked
        assert [label for label in item["labels"] if label.startswith("stash2plex-cover-")]


def test_refresh_mode_second_run_is_unchanged_and_refreshes_nothing(refreshing, plex):
    _provider, engine = refreshing
    run_inline(engine, all_scenes=True)
    plex.reset_requests()
    summary = run_inline(engine, all_scenes=True)
    assert summary.counts["unchanged"] == 20
    assert plex.refreshed_keys() == []


def test_refresh_mode_an_edit_in_stash_refreshes_only_that_item(refreshing, plex, stash, dataset):
    provider, engine = refreshing
    run_inline(engine, all_scenes=True)
    stash.update_scene("3", title="Edited For Refresh")
    provider.service.refresh_once()  # the provider's background refresh, without waiting for it
    plex.reset_requests()
    summary = run_inline(engine, scene_ids=["3"])
    assert summary.counts["updated"] == 1
    assert plex.refreshed_keys() == [plex.rating_key_for_file(dataset.scenes[2]["files"][0]["path"])]
    assert item_for(plex, dataset.scenes[2])["title"] == "Edited For Refresh"


def test_fields_mode_still_edits_and_never_refreshes(plex, make_settings):
    engine = SyncEngine.from_settings(make_settings())
    run_inline(engine, all_scenes=True)
    assert plex.refreshed_keys() == [] and len(plex.edit_requests()) == 20
