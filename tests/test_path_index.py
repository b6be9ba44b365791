"""The path index against the Plex emulator over HTTP: what a refresh costs, and one refresh per
cooldown for every process sharing a `data_dir`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings
from pipeline.matching import Matcher, PathIndex
from pipeline.plex import PlexClient
from pipeline.state import StateStore
from tests.conftest import PLEX_TOKEN, ROOT
from tests.emulators.plex import PlexEmulator
from tests.emulators.sample_data import make_dataset, make_plex_item

LIBRARY = 2_000
SCANNED_AT = 1_780_000_000  # a fresh scan: every item has the same addedAt


def path_of(index: int) -> str:
    return f"/data/videos/scene_{index:06d}.mp4"


@pytest.fixture
def plex() -> Iterator[PlexEmulator]:
    items = [{**item, "addedAt": SCANNED_AT, "updatedAt": SCANNED_AT} for item in make_dataset(LIBRARY).plex_items]
    with PlexEmulator(items, token=PLEX_TOKEN) as emulator:
        yield emulator  # type: ignore[misc]


@pytest.fixture
def settings(plex: PlexEmulator, tmp_path: Path) -> Settings:
    return load_settings(plex_url=plex.url, plex_token=PLEX_TOKEN, data_dir=tmp_path / "data",
                         plex_connect_timeout=2, plex_read_timeout=5)


def matcher_for(settings: Settings) -> Matcher:
    """A matcher with its own Plex client and state connection, as each worker process has."""
    store = StateStore(settings.data_dir)
    return Matcher(PathIndex(PlexClient(settings, store.client_identifier()), store), settings)


@pytest.fixture
def built(settings: Settings, plex: PlexEmulator) -> Matcher:
    matcher = matcher_for(settings)
    matcher.match("1", [path_of(1)])  # builds the index: one paged listing of the library
    plex.reset_requests()
    return matcher


def add_new_item(plex: PlexEmulator, index: int, added_at: int) -> None:
    plex.add_item({**make_plex_item(index, 50_000 + index, path_of(index)), "addedAt": added_at, "updatedAt": added_at})


def test_the_one_time_build_is_paged(settings: Settings, plex: PlexEmulator) -> None:
    matcher_for(settings).match("1", [path_of(1)])
    assert plex.request_counts["GET listing"] == LIBRARY // 500


def test_a_miss_after_a_fresh_scan_lists_the_new_items_not_the_library(built: Matcher, plex: PlexEmulator) -> None:
    for index in range(LIBRARY + 1, LIBRARY + 4):
        add_new_item(plex, index, SCANNED_AT + 5)
    found = built.match("new", [path_of(LIBRARY + 2)])
    assert found.rating_key == 50_000 + LIBRARY + 2
    assert plex.request_counts["GET listing"] == 1 and plex.listed_items <= 100


def test_new_items_filling_several_pages_cost_one_page_each_plus_one(built: Matcher, plex: PlexEmulator) -> None:
    for index in range(LIBRARY + 1, LIBRARY + 251):
        add_new_item(plex, index, SCANNED_AT + 60)
    built.match("new", [path_of(LIBRARY + 250)])
    assert plex.request_counts["GET listing"] <= 4  # 250 new items, 100 a page


def test_a_miss_of_a_file_plex_does_not_have_costs_one_short_listing(built: Matcher, plex: PlexEmulator) -> None:
    from pipeline.errors import NotInPlexYet

    with pytest.raises(NotInPlexYet):
        built.match("gone", ["/data/videos/never_scanned.mp4"])
    assert plex.request_counts["GET listing"] == 1 and plex.listed_items <= 100


def test_an_item_shown_late_with_an_older_added_at_is_still_found(built: Matcher, plex: PlexEmulator) -> None:
    add_new_item(plex, LIBRARY + 1, SCANNED_AT - 30)  # committed after the build, addedAt inside the slack
    assert built.match("late", [path_of(LIBRARY + 1)]).rating_key == 50_000 + LIBRARY + 1


def test_the_listing_asks_plex_to_filter_by_added_at(built: Matcher, plex: PlexEmulator) -> None:
    add_new_item(plex, LIBRARY + 1, SCANNED_AT + 5)
    built.match("new", [path_of(LIBRARY + 1)])
    [listing] = [r for r in plex.requests if r.path.endswith("/all") and r.method == "GET"]
    assert int(listing.param("addedAt>>") or 0) < SCANNED_AT and listing.param("sort") == "addedAt:desc"


def test_a_second_miss_within_the_cooldown_asks_plex_nothing(built: Matcher, plex: PlexEmulator) -> None:
    from pipeline.errors import NotInPlexYet

    for _ in range(3):
        with pytest.raises(NotInPlexYet):
            built.match("gone", ["/data/videos/never_scanned.mp4"])
    assert plex.request_counts["GET listing"] == 1


def test_processes_sharing_a_data_dir_share_the_cooldown(built: Matcher, settings: Settings, plex: PlexEmulator) -> None:
    from pipeline.errors import NotInPlexYet

    script = (
        "import sys; from pathlib import Path; from pipeline.config import load_settings; "
        "from pipeline.state import StateStore; from pipeline.matching import PathIndex; "
        "from pipeline.plex import PlexClient; "
        "s = load_settings(plex_url=sys.argv[1], plex_token=sys.argv[2], data_dir=Path(sys.argv[3])); "
        "store = StateStore(s.data_dir); print(PathIndex(PlexClient(s, store.client_identifier()), store).refresh())"
    )
    add_new_item(plex, LIBRARY + 1, SCANNED_AT + 5)
    other = subprocess.run([sys.executable, "-c", script, plex.url, PLEX_TOKEN, str(settings.data_dir)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert other.stdout.strip() == "1"  # the other process refreshed and found the new item
    assert built.match("new", [path_of(LIBRARY + 1)]).rating_key == 50_000 + LIBRARY + 1  # from the shared index
    add_new_item(plex, LIBRARY + 2, SCANNED_AT + 6)
    with pytest.raises(NotInPlexYet):
        built.match("newer", [path_of(LIBRARY + 2)])  # the other process's refresh started the cooldown
    assert plex.request_counts["GET listing"] == 1  # the other process's one refresh, nothing from this one


def test_expect_news_lets_the_next_miss_refresh_within_the_cooldown(built: Matcher, plex: PlexEmulator) -> None:
    from pipeline.errors import NotInPlexYet

    with pytest.raises(NotInPlexYet):
        built.match("gone", ["/data/videos/never_scanned.mp4"])
    built.index.expect_news()
    add_new_item(plex, LIBRARY + 1, SCANNED_AT + 5)
    assert built.match("new", [path_of(LIBRARY + 1)]).rating_key == 50_000 + LIBRARY + 1
    assert plex.request_counts["GET listing"] == 2


def test_processes_starting_together_build_the_index_once(settings: Settings, plex: PlexEmulator) -> None:
    import threading

    from tests.conftest import wait_for

    first, second = matcher_for(settings), matcher_for(settings)
    builder = threading.Thread(target=first.index.ensure_built)
    builder.start()
    wait_for(lambda: first.index.store.index_refresh_running() or plex.request_counts["GET listing"] > 0,
             timeout=10, interval=0.005, message="the first build to start")
    assert second.match("2", [path_of(2)]).rating_key == 1002  # waited for the first build, then looked up
    builder.join(timeout=30)
    assert plex.request_counts["GET listing"] == LIBRARY // 500  # one paged build for both


def test_a_miss_right_after_the_build_refreshes_at_once(built: Matcher, plex: PlexEmulator) -> None:
    add_new_item(plex, LIBRARY + 1, SCANNED_AT + 5)
    assert built.match("new", [path_of(LIBRARY + 1)]).rating_key == 50_000 + LIBRARY + 1
