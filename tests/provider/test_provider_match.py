"""`POST /library/metadata/matches` as Plex sends it during a scan, Match and Fix Match."""

import pytest

from pipeline.provider.documents import IDENTIFIER


def body(filename, **extra):
    return {"type": 1, "title": "ignored by file matching", "filename": filename, "includeAdult": 1, **extra}


def test_match_by_absolute_plex_path_reverses_path_map(start_provider):
    provider = start_provider(path_map="/data/videos=/mnt/plex/Movies")
    assert provider.matched_ids(body("/mnt/plex/Movies/scene_000007.mp4")) == ["7"]


def test_match_by_the_path_as_sent_when_plex_and_stash_share_the_mount(provider):
    assert provider.matched_ids(body("/data/videos/scene_000004.mp4")) == ["4"]


def test_match_by_library_relative_path(provider, stash):
    assert provider.matched_ids(body("videos/scene_000005.mp4")) == ["5"]


def test_relative_path_picks_the_scene_whose_folders_match(stash, start_provider):
    stash.add_scene({"id": "901", "title": "Other copy", "files": ["/data/other/scene_000005.mp4"]})
    provider = start_provider()
    assert provider.matched_ids(body("/videos/scene_000005.mp4")) == ["5"]
    assert provider.matched_ids(body("other/scene_000005.mp4")) == ["901"]


def test_match_by_file_name_when_the_folders_differ(provider):
    assert provider.matched_ids(body("/srv/somewhere/else/SCENE_000009.MP4")) == ["9"]


def test_match_by_windows_path(provider):
    assert provider.matched_ids(body("D:\\Media\\videos\\scene_000002.mp4")) == ["2"]


def test_match_by_our_guid_answers_that_scene(provider):
    assert provider.matched_ids({"type": 1, "guid": f"{IDENTIFIER}://movie/12", "includeAdult": 1}) == ["12"]


def test_match_answer_is_a_media_container_of_our_items(provider):
    container = provider.match(body("/data/videos/scene_000003.mp4")).json()["MediaContainer"]
    assert container["identifier"] == IDENTIFIER
    assert container["offset"] == 0 and container["size"] == container["totalSize"] == 1
    item = container["Metadata"][0]
    assert item["guid"] == f"{IDENTIFIER}://movie/3"
    assert item["key"] == "/library/metadata/3" and item["type"] == "movie"


@pytest.fixture
def twins(stash):
    """Scene 6's file name also in two other folders."""
    stash.add_scene({"id": "801", "title": "Twin A", "files": ["/archive/a/scene_000006.mp4"]})
    stash.add_scene({"id": "802", "title": "Twin B", "files": ["/archive/b/videos/scene_000006.mp4"]})


def test_ambiguous_file_name_with_strict_matching_answers_nothing(twins, start_provider):
    provider = start_provider(strict_matching=True)
    assert provider.matched_ids(body("/plex/elsewhere/scene_000006.mp4")) == []


def test_ambiguous_file_name_with_manual_lists_candidates_best_first(twins, start_provider):
    provider = start_provider(strict_matching=True)
    found = provider.match(body("/plex/x/videos/scene_000006.mp4", manual=1)).json()["MediaContainer"]["Metadata"]
    ids = [item["ratingKey"] for item in found]
    assert sorted(ids) == ["6", "801", "802"]
    assert ids[:2] == ["6", "802"]  # both share the videos/ folder with the sent path; id order breaks the tie
    scores = [item["score"] for item in found]
    assert scores == sorted(scores, reverse=True)


def test_ambiguous_file_name_without_strict_matching_answers_the_best_one(twins, start_provider):
    provider = start_provider(strict_matching=False)
    assert provider.matched_ids(body("/x/b/videos/scene_000006.mp4")) == ["802"]


def test_manual_match_by_title_when_no_file_matches(provider, stash):
    title = stash.scene("8")["title"]
    ids = provider.matched_ids({"type": 1, "title": title, "manual": 1, "includeAdult": 1})
    assert ids[0] == "8"


def test_no_match_is_200_with_an_empty_list(provider):
    response = provider.match(body("/data/videos/not_in_stash.mp4"))
    assert response.status_code == 200
    assert response.json()["MediaContainer"]["Metadata"] == []
    assert response.json()["MediaContainer"]["size"] == 0


def test_a_type_other_than_movie_gets_an_empty_answer(provider):
    assert provider.matched_ids(body("/data/videos/scene_000001.mp4", type=2)) == []


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"a string"', b'{"type": "movie"}', b'{"manual": "often"}'])
def test_malformed_match_body_is_400(provider, raw):
    assert provider.match(raw).status_code == 400


def test_strings_for_numbers_are_accepted_as_plex_may_send_them(provider):
    assert provider.matched_ids({"type": "1", "filename": "/data/videos/scene_000001.mp4", "manual": "0",
                                 "includeAdult": "1"}) == ["1"]


def test_adult_items_are_hidden_unless_include_adult(provider):
    assert provider.matched_ids(body("/data/videos/scene_000001.mp4", includeAdult=0)) == []
    assert provider.matched_ids({"type": 1, "filename": "/data/videos/scene_000001.mp4"}) == []
    assert provider.matched_ids(body("/data/videos/scene_000001.mp4", includeAdult=1)) == ["1"]


def test_with_provider_adult_off_include_adult_does_not_matter(start_provider):
    provider = start_provider(provider_adult=False)
    found = provider.match(body("/data/videos/scene_000001.mp4", includeAdult=0)).json()["MediaContainer"]["Metadata"]
    assert [item["ratingKey"] for item in found] == ["1"]
    assert found[0]["isAdult"] is False
    assert provider.metadata("1")["isAdult"] is False


def test_items_carry_is_adult_when_provider_adult_is_on(provider):
    assert provider.metadata("1")["isAdult"] is True


def test_concurrent_matches_all_get_their_own_answer(provider):
    from concurrent.futures import ThreadPoolExecutor

    def one(index):
        import requests

        response = requests.post(provider.url + "/library/metadata/matches", timeout=10,
                                 json=body(f"/data/videos/scene_{index:06d}.mp4"))
        return [item["ratingKey"] for item in response.json()["MediaContainer"]["Metadata"]]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, [1 + i % 20 for i in range(80)]))
    assert answers == [[str(1 + i % 20)] for i in range(80)]


def test_manual_candidate_lists_are_paged_with_plex_container_headers(stash, start_provider):
    for n in range(25):
        stash.add_scene({"id": str(600 + n), "title": f"Copy {n}", "files": [f"/copies/{n}/scene_000010.mp4"]})
    provider = start_provider()
    request = body("/plex/elsewhere/scene_000010.mp4", manual=1)
    first = provider.match(request).json()["MediaContainer"]
    assert first["size"] == 20 and first["totalSize"] == 26 and first["offset"] == 0
    rest = provider.match(request, headers={"X-Plex-Container-Start": "20", "X-Plex-Container-Size": "20"}).json()["MediaContainer"]
    assert rest["size"] == 6 and rest["offset"] == 20
    ids = [m["ratingKey"] for m in first["Metadata"] + rest["Metadata"]]
    assert len(set(ids)) == 26


def test_bad_container_headers_are_400(provider):
    assert provider.match(body("/data/videos/scene_000001.mp4"), headers={"X-Plex-Container-Size": "many"}).status_code == 400
