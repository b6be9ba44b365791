"""Pure units of the provider's matching: reversing path_map and ranking candidates (no HTTP)."""

from pipeline.config import explicit_settings
from pipeline.models import StashScene
from pipeline.provider.index import SceneIndex, stash_time
from pipeline.provider.matching import MatchRequest, find_candidates, reverse_map


def scene(scene_id: str, *paths: str, title: str = "T") -> StashScene:
    return StashScene.model_validate({"id": scene_id, "title": title, "files": [{"path": p} for p in paths]})


def test_reverse_map_turns_plex_prefix_into_stash_prefix():
    assert reverse_map("/plex/movies/a.mp4", [("/stash/videos", "/plex/movies")]) == "/stash/videos/a.mp4"


def test_reverse_map_longest_plex_prefix_wins():
    pairs = [("/s/all", "/p"), ("/s/special", "/p/special")]
    assert reverse_map("/p/special/a.mp4", pairs) == "/s/special/a.mp4"
    assert reverse_map("/p/other/a.mp4", pairs) == "/s/all/other/a.mp4"


def test_reverse_map_leaves_unmapped_paths_and_partial_folder_names_alone():
    assert reverse_map("/plexfoo/a.mp4", [("/stash", "/plex")]) == "/plexfoo/a.mp4"


def test_a_scene_with_two_copies_of_a_file_is_one_candidate():
    index = SceneIndex()
    index.upsert([scene("1", "/a/x.mp4", "/b/x.mp4")])
    found = find_candidates(MatchRequest(filename="/c/x.mp4"), index, explicit_settings(strict_matching=True))
    assert [c.scene_id for c in found] == ["1"]


def test_moving_a_file_drops_its_old_path_from_the_index():
    index = SceneIndex()
    index.upsert([scene("1", "/a/x.mp4")])
    index.upsert([scene("1", "/a/y.mp4")])
    assert index.scene_for_path("/a/x.mp4") is None and index.files_named("x.mp4") == ()
    assert index.scene_for_path("/a/y.mp4") == "1"


def test_unchanged_scenes_are_not_reported_as_changed():
    index = SceneIndex()
    assert len(index.upsert([scene("1", "/a/x.mp4")])) == 1
    assert index.upsert([scene("1", "/a/x.mp4")]) == []


def test_stash_time_reads_utc_and_offset_timestamps():
    assert stash_time("2026-01-01T00:00:00Z") == stash_time("2026-01-01T01:00:00+01:00") == 1767225600.0
    assert stash_time("not a time") == 0.0 and stash_time(None) == 0.0
