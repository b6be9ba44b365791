"""The Stash emulator, exercised over real HTTP with `requests` and the documents the client sends.

One emulator serves the whole module (stopping a server costs ~0.5 s); each test gets it reset to
25 sample scenes and the default ApiKey.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from pipeline import stash_queries as q
from tests.emulators.http_base import free_port
from tests.emulators.sample_data import make_dataset
from tests.emulators.stash import PNG_SIGNATURE, StashEmulator

API_KEY = "stash-test-key"
SCENES = make_dataset(25).scenes
SAVED_SETTINGS = {"stash2plex": {"plex_url": "http://plex:32400", "max_retries": 3}}
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server() -> Iterator[StashEmulator]:
    emulator = StashEmulator(port=0)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def stash(server: StashEmulator) -> StashEmulator:
    if not server.is_up:
        server.come_up()
    server.api_key = API_KEY
    server.reset(SCENES, SAVED_SETTINGS)
    server.faults.clear()
    server.reset_requests()
    return server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.headers["ApiKey"] = API_KEY
    yield session
    session.close()


def post(session: requests.Session, stash: StashEmulator, query: str, variables: dict | None = None,
         operation: str | None = None, **kwargs: Any) -> requests.Response:
    body = {"query": query, "variables": variables or {}, "operationName": operation}
    return session.post(f"{stash.url}/graphql", json=body, timeout=5, **kwargs)


def data(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    payload = response.json()
    assert "errors" not in payload, payload
    return payload["data"]


def expected_scene(stash: StashEmulator, scene: dict) -> dict[str, Any]:
    """What SCENE_FIELDS should return for a sample scene."""
    return {
        "id": scene["id"],
        "title": scene["title"],
        "code": scene["code"],
        "details": scene["details"],
        "date": scene["date"],
        "rating100": scene["rating100"],
        "organized": scene["organized"],
        "updated_at": scene["updated_at"],
        "studio": scene["studio"],
        "performers": [{**p, "image_path": f"{stash.url}/performer/{p['id']}/image?t=1"} for p in scene["performers"]],
        "tags": scene["tags"],
        "files": scene["files"],
        "paths": {"screenshot": f"{stash.url}/scene/{scene['id']}/screenshot?t={scene['screenshot_version']}"},
    }


def page_ids(response: requests.Response) -> list[str]:
    return [scene["id"] for scene in data(response)["findScenes"]["scenes"]]


# --- the client's documents ------------------------------------------------------------------


def test_find_scene_returns_every_requested_field(stash: StashEmulator, http: requests.Session) -> None:
    response = post(http, stash, q.FIND_SCENE, {"id": "3"}, "FindScene")
    assert data(response) == {"findScene": expected_scene(stash, SCENES[2])}


def test_find_scene_of_unknown_id_is_null(stash: StashEmulator, http: requests.Session) -> None:
    response = post(http, stash, q.FIND_SCENE, {"id": "9999"}, "FindScene")
    assert response.json() == {"data": {"findScene": None}}


def test_find_scenes_by_ids_returns_those_scenes_in_the_order_asked(stash: StashEmulator, http: requests.Session) -> None:
    response = post(http, stash, q.FIND_SCENES_BY_IDS, {"ids": ["7", "2", "19"]}, "FindScenesByIds")
    result = data(response)["findScenes"]
    assert result["count"] == 3
    assert result["scenes"] == [expected_scene(stash, SCENES[i - 1]) for i in (7, 2, 19)]


def test_find_scenes_by_ids_fails_whole_field_when_one_id_is_unknown(stash: StashEmulator, http: requests.Session) -> None:
    response = post(http, stash, q.FIND_SCENES_BY_IDS, {"ids": ["1", "404"]}, "FindScenesByIds")
    payload = response.json()
    assert response.status_code == 200
    assert payload["data"] == {"findScenes": None}
    assert "404" in payload["errors"][0]["message"]


def test_find_scenes_page_two_of_ten_with_total_count(stash: StashEmulator, http: requests.Session) -> None:
    response = post(http, stash, q.FIND_SCENES_PAGE, {"page": 2, "perPage": 10}, "FindScenesPage")
    assert data(response)["findScenes"]["count"] == 25
    assert page_ids(response) == [str(i) for i in range(11, 21)]


def test_find_scenes_per_page_minus_one_returns_all(stash: StashEmulator, http: requests.Session) -> None:
    response = post(http, stash, q.FIND_SCENES_PAGE, {"page": 1, "perPage": -1}, "FindScenesPage")
    assert page_ids(response) == [str(i) for i in range(1, 26)]


def test_find_scenes_without_per_page_returns_25(stash: StashEmulator, http: requests.Session) -> None:
    stash.reset(make_dataset(30).scenes)
    response = post(http, stash, "{ findScenes { count scenes { id } } }")
    assert data(response)["findScenes"]["count"] == 30
    assert len(page_ids(response)) == 25


def test_updated_since_finds_scene_after_update_scene(stash: StashEmulator, http: requests.Session) -> None:
    since = max(scene["updated_at"] for scene in SCENES)
    stash.update_scene("4", title="Renamed")
    variables = {"since": since, "page": 1, "perPage": 50}
    response = post(http, stash, q.FIND_SCENES_UPDATED_SINCE, variables, "FindScenesUpdatedSince")
    result = data(response)["findScenes"]
    assert result["count"] == 1
    assert result["scenes"][0]["title"] == "Renamed"
    assert result["scenes"][0]["updated_at"] > since


def test_two_updates_in_one_second_get_increasing_updated_at(stash: StashEmulator) -> None:
    first = stash.update_scene("1", title="a")["updated_at"]
    second = stash.update_scene("2", title="b")["updated_at"]
    assert second > first


def test_scene_paths_page_returns_only_ids_updated_at_and_paths(stash: StashEmulator, http: requests.Session) -> None:
    response = post(http, stash, q.FIND_SCENE_PATHS_PAGE, {"page": 1, "perPage": 2}, "FindScenePathsPage")
    assert data(response)["findScenes"] == {
        "count": 25,
        "scenes": [
            {"id": s["id"], "updated_at": s["updated_at"], "files": [{"path": s["files"][0]["path"]}]} for s in SCENES[:2]
        ],
    }


def test_plugin_settings_return_only_saved_values(stash: StashEmulator, http: requests.Session) -> None:
    response = post(http, stash, q.PLUGIN_SETTINGS, {"include": ["stash2plex", "never-saved"]}, "PluginSettings")
    assert data(response) == {"configuration": {"plugins": SAVED_SETTINGS}}


def test_set_plugin_settings_replaces_saved_values(stash: StashEmulator, http: requests.Session) -> None:
    stash.set_plugin_settings("stash2plex", {"dry_run": True})
    response = post(http, stash, q.PLUGIN_SETTINGS, {"include": ["stash2plex"]}, "PluginSettings")
    assert data(response)["configuration"]["plugins"] == {"stash2plex": {"dry_run": True}}


def test_version_query_returns_configured_version(stash: StashEmulator, http: requests.Session) -> None:
    assert data(post(http, stash, q.VERSION, operation="Version")) == {"version": {"version": "v0.27.2"}}


def test_scene_update_mutation_changes_scene_and_bumps_updated_at(stash: StashEmulator, http: requests.Session) -> None:
    before = stash.scene("5")
    tag = next(s["tags"][0] for s in SCENES if s["tags"])
    mutation = """
        mutation Edit($input: SceneUpdateInput!) {
          sceneUpdate(input: $input) { id title rating100 updated_at tags { id name } }
        }"""
    variables = {"input": {"id": "5", "title": "Edited", "rating100": 80, "tag_ids": [tag["id"]]}}
    result = data(post(http, stash, mutation, variables, "Edit"))["sceneUpdate"]
    assert result["title"] == "Edited" and result["rating100"] == 80 and result["tags"] == [tag]
    assert result["updated_at"] > before["updated_at"]
    assert stash.scene("5")["details"] == before["details"]


def test_aliases_and_literal_arguments_shape_the_response(stash: StashEmulator, http: requests.Session) -> None:
    query = r'''{
      first: findScene(id: 1) { name: title }
      byPath: findScenes(scene_filter: {path: {value: "\/data\/videos\/scene_000002.mp4", modifier: EQUALS}}) {
        count scenes { id }
      }
    }'''
    assert data(post(http, stash, query)) == {
        "first": {"name": SCENES[0]["title"]},
        "byPath": {"count": 1, "scenes": [{"id": "2"}]},
    }


def test_variable_default_is_used_when_not_sent(stash: StashEmulator, http: requests.Session) -> None:
    query = "query P($page: Int = 3) { findScenes(filter: {page: $page, per_page: 10, sort: \"id\"}) { scenes { id } } }"
    assert page_ids(post(http, stash, query, {}, "P")) == [str(i) for i in range(21, 26)]


def test_graphql_requests_records_operation_and_variables(stash: StashEmulator, http: requests.Session) -> None:
    post(http, stash, q.FIND_SCENE, {"id": "1"}, "FindScene")
    post(http, stash, "{ version { version } }")
    assert stash.graphql_requests() == [("FindScene", {"id": "1"}), ("version", {})]


# --- auth ------------------------------------------------------------------------------------


def test_missing_api_key_is_401_with_empty_body(stash: StashEmulator) -> None:
    response = requests.post(f"{stash.url}/graphql", json={"query": q.VERSION}, timeout=5)
    assert (response.status_code, response.content) == (401, b"")


def test_wrong_api_key_is_401_with_empty_body(stash: StashEmulator) -> None:
    response = requests.post(f"{stash.url}/graphql", json={"query": q.VERSION}, headers={"ApiKey": "nope"}, timeout=5)
    assert (response.status_code, response.content) == (401, b"")


def test_apikey_query_parameter_is_accepted(stash: StashEmulator) -> None:
    response = requests.post(f"{stash.url}/graphql?apikey={API_KEY}", json={"query": q.VERSION}, timeout=5)
    assert data(response) == {"version": {"version": "v0.27.2"}}


def test_known_session_cookie_is_accepted(stash: StashEmulator) -> None:
    stash.session_cookies.add("MTcwOTk5")
    response = requests.post(f"{stash.url}/graphql", json={"query": q.VERSION}, cookies={"session": "MTcwOTk5"}, timeout=5)
    assert data(response) == {"version": {"version": "v0.27.2"}}


def test_unknown_session_cookie_is_401(stash: StashEmulator) -> None:
    response = requests.post(f"{stash.url}/graphql", json={"query": q.VERSION}, cookies={"session": "stale"}, timeout=5)
    assert response.status_code == 401


def test_no_auth_mode_accepts_requests_without_credentials(stash: StashEmulator) -> None:
    stash.api_key = None
    assert requests.post(f"{stash.url}/graphql", json={"query": q.VERSION}, timeout=5).status_code == 200


# --- errors ----------------------------------------------------------------------------------


def test_syntax_error_is_422_with_errors_and_null_data(stash: StashEmulator, http: requests.Session) -> None:
    response = post(http, stash, "query { findScene(id: 1) { id ")
    assert response.status_code == 422
    assert response.json()["data"] is None and response.json()["errors"][0]["message"]


def test_unknown_scene_field_is_422(stash: StashEmulator, http: requests.Session) -> None:
    response = post(http, stash, "{ findScene(id: 1) { id o_counter } }")
    assert response.status_code == 422
    assert "o_counter" in response.json()["errors"][0]["message"]


def test_unknown_root_field_is_422(stash: StashEmulator, http: requests.Session) -> None:
    response = post(http, stash, "{ allScenes { id } }")
    assert response.status_code == 422
    assert response.json()["data"] is None


def test_fragments_are_rejected_with_422(stash: StashEmulator, http: requests.Session) -> None:
    response = post(http, stash, "{ findScene(id: 1) { ...F } } fragment F on Scene { id }")
    assert response.status_code == 422


def test_wrongly_typed_variable_is_422(stash: StashEmulator, http: requests.Session) -> None:
    response = post(http, stash, q.FIND_SCENES_PAGE, {"page": "two", "perPage": 10}, "FindScenesPage")
    assert response.status_code == 422


def test_missing_required_variable_is_422(stash: StashEmulator, http: requests.Session) -> None:
    assert post(http, stash, q.FIND_SCENE, {}, "FindScene").status_code == 422


# --- images ----------------------------------------------------------------------------------


def test_screenshot_needs_auth(stash: StashEmulator) -> None:
    response = requests.get(f"{stash.url}/scene/1/screenshot?t=1", timeout=5)
    assert (response.status_code, response.content) == (401, b"")


def test_screenshot_is_png_and_changes_after_bump_screenshot(stash: StashEmulator, http: requests.Session) -> None:
    before = http.get(f"{stash.url}/scene/1/screenshot", timeout=5)
    stash.bump_screenshot("1")
    after = http.get(f"{stash.url}/scene/1/screenshot", timeout=5)
    assert before.headers["Content-Type"] == "image/png"
    assert before.content.startswith(PNG_SIGNATURE) and after.content.startswith(PNG_SIGNATURE)
    assert before.content != after.content


def test_screenshot_url_changes_after_bump_screenshot(stash: StashEmulator, http: requests.Session) -> None:
    stash.bump_screenshot("1")
    scene = data(post(http, stash, q.FIND_SCENE, {"id": "1"}, "FindScene"))["findScene"]
    assert scene["paths"]["screenshot"] == f"{stash.url}/scene/1/screenshot?t=2"


def test_performer_image_is_png(stash: StashEmulator, http: requests.Session) -> None:
    performer_id = next(s["performers"][0]["id"] for s in SCENES if s["performers"])
    response = http.get(f"{stash.url}/performer/{performer_id}/image?t=1", timeout=5)
    assert response.status_code == 200 and response.content.startswith(PNG_SIGNATURE)


def test_route_names_count_graphql_operations_and_images(stash: StashEmulator, http: requests.Session) -> None:
    post(http, stash, q.FIND_SCENE, {"id": "1"}, "FindScene")
    post(http, stash, "{ version { version } }")
    http.get(f"{stash.url}/scene/1/screenshot", timeout=5)
    assert stash.request_counts == {
        "POST graphql:FindScene": 1,
        "POST graphql:version": 1,
        "GET screenshot": 1,
    }


# --- faults and outages ----------------------------------------------------------------------


def test_injected_500_answers_next_request_only(stash: StashEmulator, http: requests.Session) -> None:
    stash.faults.fail_next(1, 500, path_prefix="/graphql")
    assert post(http, stash, q.VERSION).status_code == 500
    assert post(http, stash, q.VERSION).status_code == 200


def test_go_down_refuses_connections_and_come_up_serves_again(stash: StashEmulator) -> None:
    stash.go_down()
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{stash.url}/graphql", json={"query": q.VERSION}, headers={"ApiKey": API_KEY}, timeout=2)
    stash.come_up()
    response = requests.post(f"{stash.url}/graphql", json={"query": q.VERSION}, headers={"ApiKey": API_KEY}, timeout=2)
    assert response.status_code == 200


# --- scale and CLI ---------------------------------------------------------------------------


def test_find_scenes_by_50_ids_over_10000_scenes_is_fast(stash: StashEmulator, http: requests.Session) -> None:
    stash.reset(make_dataset(10_000).scenes)
    ids = [str(i) for i in range(9_000, 9_050)]
    started = time.perf_counter()
    for _ in range(10):
        response = post(http, stash, q.FIND_SCENES_BY_IDS, {"ids": ids}, "FindScenesByIds")
    assert page_ids(response) == ids
    assert (time.perf_counter() - started) / 10 < 0.1


def test_cli_goes_down_and_up_on_sigusr1_keeping_its_data(tmp_path: Path) -> None:
    fixture = tmp_path / "stash.json"
    fixture.write_text(json.dumps({"scenes": SCENES[:3]}))
    port = free_port()
    command = [sys.executable, "-m", "tests.emulators.stash", "--port", str(port), "--fixture", str(fixture), "--api-key", "k"]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/graphql"
    query = {"query": "{ findScenes { count } }"}
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("stash emulator listening")
        process.send_signal(signal.SIGUSR1)
        assert process.stdout.readline().strip() == "stash emulator down"
        with pytest.raises(requests.ConnectionError):
            requests.post(url, json=query, headers={"ApiKey": "k"}, timeout=5)
        process.send_signal(signal.SIGUSR1)
        assert process.stdout.readline().strip() == "stash emulator up"
        assert data(requests.post(url, json=query, headers={"ApiKey": "k"}, timeout=5)) == {"findScenes": {"count": 3}}
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_cli_serves_fixture_until_sigterm(tmp_path: Path) -> None:
    fixture = tmp_path / "stash.json"
    fixture.write_text(json.dumps({"scenes": SCENES[:3], "plugin_settings": SAVED_SETTINGS}))
    port = free_port()
    command = [sys.executable, "-m", "tests.emulators.stash", "--port", str(port), "--fixture", str(fixture), "--api-key", "k"]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"stash emulator listening on http://127.0.0.1:{port}"
        response = requests.post(
            f"http://127.0.0.1:{port}/graphql", json={"query": "{ findScenes { count } }"}, headers={"ApiKey": "k"}, timeout=5
        )
        assert data(response) == {"findScenes": {"count": 3}}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
