"""`sync --recent` and `reconcile --scope` against a Stash in UTC-8 and in UTC+9: nothing missed, nothing extra.

The Stash emulator runs in the zone and compares `updated_at` as local-time text, as Stash does
(see tests/test_stash_time_zones.py for the client-level tests and the cost).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from tests.cli.conftest import queued_jobs
from tests.conftest import STASH_KEY
from tests.emulators.sample_data import Dataset
from tests.emulators.stash import StashEmulator

HOURS_AGO = {"1": 0.2, "2": 23.0, "3": 26.0, "4": 30.0, "5": 72.0}  # scene id -> hours since its last edit
WITHIN_24H = ["1", "2"]
WITHIN_7D = ["1", "2", "3", "4", "5"]


@pytest.fixture(params=[-8, 9], ids=["utc-8", "utc+9"])
def stash(request: pytest.FixtureRequest, dataset: Dataset) -> Iterator[StashEmulator]:
    """The dataset's Stash, run in UTC-8 or UTC+9, with scenes 1-5 last edited 0.2 h to 3 days ago."""
    now = time.time()
    scenes = [dict(scene) for scene in dataset.scenes]
    for scene in scenes:
        if scene["id"] in HOURS_AGO:
            moment = datetime.fromtimestamp(now - HOURS_AGO[scene["id"]] * 3600, timezone.utc)
            scene["updated_at"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    zone = timezone(timedelta(hours=request.param))
    with StashEmulator(scenes, api_key=STASH_KEY, time_zone=zone) as emulator:
        yield emulator  # type: ignore[misc]


@pytest.mark.rabbitmq
def test_sync_recent_enqueues_exactly_the_scenes_edited_in_the_window(cli, queue_prefix, stash):
    result = cli("sync", "--recent", "24h")
    assert result.returncode == 0, result.output
    assert sorted(j["scene_id"] for b in queued_jobs(f"{queue_prefix}.fetch_scene") for j in b) == WITHIN_24H


def test_reconcile_scope_24h_compares_exactly_the_scenes_edited_in_the_window(cli, stash):
    report = cli("reconcile", "--scope", "24h", "--dry-run", "--json").json()
    assert report["scanned"] == len(WITHIN_24H)
    assert sorted(s["scene_id"] for s in report["differs"]) == WITHIN_24H


def test_reconcile_scope_7d_compares_exactly_the_scenes_edited_in_the_week(cli, stash):
    report = cli("reconcile", "--scope", "7d", "--dry-run", "--json").json()
    assert sorted(s["scene_id"] for s in report["differs"]) == WITHIN_7D
