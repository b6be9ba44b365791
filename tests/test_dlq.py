"""The RabbitMQ DLQ: entries round-trip, reading is non-destructive, and a changed retention is survived."""

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
