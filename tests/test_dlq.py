"""The RabbitMQ DLQ: entries round-trip, reading is non-destructive, and a changed retention is survived."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.dlq import DlqEntry, RabbitDeadLetterQueue, discard_scenes
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


def test_a_scene_keeps_one_entry_with_the_latest_cause_and_its_history(queue_prefix):
    dlq = RabbitDeadLetterQueue(load_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix))
    first = dlq.publish(entry("1", "not_in_plex"))
    dlq.publish(entry("2"))
    latest = dlq.publish(entry("1", "permanent"))
    [one] = [e for e in dlq.entries() if e.scene_id == "1"]
    assert dlq.count() == 2
    assert one.error_class == "permanent" and one.count == 2
    assert one.first_seen == first.first_seen and one.last_seen == latest.last_seen >= one.first_seen


def test_discarding_a_scene_removes_only_its_entry(queue_prefix):
    dlq = RabbitDeadLetterQueue(load_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix))
    dlq.publish(entry("1"))
    dlq.publish(entry("2"))
    assert [e.scene_id for e in discard_scenes(dlq, {"1", "9"})] == ["1"]
    assert [e.scene_id for e in dlq.entries()] == ["2"]


def test_concurrent_dead_letters_of_one_scene_leave_one_entry(queue_prefix):
    settings = load_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix)
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda _n: RabbitDeadLetterQueue(settings).publish(entry("5")), range(12)))
    [only] = RabbitDeadLetterQueue(settings).entries()
    assert only.scene_id == "5" and only.count == 12


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
