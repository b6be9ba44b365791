"""Updated-since listings against a Stash that runs in another time zone (UTC-8, UTC+9), over real HTTP.

Stash keeps `updated_at` as local-time text and compares the filter value with it as text, so a
UTC cut-off misses recent edits west of UTC and takes in older ones east of it (the emulator does
the same). `StashClient.iter_scene_pages(since=...)` must return exactly the scenes updated after
the cut-off, whatever the zone, without reading much more than that window.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import requests

from pipeline.config import load_settings
from pipeline import stash_queries as q
from pipeline.stash import StashClient, iso_since
from tests.emulators.sample_data import make_dataset
from tests.emulators.stash import StashEmulator

KEY = "stash-zone-key"
HOURS_AGO = {"1": 0.2, "2": 23.0, "3": 26.0, "4": 30.0, "5": 72.0}  # scene id -> hours since its last edit
WITHIN_24H = ["1", "2"]


def scenes_edited_hours_ago(now: float) -> list[dict]:
    scenes = make_dataset(60).scenes  # the others were last edited in January 2026
    for scene in scenes:
        if scene["id"] in HOURS_AGO:
            moment = datetime.fromtimestamp(now - HOURS_AGO[scene["id"]] * 3600, timezone.utc)
            scene["updated_at"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return scenes


@pytest.fixture(params=[-8, 9], ids=["utc-8", "utc+9"])
def zoned_stash(request: pytest.FixtureRequest) -> Iterator[StashEmulator]:
    zone = timezone(timedelta(hours=request.param))
    with StashEmulator(scenes_edited_hours_ago(time.time()), api_key=KEY, time_zone=zone) as emulator:
        yield emulator  # type: ignore[misc]


def client(stash: StashEmulator) -> StashClient:
    return StashClient(load_settings(stash_url=stash.url, stash_api_key=KEY))


def recent_ids(stash: StashEmulator, per_page: int = 200) -> list[str]:
    return sorted(scene.id for _total, page in client(stash).iter_scene_pages(since=iso_since(86400), per_page=per_page)
                  for scene in page)


def test_the_emulator_keeps_updated_at_in_its_local_time_with_the_offset(zoned_stash: StashEmulator) -> None:
    offset = zoned_stash.time_zone.utcoffset(None)
    stamp = zoned_stash.scene("1")["updated_at"]
    assert datetime.fromisoformat(stamp).utcoffset() == offset


def test_the_emulator_compares_a_utc_cut_off_as_local_text_like_stash(zoned_stash: StashEmulator) -> None:
    response = requests.post(f"{zoned_stash.url}/graphql", headers={"ApiKey": KEY}, json={
        "query": q.FIND_SCENES_UPDATED_SINCE, "variables": {"since": iso_since(86400), "page": 1, "perPage": 100}})
    ids = sorted(s["id"] for s in response.json()["data"]["findScenes"]["scenes"])
    hours = zoned_stash.time_zone.utcoffset(None) / timedelta(hours=1)
    # West of UTC the edit of 23 h ago is missed; east of it the edits of 26 h and 30 h ago come too.
    assert ids == (["1"] if hours < 0 else ["1", "2", "3", "4"])


def test_sync_recent_cut_off_finds_exactly_the_scenes_edited_in_the_window(zoned_stash: StashEmulator) -> None:
    assert recent_ids(zoned_stash) == WITHIN_24H


def test_a_scene_edited_now_is_found_whatever_the_zone(zoned_stash: StashEmulator) -> None:
    zoned_stash.update_scene("40", title="Edited just now")
    assert recent_ids(zoned_stash) == sorted([*WITHIN_24H, "40"])


def test_paging_stops_soon_after_the_cut_off_instead_of_reading_the_widened_window(zoned_stash: StashEmulator) -> None:
    zoned_stash.reset_requests()
    assert recent_ids(zoned_stash, per_page=1) == WITHIN_24H
    pages = [name for name, _vars in zoned_stash.graphql_requests() if name == "FindScenesUpdatedSince"]
    assert len(pages) <= 3  # scenes 1 and 2, then the first scene older than the cut-off


def test_the_last_page_carries_the_exact_total(zoned_stash: StashEmulator) -> None:
    pages = list(client(zoned_stash).iter_scene_pages(since=iso_since(86400), per_page=1))
    assert pages[-1][0] == len(WITHIN_24H)
