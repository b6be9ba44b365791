"""The RabbitMQ DLQ: entries round-trip, reading is non-destructive, and a changed retention is survived."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.dlq import DlqEntry, RabbitDeadLetterQueue
from pipeline.config import load_settings
from tests.conftest import RABBIT_URL

pytestmark = pytest.mark.rabbitmq


def entry(scene_id: str, error_class: str = "permanent") -> DlqEntry:
    return DlqEntry(scene_id=scene_id, stage="performers", actor="sync_performers", error_class=error_class,
                    message="Plex rejected the request (400)", job={"scene_id": scene_id})


def test_listing_does_not_remove_entries(queue_prefix):
    dlq = RabbitDeadLetterQueue(load_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix))
    dlq.publish(entry("1"))
    dlq.publish(entry("2"))
    assert [e.scene_id for e in dlq.entries()] == ["1", "2"]
    assert dlq.count() == 2


def test_remove_takes_only_matching_entries_after_their_action(queue_prefix):
    dlq = RabbitDeadLetterQueue(load_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix))
    dlq.publish(entry("1", "permanent"))
    dlq.publish(entry("2", "not_in_plex"))
    replayed = []
    taken = dlq.remove(lambda e: e.error_class == "not_in_plex", replayed.append)
    assert [e.scene_id for e in taken] == ["2"] and [e.scene_id for e in replayed] == ["2"]
    assert [e.scene_id for e in dlq.entries()] == ["1"]


def test_a_changed_retention_keeps_the_existing_dlq_working(queue_prefix):
    RabbitDeadLetterQueue(load_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix, dlq_retention_days=30)).publish(entry("1"))
    later = RabbitDeadLetterQueue(load_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix, dlq_retention_days=7))
    later.publish(entry("2"))
    assert later.count() == 2


def test_a_listing_shows_each_scene_once_with_its_latest_cause_and_history(queue_prefix):
    dlq = RabbitDeadLetterQueue(load_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix))
    first = entry("1", "not_in_plex")
    dlq.publish(first)
    dlq.publish(entry("2"))
    latest = entry("1", "permanent")
    dlq.publish(latest)
    [one, two] = dlq.entries()
    assert (one.scene_id, two.scene_id) == ("1", "2")
    assert one.error_class == "permanent" and one.count == 2
    assert one.first_seen == first.first_seen and one.last_seen == latest.last_seen


def test_a_tidy_merges_a_scenes_entries_into_one_message(queue_prefix):
    dlq = RabbitDeadLetterQueue(load_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix))
    for error_class in ("not_in_plex", "transient", "permanent"):
        dlq.publish(entry("1", error_class))
    dlq.publish(entry("2"))
    assert dlq.count() == 4
    report = dlq.tidy()
    assert (report.merged, report.cleared, report.kept) == (2, 0, 2)
    assert dlq.count() == 2
    [one, _two] = dlq.entries()
    assert one.count == 3 and one.error_class == "permanent"


def test_a_scene_that_synced_after_its_failure_loses_its_entry_at_the_next_tidy(queue_prefix):
    dlq = RabbitDeadLetterQueue(load_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix))
    dlq.publish(entry("1"))
    dlq.publish(entry("2"))
    dlq.note_synced(["1", "9"], time.time() + 1)
    assert dlq.tidy().cleared == 1
    assert [e.scene_id for e in dlq.entries()] == ["2"]


def test_a_failure_after_the_sync_note_keeps_the_entry(queue_prefix):
    dlq = RabbitDeadLetterQueue(load_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix))
    dlq.note_synced(["1"], time.time() - 60)
    dlq.publish(entry("1"))
    assert dlq.tidy().cleared == 0
    assert [e.scene_id for e in dlq.entries()] == ["1"]


def test_a_tidy_with_nothing_to_do_rewrites_nothing(queue_prefix):
    dlq = RabbitDeadLetterQueue(load_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix))
    for scene_id in ("1", "2", "3"):
        dlq.publish(entry(scene_id))
    ids = [e.id for e in dlq.entries()]
    assert dlq.tidy().kept == 3
    assert [e.id for e in dlq.entries()] == ids


def test_dead_letters_and_tidies_at_the_same_time_end_with_one_entry_per_scene(queue_prefix):
    settings = load_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix)

    def dead_letter(n: int) -> None:
        RabbitDeadLetterQueue(settings).publish(entry(str(n % 3)))
        if n % 4 == 0:
            RabbitDeadLetterQueue(settings).tidy()

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(dead_letter, range(24)))
    dlq = RabbitDeadLetterQueue(settings)
    dlq.tidy()
    assert dlq.count() == 3
    assert sorted((e.scene_id, e.count) for e in dlq.entries()) == [("0", 8), ("1", 8), ("2", 8)]


def test_listing_while_another_client_dead_letters_sees_every_entry(queue_prefix):
    settings = load_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix)
    dlq = RabbitDeadLetterQueue(settings)
    for scene_id in map(str, range(30)):
        dlq.publish(entry(scene_id))
    with ThreadPoolExecutor(max_workers=2) as pool:
        writer = pool.submit(lambda: [RabbitDeadLetterQueue(settings).publish(entry(str(n))) for n in range(30, 40)])
        listings = [len(RabbitDeadLetterQueue(settings).entries()) for _ in range(5)]
        writer.result()
    assert all(30 <= seen <= 40 for seen in listings)  # never a half-read queue
    assert dlq.count() == 40


def test_the_dlq_lock_queue_is_gone_after_each_operation(queue_prefix):
    settings = load_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix)
    RabbitDeadLetterQueue(settings).publish(entry("1"))
    assert passive_exists(settings, f"{queue_prefix}.dlq") and not passive_exists(settings, f"{queue_prefix}.dlq.lock")


def passive_exists(settings, name: str) -> bool:
    from pipeline import rabbit

    with rabbit.connection(settings) as opened:
        return rabbit.passive_declare(opened, name) is not None
