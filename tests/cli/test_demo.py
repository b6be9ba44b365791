"""`stash2plex demo`: the README's first command, end to end on RabbitMQ and on the in-process broker."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.cli.conftest import run_cli

MANAGEMENT = "http://127.0.0.1:15672/api/queues/%2F"


def demo_env() -> dict[str, str]:
    """A user's environment with nothing configured (the demo must not need anything)."""
    return {"STASH2PLEX_METRICS_PORT": "0"}


@pytest.mark.rabbitmq
def test_demo_syncs_every_scene_through_rabbitmq_and_deletes_its_queues():
    started = time.monotonic()
    result = run_cli(["demo"], demo_env())
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.output
    assert re.search(r"25 scenes synced through fetch_scene -> match_plex -> push_metadata -> sync_performers "
                     r"in [\d.]+ s, via RabbitMQ", result.stdout)
    assert elapsed < 20
    prefix = re.search(r"demo queues (demo-[0-9a-f]+)\.\*", result.stderr).group(1)
    names = [q["name"] for q in requests.get(MANAGEMENT, auth=("guest", "guest"), timeout=5).json()]
    assert not [n for n in names if n.startswith(prefix + ".")]


def test_demo_falls_back_to_the_in_process_broker_when_rabbitmq_is_unreachable(closed_port):
    result = run_cli(["demo", "--broker-url", f"amqp://guest:guest@127.0.0.1:{closed_port}/"], demo_env())
    assert result.returncode == 0, result.output
    assert "25 scenes synced through" in result.stdout and "via in-process broker" in result.stdout
    assert "in-process broker" in result.stderr


def test_demo_shows_plex_before_and_after_for_the_first_scenes():
    result = run_cli(["demo", "--scenes", "5", "--broker-url", "stub://"], demo_env())
    assert result.returncode == 0, result.output
    title_row = next(line for line in result.stdout.splitlines() if "│ title" in line and "scene_000001" in line)
    assert "Window Summer 1" in title_row  # sample scene 1's Stash title, after the sync
    assert "5 scenes synced" in result.stdout
