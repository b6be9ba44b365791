"""The Plex emulator, driven over HTTP by the real plexapi client (and raw requests where needed)."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import plexapi
import pytest
import requests
from plexapi.exceptions import BadRequest, NotFound, Unauthorized
from plexapi.mixins import EditTagsMixin
from plexapi.server import PlexServer

from tests.emulators.plex import PlexEmulator
from tests.emulators.sample_data import make_dataset, make_plex_item

TOKEN = "plex-test-token"
REPO_ROOT = Path(__file__).resolve().parents[1]


def small_items() -> list[dict]:
    """Three scanned items; 1001 carries six genres and two actors."""
    items = make_dataset(3).plex_items
    items[0]["genres"] = ["Drama", "Comedy", "Rock & Roll", "Sci-Fi", "Noir", "Indie"]
    items[0]["collections"] = ["Coll A", "Coll B"]
    items[0]["actors"] = [
        {"tag": "Jane Doe", "role": "Lead", "thumb": "http://img/jane.jpg"},
        {"tag": "John Roe", "role": "", "thumb": None},
    ]
    return items


@pytest.fixture
def emulator() -> Iterator[PlexEmulator]:
    with PlexEmulator(small_items(), token=TOKEN) as emu:
        yield emu  # type: ignore[misc]


@pytest.fixture
def plex(emulator: PlexEmulator) -> PlexServer:
    return PlexServer(emulator.url, TOKEN, timeout=5)


def listing_by_key(plex: PlexServer) -> dict[int, object]:
    return {movie.ratingKey: movie for movie in plex.library.section("Movies").all()}


# --- connection and listing ----------------------------------------------------------------------

def test_connect_and_list_sections(plex: PlexServer) -> None:
    sections = plex.library.sections()
    assert plex.friendlyName == "Emulated Plex"
    assert [(s.key, s.title, s.type) for s in sections] == [(1, "Movies", "movie")]
    assert sections[0].locations == ["/data/videos"]


def test_all_pages_250_items_in_three_requests() -> None:
    with PlexEmulator(make_dataset(250).plex_items, token=TOKEN) as emu:
        plex = PlexServer(emu.url, TOKEN, timeout=5)
        movies = plex.library.section("Movies").all(container_size=100)
        assert len(movies) == 250
        assert len({m.ratingKey for m in movies}) == 250
        assert emu.request_counts["GET listing"] == 3


def test_listing_reports_size_total_and_offset_for_query_param_paging(emulator: PlexEmulator) -> None:
    response = requests.get(
        f"{emulator.url}/library/sections/1/all",
        params={"X-Plex-Token": TOKEN, "X-Plex-Container-Start": "1", "X-Plex-Container-Size": "5"},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml;charset=utf-8"
    assert 'size="2"' in response.text and 'totalSize="3"' in response.text and 'offset="1"' in response.text


def listing_keys(emulator: PlexEmulator, **params: str) -> tuple[int, list[int]]:
    """(totalSize, ratingKeys) of a raw listing with these query parameters."""
    import xml.etree.ElementTree as ET

    response = requests.get(f"{emulator.url}/library/sections/1/all", params={"X-Plex-Token": TOKEN, **params}, timeout=5)
    response.raise_for_status()
    root = ET.fromstring(response.content)
    return int(root.get("totalSize", 0)), [int(v.get("ratingKey", 0)) for v in root]


def test_added_at_filter_keeps_only_items_added_strictly_after(emulator: PlexEmulator) -> None:
    added = emulator.item(1002)["addedAt"]
    assert listing_keys(emulator, **{"addedAt>>": str(added - 1)}) == (2, [1002, 1003])


def test_added_at_before_filter_and_the_total_counts_only_filtered_items(emulator: PlexEmulator) -> None:
    added = emulator.item(1002)["addedAt"]
    assert listing_keys(emulator, **{"addedAt<<": str(added), "X-Plex-Container-Size": "0"}) == (1, [])


def test_a_relative_added_at_filter_is_relative_to_now(emulator: PlexEmulator) -> None:
    emulator.add_item(make_plex_item(9, 1009, "/data/videos/new.mp4") | {"addedAt": int(time.time())})
    assert listing_keys(emulator, **{"addedAt>>": "-1h"})[1] == [1009]


def test_a_malformed_date_filter_is_a_bad_request(emulator: PlexEmulator) -> None:
    response = requests.get(f"{emulator.url}/library/sections/1/all",
                            params={"X-Plex-Token": TOKEN, "addedAt>>": "yesterday"}, timeout=5)
    assert response.status_code == 400


def test_listed_items_counts_what_listings_returned(emulator: PlexEmulator) -> None:
    listing_keys(emulator, **{"X-Plex-Container-Size": "2"})
    assert emulator.listed_items == 2


def test_listing_items_are_partial(plex: PlexServer) -> None:
    listed = listing_by_key(plex)[1001]
    full = plex.fetchItem(1001)
    assert len(listed.genres) == 3
    assert len(listed.collections) == 1
    assert len(full.genres) == 6
    assert [c.tag for c in full.collections] == ["Coll A", "Coll B"]


def test_listing_sorts_by_added_at_descending(plex: PlexServer) -> None:
    movies = plex.fetchItems("/library/sections/1/all?type=1&sort=addedAt:desc")
    assert [m.ratingKey for m in movies] == [1003, 1002, 1001]


def test_title_search_is_a_case_insensitive_substring(plex: PlexServer) -> None:
    found = plex.library.section("Movies").search(title="SCENE_000002")
    assert [m.ratingKey for m in found] == [1002]


# --- metadata ------------------------------------------------------------------------------------

def test_batch_get_returns_both_items(plex: PlexServer) -> None:
    items = plex.fetchItems("/library/metadata/1001,1002")
    assert sorted(i.ratingKey for i in items) == [1001, 1002]


def test_batch_get_leaves_out_unknown_keys(plex: PlexServer) -> None:
    assert [i.ratingKey for i in plex.fetchItems("/library/metadata/1001,9999")] == [1001]


def test_unknown_single_item_is_not_found(plex: PlexServer) -> None:
    with pytest.raises(NotFound):
        plex.fetchItem(9999)


def test_full_item_carries_file_paths(plex: PlexServer) -> None:
    item = plex.fetchItem(1002)
    assert [part.file for media in item.media for part in media.parts] == ["/data/videos/scene_000002.mp4"]


# --- edits ---------------------------------------------------------------------------------------

def test_title_edit_changes_state_and_locks_field(plex: PlexServer, emulator: PlexEmulator) -> None:
    item = plex.fetchItem(1001)
    item.edit(**{"title.value": "X", "title.locked": 1})
    item.reload()
    assert item.title == "X"
    assert any(f.name == "title" and f.locked for f in item.fields)
    assert emulator.item(1001)["title"] == "X" and "title" in emulator.item(1001)["locked"]


def test_title_with_emoji_quotes_and_ampersand_round_trips(plex: PlexServer) -> None:
    title = 'Tom & "Jerry" <3 \U0001f3ac l\'été'
    item = plex.fetchItem(1001)
    item.edit(**{"title.value": title})
    assert plex.fetchItem(1001).title == title


def test_edit_answers_empty_body_and_bumps_updated_at(emulator: PlexEmulator) -> None:
    before = emulator.item(1002)["updatedAt"]
    url = f"{emulator.url}/library/sections/1/all"
    for summary in ("one", "two"):
        response = requests.put(url, params={"type": "1", "id": "1002", "summary.value": summary},
                                headers={"X-Plex-Token": TOKEN}, timeout=5)
        assert response.status_code == 200 and response.content == b""
    assert emulator.item(1002)["updatedAt"] >= before + 2
    assert emulator.item(1002)["summary"] == "two"


def test_edit_of_unknown_id_is_404_and_changes_nothing(emulator: PlexEmulator) -> None:
    response = requests.put(f"{emulator.url}/library/sections/1/all",
                            params={"type": "1", "id": "1001,9999", "title.value": "Y"},
                            headers={"X-Plex-Token": TOKEN}, timeout=5)
    assert response.status_code == 404
    assert emulator.item(1001)["title"] == "scene_000001"


def test_indexed_genre_edit_replaces_the_list(plex: PlexServer, emulator: PlexEmulator) -> None:
    plex.fetchItem(1001).edit(**{"genre[0].tag.tag": "Thriller", "genre.locked": 1})
    assert emulator.item(1001)["genres"] == ["Thriller"]
    assert "genre" in emulator.item(1001)["locked"]


def test_add_genre_from_listing_object_drops_unlisted_genres(plex: PlexServer, emulator: PlexEmulator) -> None:
    listing_by_key(plex)[1001].addGenre("New")
    assert emulator.item(1001)["genres"] == ["Drama", "Comedy", "Rock & Roll", "New"]


def test_genre_removal_removes_named_tags(plex: PlexServer, emulator: PlexEmulator) -> None:
    plex.fetchItem(1001).removeGenre(["Comedy", "Rock & Roll"])
    assert emulator.item(1001)["genres"] == ["Drama", "Sci-Fi", "Noir", "Indie"]


def test_actors_with_roles_round_trip(plex: PlexServer) -> None:
    item = plex.fetchItem(1002)
    item.edit(**{
        "actor[0].tag.tag": "Ann Lee", "actor[0].tagging.text": "Detective",
        "actor[1].tag.tag": "Bo Chen", "actor[1].tagging.text": "Witness",
        "actor.locked": 1,
    })
    item.reload()
    assert [(r.tag, r.role) for r in item.roles] == [("Ann Lee", "Detective"), ("Bo Chen", "Witness")]


def test_an_undocumented_actor_photo_parameter_is_ignored_and_the_photo_kept(plex: PlexServer, emulator: PlexEmulator) -> None:
    plex.fetchItem(1001).edit(**{"actor[0].tag.tag": "Jane Doe", "actor[0].tag.thumb": "http://img/new.jpg",
                                 "actor[1].tag.tag": "New Face", "actor[1].tag.thumb": "http://img/face.jpg"})
    assert [(a["tag"], a["thumb"]) for a in emulator.item(1001)["actors"]] == [
        ("Jane Doe", "http://img/jane.jpg"), ("New Face", None)]


def test_the_complete_list_and_a_removal_in_one_edit_keep_the_list_and_drop_the_named(plex: PlexServer, emulator: PlexEmulator) -> None:
    removal = EditTagsMixin._tagHelper("genre", ["Comedy", "Rock & Roll"], remove=True)
    plex.fetchItem(1001).edit(**{"genre[0].tag.tag": "Drama", "genre[1].tag.tag": "Sci-Fi", **removal})
    assert emulator.item(1001)["genres"] == ["Drama", "Sci-Fi"]


def test_genre_removal_of_a_name_with_a_comma_removes_only_that_name(plex: PlexServer, emulator: PlexEmulator) -> None:
    plex.fetchItem(1002).edit(**{"genre[0].tag.tag": "Dark, Funny", "genre[1].tag.tag": "Dark", "genre.locked": 1})
    plex.fetchItem(1002).removeGenre(["Dark, Funny"])
    assert emulator.item(1002)["genres"] == ["Dark"]


# --- images, refresh, scans ----------------------------------------------------------------------

def test_poster_upload_of_bytes_stores_its_hash(plex: PlexServer, emulator: PlexEmulator, tmp_path: Path) -> None:
    image = tmp_path / "poster.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 fake jpeg \x00\x01")
    plex.fetchItem(1003).uploadPoster(filepath=str(image))
    state = emulator.item(1003)
    assert state["poster_sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert state["thumb"].startswith("/library/metadata/1003/thumb/")
    assert len(emulator.poster_uploads()) == 1


def test_poster_upload_by_url_records_the_url(plex: PlexServer, emulator: PlexEmulator) -> None:
    plex.fetchItem(1003).uploadPoster(url="http://stash:9999/scene/3/screenshot")
    assert emulator.item(1003)["poster_url"] == "http://stash:9999/scene/3/screenshot"
    assert emulator.poster_uploads()[0].param("url") == "http://stash:9999/scene/3/screenshot"


def test_item_refresh_answers_ok(plex: PlexServer) -> None:
    plex.fetchItem(1001).refresh()


def test_pending_item_appears_only_after_section_refresh(plex: PlexServer, emulator: PlexEmulator) -> None:
    path = "/data/videos/new/late_arrival.mp4"
    emulator.add_pending(make_plex_item(99, 0, path))
    section = plex.library.section("Movies")
    assert section.search(title="late_arrival") == []
    section.update(path="/data/videos/new")
    found = section.search(title="late_arrival")
    assert [m.ratingKey for m in found] == [emulator.rating_key_for_file(path)]
    assert found[0].ratingKey > 1003 and emulator.items_count == 4


def test_scan_of_another_folder_leaves_pending_item_hidden(plex: PlexServer, emulator: PlexEmulator) -> None:
    emulator.add_pending(make_plex_item(99, 0, "/data/videos/new/late_arrival.mp4"))
    plex.library.section("Movies").update(path="/data/videos/other")
    assert emulator.pending_count == 1 and emulator.items_count == 3


# --- auth, faults, outages -----------------------------------------------------------------------

def test_bad_token_is_unauthorized(emulator: PlexEmulator) -> None:
    with pytest.raises(Unauthorized):
        PlexServer(emulator.url, "wrong-token", timeout=5)


def test_token_in_query_parameter_is_accepted(emulator: PlexEmulator) -> None:
    assert requests.get(f"{emulator.url}/identity", params={"X-Plex-Token": TOKEN}, timeout=5).status_code == 200


def test_client_identifier_is_recorded(plex: PlexServer, emulator: PlexEmulator) -> None:
    assert plexapi.X_PLEX_IDENTIFIER in emulator.client_identifiers


def test_injected_503_raises_bad_request(plex: PlexServer, emulator: PlexEmulator) -> None:
    emulator.faults.fail_next(status=503, path_prefix="/library/metadata")
    with pytest.raises(BadRequest, match=r"\(503\)"):
        plex.fetchItem(1001)


def test_injected_429_raises_bad_request(plex: PlexServer, emulator: PlexEmulator) -> None:
    emulator.faults.rate_limit_next(retry_after=2, path_prefix="/library/metadata")
    with pytest.raises(BadRequest, match=r"\(429\)"):
        plex.fetchItem(1001)


def test_injected_429_carries_retry_after(emulator: PlexEmulator) -> None:
    emulator.faults.rate_limit_next(retry_after=2, path_prefix="/library/metadata")
    response = requests.get(f"{emulator.url}/library/metadata/1001", headers={"X-Plex-Token": TOKEN}, timeout=5)
    assert response.status_code == 429 and response.headers["Retry-After"] == "2"


def test_go_down_refuses_connections_even_on_a_kept_alive_session(plex: PlexServer, emulator: PlexEmulator) -> None:
    plex.fetchItem(1001)  # leaves a pooled keep-alive connection in plexapi's session
    emulator.go_down()
    with pytest.raises(requests.exceptions.ConnectionError):
        plex.fetchItem(1001)


def test_come_up_serves_again_on_the_same_port(plex: PlexServer, emulator: PlexEmulator) -> None:
    port = emulator.port
    emulator.go_down()
    emulator.come_up()
    assert emulator.port == port
    assert plex.fetchItem(1001).ratingKey == 1001


def test_stall_longer_than_client_timeout_is_read_timeout(emulator: PlexEmulator) -> None:
    plex = PlexServer(emulator.url, TOKEN, timeout=0.3)
    emulator.faults.stall_next(delay=1.0, path_prefix="/library/metadata")
    with pytest.raises(requests.exceptions.ReadTimeout):
        plex.fetchItem(1001)


def test_request_counts_use_short_route_kinds(plex: PlexServer, emulator: PlexEmulator) -> None:
    emulator.reset_requests()
    item = plex.fetchItem(1001)
    item.edit(**{"summary.value": "s"})
    plex.fetchItems("/library/metadata/1001,1002")
    assert emulator.request_counts["GET /library/metadata"] == 1
    assert emulator.request_counts["PUT edit"] == 1
    assert emulator.request_counts["GET /library/metadata batch"] == 1
    assert len(emulator.edit_requests()) == 1


def test_unknown_path_is_404(emulator: PlexEmulator) -> None:
    response = requests.get(f"{emulator.url}/hubs/search", headers={"X-Plex-Token": TOKEN}, timeout=5)
    assert response.status_code == 404


# --- CLI -----------------------------------------------------------------------------------------

def test_cli_serves_items_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.emulators.plex", "--port", "0", "--items", "4", "--token", "cli-token"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert line.startswith("plex emulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[-1]
        assert len(PlexServer(url, "cli-token", timeout=5).library.section("Movies").all()) == 4
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
