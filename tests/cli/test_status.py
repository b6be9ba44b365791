"""`stash2plex status`: queue depths from the management API (or AMQP), DLQ, breakers, outcomes."""

from __future__ import annotations

import time

import pytest

from pipeline.state import StateStore
from tests.cli.conftest import publish_dead_letter

ACTORS = ("fetch_scene", "match_plex", "push_metadata", "sync_performers")
QUEUE_KEYS = {"name": str, "role": str, "ready": int, "unacked": (int, type(None)), "consumers": (int, type(None)),
              "exists": bool}


def assert_typed(data: dict, schema: dict) -> None:
    for key, kind in schema.items():
        assert key in data, f"missing {key}"
        assert isinstance(data[key], kind), f"{key}={data[key]!r} is not {kind}"


@pytest.mark.rabbitmq
def test_status_json_has_every_key_typed_with_counts_from_the_management_api(cli, queue_prefix):
    entry = publish_dead_letter(queue_prefix, "4", error_class="not_in_plex", age_days=2)
    result = cli("status", "--json")
    assert result.returncode == 0, result.output
    status = result.json()
    assert_typed(status, {"generated_at": float, "broker": dict, "queue_prefix": str, "queues": list, "dlq": dict,
                          "breakers": list, "synced_last_hour": dict, "last_error": (dict, type(None))})
    assert_typed(status["broker"], {"url": str, "management_url": str, "reachable": bool, "source": str,
                                    "unacked_known": bool, "error": type(None), "management_error": type(None)})
    assert status["broker"]["source"] == "management" and status["broker"]["unacked_known"] is True
    names = [q["name"] for q in status["queues"]]
    for actor in ACTORS:
        assert f"{queue_prefix}.{actor}" in names and f"{queue_prefix}.{actor}.DQ" in names
    assert f"{queue_prefix}.dlq" in names
    for queue in status["queues"]:
        assert_typed(queue, QUEUE_KEYS)
        assert isinstance(queue["unacked"], int)
    assert status["dlq"]["size"] == 1
    oldest = status["dlq"]["oldest"]
    assert oldest["id"] == entry.id and oldest["scene_id"] == "4" and oldest["error_class"] == "not_in_plex"
    assert 2 * 86400 - 60 < oldest["age_seconds"] < 2 * 86400 + 60
    assert_typed(status["synced_last_hour"], {"total": int, "by_outcome": dict})


@pytest.mark.rabbitmq
def test_status_without_the_management_api_says_unacked_is_unknown(cli, closed_port):
    result = cli("status", STASH2PLEX_BROKER_MANAGEMENT_URL=f"http://127.0.0.1:{closed_port}")
    assert result.returncode == 0, result.output
    assert "unacked counts unknown" in result.stdout
    status = cli("status", "--json", STASH2PLEX_BROKER_MANAGEMENT_URL=f"http://127.0.0.1:{closed_port}").json()
    assert status["broker"]["source"] == "amqp" and status["broker"]["unacked_known"] is False
    assert f"127.0.0.1:{closed_port}" in status["broker"]["management_error"]
    assert all(q["unacked"] is None for q in status["queues"])


@pytest.mark.rabbitmq
def test_status_shows_the_last_hours_outcomes_breakers_and_last_error(cli, data_dir):
    store = StateStore(data_dir)
    store.record_outcomes([("1", "updated", ""), ("2", "updated", ""), ("3", "dead_letter", "permanent: Plex said 400")])
    store.record_outcomes([("4", "dry_run", "title")])
    store.save_breaker("host:123", "open", 5, time.time(), "Plex at http://x refused the connection")
    status = cli("status", "--json").json()
    assert status["synced_last_hour"] == {"total": 4, "by_outcome": {"updated": 2, "dead_letter": 1, "dry_run": 1}}
    assert status["last_error"]["scene_id"] == "3" and "400" in status["last_error"]["detail"]
    assert status["breakers"][0]["state"] == "open" and status["breakers"][0]["failures"] == 5


def test_status_with_rabbitmq_unreachable_exits_3_and_still_shows_local_state(cli, closed_port):
    result = cli("status", "--json", STASH2PLEX_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{closed_port}/",
                 STASH2PLEX_BROKER_MANAGEMENT_URL=f"http://127.0.0.1:{closed_port}")
    assert result.returncode == 3
    status = result.json()
    assert status["broker"]["reachable"] is False and str(closed_port) in status["broker"]["error"]
    assert status["queues"] == [] and "synced_last_hour" in status
