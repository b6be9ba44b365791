"""Desired state and the diff: one complete edit with locks, nothing when nothing changed."""

from plexapi.mixins import EditTagsMixin

from pipeline.config import load_settings
from pipeline.metadata import (
    COVER_LABEL_PREFIX,
    cover_label,
    cover_label_params,
    desired_state,
    plan_actors,
    plan_fields,
    poster_is_current,
    strip_secret_query,
)
from pipeline.models import Actor, PlexItemState, StashScene

SETTINGS = load_settings()


def scene(**overrides):
    data = {
        "id": "7", "title": "A Title", "details": "Some details", "date": "2024-01-15", "rating100": 80,
        "code": "ABC-1", "studio": {"id": "1", "name": "Studio X"},
        "performers": [{"id": "1", "name": "Jane Doe", "image_path": "http://stash:9999/performer/1/image?t=5&apikey=SECRETKEY"}],
        "tags": [{"id": "1", "name": "Drama"}, {"id": "2", "name": "drama"}, {"id": "3", "name": "Night"}],
        "files": [{"path": "/data/videos/a.mp4", "basename": "a.mp4"}],
        "paths": {"screenshot": "http://stash:9999/scene/7/screenshot?t=99&apikey=SECRETKEY"},
    }
    data.update(overrides)
    return StashScene.from_graphql(data)


def item(**overrides):
    return PlexItemState(rating_key=42, section_id=1, **overrides)


def test_desired_state_maps_every_field():
    desired = desired_state(scene(), load_settings(sync_rating=True))
    assert desired.title == "A Title"
    assert desired.studio == "Studio X"
    assert desired.summary == "Some details"
    assert desired.tagline == "ABC-1"
    assert desired.originallyAvailableAt == "2024-01-15"
    assert desired.userRating == 8.0
    assert desired.genres == ["Drama", "Night"]
    assert desired.collections == ["Studio X"]
    assert [a.name for a in desired.actors] == ["Jane Doe"]


def test_no_secret_reaches_the_desired_state():
    desired = desired_state(scene(), SETTINGS)
    assert "SECRETKEY" not in desired.model_dump_json()
    assert desired.poster_url == "http://stash:9999/scene/7/screenshot?t=99"


def test_null_fields_clear_plex_but_the_title_falls_back_to_the_file_name():
    desired = desired_state(scene(title=None, studio=None, details=None, date=None), SETTINGS)
    assert desired.title == "a"
    assert desired.studio == "" and desired.summary == "" and desired.originallyAvailableAt == ""
    assert desired.collections == []


def test_switched_off_fields_are_left_alone():
    desired = desired_state(scene(), load_settings(sync_studio=False, sync_tags=False, sync_master=True))
    assert desired.studio is None and desired.genres is None
    assert desired_state(scene(), load_settings(sync_master=False)).title is None


def test_tags_are_capped_by_max_tags():
    tags = [{"id": str(i), "name": f"T{i}"} for i in range(30)]
    assert len(desired_state(scene(tags=tags), load_settings(max_tags=10)).genres) == 10


def test_changed_fields_go_in_one_plan_with_their_locks():
    plan = plan_fields(desired_state(scene(), SETTINGS), item(title="old"), SETTINGS)
    assert plan.params["title.value"] == "A Title" and plan.params["title.locked"] == "1"
    assert plan.params["genre[0].tag.tag"] == "Drama" and plan.params["genre[1].tag.tag"] == "Night"
    assert "studio" in plan.changed and "genres" in plan.changed


def test_nothing_is_planned_when_plex_already_matches():
    desired = desired_state(scene(), SETTINGS)
    current = item(title="A Title", studio="Studio X", summary="Some details", tagline="ABC-1",
                   originallyAvailableAt="2024-01-15", genres=["Drama", "Night"], collections=["Studio X"])
    assert plan_fields(desired, current, SETTINGS).params == {}


def test_merge_mode_keeps_plex_only_tags_and_sends_the_complete_list():
    plan = plan_fields(desired_state(scene(), SETTINGS), item(genres=["Plex Only"]), SETTINGS)
    sent = [v for k, v in sorted(plan.params.items()) if k.startswith("genre[")]
    assert sent == ["Plex Only", "Drama", "Night"]


def test_replace_mode_removes_every_tag_when_stash_has_none():
    settings = load_settings(tag_mode="replace")
    plan = plan_fields(desired_state(scene(tags=[]), settings), item(genres=["Old", "Older"]), settings)
    assert plan.params["genre[].tag.tag-"] == "Old,Older"
    assert not any(key.startswith("genre[") and key != "genre[].tag.tag-" for key in plan.params)


def test_replace_mode_sends_the_kept_list_and_removes_the_dropped_tags_with_tag_minus():
    settings = load_settings(tag_mode="replace")
    plan = plan_fields(desired_state(scene(), settings), item(genres=["Drama", "Old"]), settings)
    assert [plan.params[f"genre[{i}].tag.tag"] for i in range(2)] == ["Drama", "Night"]
    assert "genre[2].tag.tag" not in plan.params
    assert plan.params["genre[].tag.tag-"] == "Old"
    assert plan.params["genre.locked"] == "1"


def test_removed_tag_names_are_quoted_exactly_as_plexapi_quotes_them():
    names = ["Rock, Roll", "A/B", "Café 50%", "plain"]
    settings = load_settings(tag_mode="replace")
    plan = plan_fields(desired_state(scene(tags=[]), settings), item(genres=names), settings)
    assert plan.params["genre[].tag.tag-"] == EditTagsMixin._tagHelper("genre", names, remove=True)["genre[].tag.tag-"]


def test_merge_mode_never_sends_a_removal():
    plan = plan_fields(desired_state(scene(tags=[]), SETTINGS), item(genres=["Plex Only"]), SETTINGS)
    assert not any(key.endswith("tag.tag-") for key in plan.params)


def test_preserve_plex_edits_keeps_a_field_the_user_locked():
    settings = load_settings(preserve_plex_edits=True)
    current = item(title="User Title", locked={"title"})
    plan = plan_fields(desired_state(scene(), settings), current, settings)
    assert "title.value" not in plan.params and plan.preserved == ["title"]


def test_preserve_plex_edits_updates_an_unlocked_field_and_leaves_it_unlocked():
    settings = load_settings(preserve_plex_edits=True)
    plan = plan_fields(desired_state(scene(), settings), item(title="Our Old Title"), settings)
    assert plan.params["title.value"] == "A Title"
    assert not any(key.endswith(".locked") for key in plan.params)  # a lock then means a person's edit


def test_actor_plan_sends_names_and_keeps_plex_roles():
    plan = plan_actors([Actor(name="Jane Doe"), Actor(name="Bo Chen")], [Actor(name="jane doe", role="Lead")], SETTINGS)
    assert plan.params["actor[0].tag.tag"] == "Jane Doe" and plan.params["actor[1].tag.tag"] == "Bo Chen"
    assert plan.params["actor[0].tagging.text"] == "Lead"


def test_actor_plan_never_sends_a_photo_parameter():
    plan = plan_actors([Actor(name="Jane Doe", thumb="http://stash/p/1")], [], SETTINGS)
    assert not any("thumb" in key for key in plan.params)


def test_performer_photos_stay_out_of_the_desired_state_even_with_performer_thumbs():
    desired = desired_state(scene(), load_settings(performer_thumbs=True))
    assert [(a.name, a.thumb) for a in desired.actors] == [("Jane Doe", None)]


def test_actor_plan_is_empty_when_names_and_roles_match_whatever_the_photos():
    assert plan_actors([Actor(name="Jane Doe")], [Actor(name="Jane Doe", thumb="/plex/photo")], SETTINGS).params == {}


def test_replace_mode_removes_dropped_actors_with_tag_minus():
    settings = load_settings(tag_mode="replace")
    plan = plan_actors([Actor(name="Jane Doe")], [Actor(name="Jane Doe"), Actor(name="Gone Person")], settings)
    assert plan.params["actor[0].tag.tag"] == "Jane Doe" and "actor[1].tag.tag" not in plan.params
    assert plan.params["actor[].tag.tag-"] == "Gone%20Person"


def test_the_cover_label_ignores_the_stash_host_and_key_but_follows_the_screenshot_version():
    one = cover_label("7", "http://stash:9999/scene/7/screenshot?t=99")
    assert one == cover_label("7", "http://192.168.1.5:9999/scene/7/screenshot?t=99")
    assert one != cover_label("7", "http://stash:9999/scene/7/screenshot?t=100")
    assert one.startswith(COVER_LABEL_PREFIX)


def test_a_poster_is_current_only_when_plex_carries_this_versions_cover_label():
    desired = desired_state(scene(), SETTINGS)
    assert not poster_is_current(desired, item(thumb="/library/metadata/42/thumb/1"))
    assert not poster_is_current(desired, item(labels=[desired.poster_key]))  # no poster at all in Plex
    assert poster_is_current(desired, item(thumb="/library/metadata/42/thumb/1", labels=[desired.poster_key]))


def test_cover_label_params_swap_the_old_cover_label_and_keep_the_others():
    params = cover_label_params(["Favourite", f"{COVER_LABEL_PREFIX}old"], f"{COVER_LABEL_PREFIX}new")
    assert params["label[0].tag.tag"] == "Favourite" and params["label[1].tag.tag"] == f"{COVER_LABEL_PREFIX}new"
    assert params["label[].tag.tag-"] == f"{COVER_LABEL_PREFIX}old"


def test_strip_secret_query_removes_api_keys_only():
    assert strip_secret_query("http://h/x?t=1&apikey=K&X-Plex-Token=T") == "http://h/x?t=1"
