"""The stdlib AMQP publisher against the real RabbitMQ, and its agreement with dramatiq."""

from __future__ import annotations

import json
import queue
import time
from urllib.parse import unquote, urlsplit

import pytest

from plugin.amqp import (
    AmqpPublisher,
    PublishError,
    dramatiq_queue_arguments,
    fetch_scene_message,
    fetch_scene_queue,
    parse_broker_url,
    redact_url,
)
from tests.plugin.conftest import PluginFolder
from tests.plugin.helpers import RABBIT_URL, drain_queue, hook_payload, run_entry, update_context

URLS = [
    "amqp://guest:guest@127.0.0.1:5672/",
    "amqp://user:p%40ss%3Aw%2Frd@rabbit.example:5673/%2F",
    "amqp://user:pw@host/myvhost",
    "amqp://host",
    "amqps://u:p@Broker.Example.COM/v%2Fh?heartbeat=30#frag",
    "amqp://u:p@[::1]:5672/",
]


@pytest.mark.parametrize("url", URLS)
def test_parse_broker_url_agrees_with_urllib(url: str) -> None:
    parts = urlsplit(url)
    address = parse_broker_url(url)

    assert address.host == parts.hostname
    assert address.port == (parts.port or (5671 if parts.scheme == "amqps" else 5672))
    assert address.username == (unquote(parts.username) if parts.username else "guest")
    assert address.password == (unquote(parts.password) if parts.password else "guest")
    assert address.vhost == (unquote(parts.path[1:]) if parts.path[1:] else "/")


@pytest.mark.parametrize("url", ["http://host/", "amqp://", "amqp://host:notaport/", "amqp://host:70000/"])
def test_unusable_broker_url_raises_without_echoing_it(url: str) -> None:
    with pytest.raises(PublishError) as excinfo:
        parse_broker_url(url)
    assert url not in str(excinfo.value)


def test_redacted_url_hides_the_password() -> None:
    assert redact_url("amqp://bob:Secr%3At@rabbit:5672/prod") == "amqp://bob:***@rabbit:5672/prod"


def test_invalid_queue_prefix_is_rejected() -> None:
    with pytest.raises(PublishError):
        fetch_scene_queue("bad prefix!")


def test_refused_connection_raises_publish_error_fast(closed_port: int) -> None:
    started = time.perf_counter()
    with pytest.raises(PublishError, match="cannot connect"):
        AmqpPublisher(f"amqp://guest:guest@127.0.0.1:{closed_port}/").connect()
    assert time.perf_counter() - started < 0.5


@pytest.mark.rabbitmq
def test_unroutable_message_is_reported_not_confirmed(hook_prefix: str) -> None:
    with AmqpPublisher(RABBIT_URL) as publisher:
        outcomes = publisher.publish(f"{hook_prefix}.nowhere", [b"lost"])

    assert outcomes[0] is not None and outcomes[0].startswith("unroutable: 312 NO_ROUTE")


@pytest.mark.rabbitmq
def test_wrong_vhost_is_a_publish_error_with_the_reply_code() -> None:
    with pytest.raises(PublishError) as excinfo:
        AmqpPublisher("amqp://guest:guest@127.0.0.1:5672/no-such-vhost").connect()
    assert excinfo.value.reply_code == 530


@pytest.mark.rabbitmq
def test_body_larger_than_frame_max_arrives_whole(plugin_folder: PluginFolder) -> None:
    body = json.dumps({"pad": "x" * 400_000}).encode()
    with AmqpPublisher(RABBIT_URL) as publisher:
        publisher.declare_queue(plugin_folder.queue, arguments=dramatiq_queue_arguments(plugin_folder.queue))
        assert body and len(body) > publisher.frame_max
        assert publisher.publish(plugin_folder.queue, [body]) == [None]

    assert [received for _, received in drain_queue(plugin_folder.queue)] == [body]


@pytest.mark.rabbitmq
def test_many_messages_on_one_connection_are_all_confirmed(plugin_folder: PluginFolder) -> None:
    bodies = [fetch_scene_message(str(i), "Scene.Update.Post", plugin_folder.prefix) for i in range(1, 301)]
    with AmqpPublisher(RABBIT_URL) as publisher:
        publisher.declare_queue(plugin_folder.queue, arguments=dramatiq_queue_arguments(plugin_folder.queue))
        assert publisher.publish(plugin_folder.queue, bodies) == [None] * 300

    assert len(drain_queue(plugin_folder.queue)) == 300


@pytest.mark.rabbitmq
def test_declare_conflict_falls_back_to_a_passive_declare(plugin_folder: PluginFolder) -> None:
    with AmqpPublisher(RABBIT_URL) as publisher:
        assert publisher.declare_queue(plugin_folder.queue, arguments=dramatiq_queue_arguments(plugin_folder.queue))
    with AmqpPublisher(RABBIT_URL) as publisher:
        assert publisher.declare_queue(plugin_folder.queue, arguments={"x-max-priority": 3}) is False
        assert publisher.publish(plugin_folder.queue, [b"still delivered"]) == [None]


@pytest.mark.rabbitmq
def test_hook_declares_the_queue_like_dramatiq_broker_first(plugin_folder: PluginFolder) -> None:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=RABBIT_URL)
    try:
        broker.declare_queue(plugin_folder.queue, ensure=True)
    finally:
        broker.close()
    run = run_entry(hook_payload(plugin_folder.path, update_context(45)))

    assert run.output["queued"] == ["45"] and run.messages("w") == []


@pytest.mark.rabbitmq
def test_dramatiq_broker_declares_the_queue_after_the_hook(plugin_folder: PluginFolder) -> None:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    run_entry(hook_payload(plugin_folder.path, update_context(45)))
    broker = RabbitmqBroker(url=RABBIT_URL)
    try:
        broker.declare_queue(plugin_folder.queue, ensure=True)  # ConnectionClosed on PRECONDITION_FAILED
        assert plugin_folder.queue not in broker.queues_pending
    finally:
        broker.close()


@pytest.mark.rabbitmq
def test_dramatiq_worker_runs_the_actor_for_a_hook_message(plugin_folder: PluginFolder) -> None:
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=RABBIT_URL)
    received: queue.Queue[tuple[str, str]] = queue.Queue()

    def fetch_scene(scene_id: str, hook_type: str) -> None:
        received.put((scene_id, hook_type))

    dramatiq.actor(fetch_scene, actor_name="fetch_scene", queue_name=plugin_folder.queue, broker=broker)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        run_entry(hook_payload(plugin_folder.path, update_context(45)))
        assert received.get(timeout=15) == ("45", "Scene.Update.Post")
    finally:
        worker.stop()
        broker.close()
