"""Bad data end to end (inline, against the emulators): each case gets its documented outcome and a clear
log line, and nothing crashes."""

from __future__ import annotations

import io
import logging

import pytest

from pipeline.inline import run_inline
from pipeline.logs import setup_logging
from pipeline.sanitize import MAX_ACTORS, SUMMARY_LIMIT, TITLE_LIMIT
from pipeline.sync import SyncEngine
from tests.emulators.sample_data import make_plex_item


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    yield stream
    logging.getLogger("stash2plex").handlers.clear()


def sync(make_settings, scene_id: str, engine: SyncEngine | None = None, **settings):
    return run_inline(engine or SyncEngine.from_settings(make_settings(**settings)), scene_ids=[scene_id])


def item_of(plex, path: str) -> dict:
    return plex.item(plex.rating_key_for_file(path))


def test_a_scene_without_files_is_skipped_with_the_older_plugins_line(make_settings, stash, plex, log_lines):
    stash.update_scene("1", files=[])
    summary = sync(make_settings, "1")
    assert summary.counts["skipped"] == 1 and summary.counts["failed"] == 0
    line = next(line for line in log_lines.getvalue().splitlines() if "skipped" in line)
    assert "No file path for scene 1, cannot sync" in line
    assert "scene_id=1" in line and "stage=fetch" in line and "reason=no_file" in line
    assert not any(r.method == "PUT" for r in plex.requests)


def test_a_file_plex_does_not_have_is_not_found(make_settings, stash, plex, log_lines):
    stash.update_scene("2", files=["/data/videos/unknown.mp4"])
    summary = sync(make_settings, "2")
    assert summary.counts["not_found"] == 1
    assert "not_in_plex" in summary.problems[0][2]
    assert "stage=match" in log_lines.getvalue()


def test_trigger_plex_scan_asks_plex_to_scan_the_folder_of_a_missing_file(make_settings, stash, plex):
    plex.add_pending({**make_plex_item(900, 0, "/data/videos/new/scene_new.mp4"), "ratingKey": 0})
    stash.update_scene("3", files=["/data/videos/new/scene_new.mp4"])
    engine = SyncEngine.from_settings(make_settings(trigger_plex_scan=True))
    first = sync(make_settings, "3", engine)
    assert first.counts["not_found"] == 1
    assert any(r.path.endswith("/refresh") and r.param("path") == "/data/videos/new" for r in plex.requests)
    retry = sync(make_settings, "3", engine)  # the retry finds the freshly scanned item
    assert retry.counts["updated"] == 1


def test_two_plex_items_with_one_file_name_are_ambiguous_under_strict_matching(make_settings, stash, plex):
    plex.add_item(make_plex_item(901, 5001, "/other/place/scene_000004.mp4"))
    stash.update_scene("4", files=["/stash/mount/scene_000004.mp4"])
    summary = sync(make_settings, "4")
    assert summary.counts["failed"] == 1
    assert "strict_matching" in summary.problems[0][2] and summary.problems[0][2].startswith("permanent:")


def test_without_strict_matching_the_closest_path_wins(make_settings, stash, plex, dataset):
    plex.add_item(make_plex_item(902, 5002, "/other/place/scene_000005.mp4"))
    stash.update_scene("5", files=["/stash/videos/scene_000005.mp4"])
    summary = sync(make_settings, "5", strict_matching=False)
    assert summary.counts["updated"] == 1
    assert item_of(plex, "/data/videos/scene_000005.mp4")["title"] == dataset.scenes[4]["title"]


def test_path_map_gives_an_exact_match_where_names_clash(make_settings, stash, plex, dataset):
    plex.add_item(make_plex_item(903, 5003, "/other/place/scene_000006.mp4"))
    stash.update_scene("6", files=["/stash/videos/scene_000006.mp4"])
    summary = sync(make_settings, "6", path_map="/stash/videos=/data/videos")
    assert summary.counts["updated"] == 1
    assert item_of(plex, "/data/videos/scene_000006.mp4")["title"] == dataset.scenes[5]["title"]


def test_emoji_and_control_characters_arrive_clean(make_settings, stash, plex):
    stash.update_scene("7", title="Party \U0001F389\x00\u200b time", details="line one\x07\n\n\n\nline two")
    sync(make_settings, "7")
    item = item_of(plex, "/data/videos/scene_000007.mp4")
    assert item["title"] == "Party \U0001F389 time"
    assert item["summary"] == "line one\n\nline two"


def test_strings_over_every_limit_are_cut_at_a_word_boundary(make_settings, stash, plex):
    stash.update_scene("8", title="word " * 200, details="lorem " * 5000, studio="S" * 400,
                       performers=[f"Performer {i}" for i in range(80)])
    summary = sync(make_settings, "8")
    assert summary.counts["updated"] == 1
    item = item_of(plex, "/data/videos/scene_000008.mp4")
    assert len(item["title"]) <= TITLE_LIMIT and item["title"].endswith("word...")
    assert len(item["summary"]) <= SUMMARY_LIMIT
    assert len(item["studio"]) <= 255
    assert len(item["actors"]) == MAX_ACTORS


def test_null_studio_date_and_details_clear_plex_and_keep_a_file_title(make_settings, stash, plex):
    sync(make_settings, "9")
    stash.update_scene("9", title=None, studio=None, date=None, details=None)
    summary = sync(make_settings, "9")
    assert summary.counts["updated"] == 1
    item = item_of(plex, "/data/videos/scene_000009.mp4")
    assert item["title"] == "scene_000009"
    assert item["studio"] == "" and item["summary"] == "" and not item["originallyAvailableAt"]


def test_tag_lists_over_the_cap_are_cut_to_max_tags(make_settings, stash, plex):
    stash.update_scene("10", tags=[f"Tag {i}" for i in range(40)])
    sync(make_settings, "10", max_tags=15)
    assert len(item_of(plex, "/data/videos/scene_000010.mp4")["genres"]) == 15


def test_a_field_the_user_locked_in_plex_is_kept_with_preserve_plex_edits(make_settings, stash, plex, log_lines):
    rating_key = plex.rating_key_for_file("/data/videos/scene_000011.mp4")
    plex_user_edit = {"title.value": "My Own Title", "title.locked": "1"}
    import requests

    requests.put(f"{plex.url}/library/sections/1/all", params={"type": 1, "id": rating_key, **plex_user_edit},
                 headers={"X-Plex-Token": plex.token}).raise_for_status()
    summary = sync(make_settings, "11", preserve_plex_edits=True)
    item = plex.item(rating_key)
    assert item["title"] == "My Own Title"
    assert item["studio"] == (stash.scene("11")["studio"] or {}).get("name", "")
    assert summary.counts["updated"] == 1
    assert "kept_plex_edit" in log_lines.getvalue() and "field=title" in log_lines.getvalue()
