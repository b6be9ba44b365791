"""RabbitMQ boot definitions (ops/rabbit_definitions.py) against the real broker."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import pytest
import requests

from ops.rabbit_definitions import account_definitions, queue_definitions, rabbit_password_hash
from pipeline import rabbit
from pipeline.config import explicit_settings
from pipeline.dlq import RabbitDeadLetterQueue
from tests.conftest import RABBIT_URL, ROOT

MANAGEMENT = "http://127.0.0.1:15672"
AUTH = ("guest", "guest")


def import_definitions(definitions: dict) -> None:
    response = requests.post(f"{MANAGEMENT}/api/definitions", json=definitions, auth=AUTH, timeout=30)
    assert response.status_code in (200, 201, 204), response.text


def test_checked_in_definitions_match_the_code_for_default_settings():
    checked_in = json.loads((ROOT / "ops" / "rabbitmq" / "definitions.json").read_text())
    assert checked_in == queue_definitions(explicit_settings())


def test_definitions_declare_the_durable_dlq_with_its_retention():
    queues = {q["name"]: q for q in queue_definitions(explicit_settings(dlq_retention_days=3))["queues"]}
    dlq = queues["stash2plex.dlq"]
    assert dlq["durable"] and dlq["arguments"] == {"x-message-ttl": 3 * 86_400_000}
    assert queues["stash2plex.dlq.synced"]["durable"]


def test_password_hash_is_rabbitmqs_salted_sha256():
    hashed = base64.b64decode(rabbit_password_hash("s3cret", salt=b"\x01\x02\x03\x04"))
    assert hashed[:4] == b"\x01\x02\x03\x04"
    assert hashed[4:] == hashlib.sha256(b"\x01\x02\x03\x04s3cret").digest()


def test_account_never_holds_the_password_or_guest():
    text = json.dumps(account_definitions("ops", "plain-password-xyz"))
    assert "plain-password-xyz" not in text and "guest" not in text
    with pytest.raises(ValueError):
        account_definitions("guest", "guest")
    with pytest.raises(ValueError):
        account_definitions("ops", "")


@pytest.mark.rabbitmq
def test_generated_account_logs_in_to_rabbitmq():
    user, password = f"t{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    import_definitions(account_definitions(user, password))
    try:
        settings = explicit_settings(broker_url=f"amqp://{user}:{password}@127.0.0.1:5672/")
        assert rabbit.server_version(settings)
    finally:
        requests.delete(f"{MANAGEMENT}/api/users/{user}", auth=AUTH, timeout=10)


@pytest.mark.rabbitmq
def test_loaded_definitions_let_workers_and_dlq_declare_their_queues_without_conflict(queue_prefix):
    from actors.runtime import build_runtime

    settings = explicit_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix)
    import_definitions(queue_definitions(settings))
    runtime = build_runtime(settings)
    try:
        for actor in (*runtime.stage_actors.values(), *runtime.maintenance_actors.values()):
            runtime.broker._ensure_queue(actor.queue_name)  # what dramatiq runs before its first publish/consume
        dlq = RabbitDeadLetterQueue(settings)
        assert dlq.count() == 0  # declared with the code's arguments: no PRECONDITION_FAILED
        dlq.close()
    finally:
        runtime.close()
    with rabbit.connection(settings) as opened:
        assert rabbit.passive_declare(opened, settings.dlq_name) is not None
        assert rabbit.passive_declare(opened, f"{settings.dlq_name}.synced") is not None


def test_definitions_give_the_hooks_queue_the_arguments_the_hook_declares():
    from plugin.amqp import dramatiq_queue_arguments

    queues = {q["name"]: q for q in queue_definitions(explicit_settings())["queues"]}
    assert queues["stash2plex.fetch_scene"]["arguments"] == dramatiq_queue_arguments("stash2plex.fetch_scene")
