"""The one pika path to RabbitMQ outside dramatiq: the DLQ, queue depths, peeks and clean-ups.

The workers' dramatiq broker moves the stage messages; everything else that talks AMQP from
Python (the DLQ publisher in the workers, `status`, `dlq ...`, `doctor`, the demo's clean-up)
opens its connection here, with bounded timeouts. The Stash hook keeps its own stdlib client
(plugin/amqp.py): pika costs ~90 ms to import. Failures become typed errors whose messages hold
the redacted URL only: `BrokerUnreachable` (transient) and `BrokerRefused` (credentials, vhost).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from pipeline.broker_address import dead_queue, delay_queue, dlq_name, queue_name, redact_url
from pipeline.config import Settings
from pipeline.errors import BrokerRefused, BrokerUnreachable
from pipeline.stages import MAINTENANCE_QUEUE, STAGES

CONNECT_TIMEOUT_SECONDS = 3.0


def connect(settings: Settings, timeout: float = CONNECT_TIMEOUT_SECONDS) -> Any:
    """A pika BlockingConnection to `broker_url`, or a typed error within about `timeout` seconds."""
    import pika
    import pika.exceptions as amqp_errors

    where = redact_url(settings.broker_url)
    if settings.uses_stub_broker:
        raise BrokerUnreachable("broker_url is stub:// (the in-process broker): there is no RabbitMQ to talk to")
    parameters = pika.URLParameters(settings.broker_url)
    parameters.socket_timeout = timeout
    parameters.stack_timeout = timeout + 2
    parameters.blocked_connection_timeout = timeout + 2
    parameters.connection_attempts = 1
    try:
        return pika.BlockingConnection(parameters)
    except (amqp_errors.ProbableAuthenticationError, amqp_errors.AuthenticationError):
        raise BrokerRefused(f"RabbitMQ at {where} refused the user or password") from None
    except amqp_errors.ProbableAccessDeniedError:
        raise BrokerRefused(f"RabbitMQ at {where} denied access to the virtual host") from None
    except (amqp_errors.AMQPError, OSError) as exc:
        raise BrokerUnreachable(f"RabbitMQ at {where} is unreachable ({type(exc).__name__})") from None


def close_quietly(connection: Any) -> None:
    """Close a connection that may already be broken (then there is nothing left to close)."""
    import pika.exceptions as amqp_errors

    if connection is not None and connection.is_open:
        with suppress(amqp_errors.AMQPError, OSError):
            connection.close()


@contextmanager
def connection(settings: Settings, timeout: float = CONNECT_TIMEOUT_SECONDS) -> Iterator[Any]:
    """A short-lived connection, closed afterwards (unacked messages then return to their queue)."""
    opened = connect(settings, timeout)
    try:
        yield opened
    finally:
        close_quietly(opened)


def server_version(settings: Settings) -> str:
    """The version RabbitMQ reports when we connect (proves it is reachable with these credentials)."""
    with connection(settings) as opened:
        properties = getattr(opened._impl, "server_properties", {}) or {}
        version = properties.get("version", b"?")
        return version.decode() if isinstance(version, bytes) else str(version)


def passive_declare(opened: Any, name: str) -> Any | None:
    """The queue's declare-ok frame (message and consumer counts), or None when it does not exist."""
    import pika.exceptions

    channel = opened.channel()
    try:
        method = channel.queue_declare(name, passive=True).method
    except pika.exceptions.ChannelClosedByBroker:
        return None  # the broker closed this channel; the connection stays usable
    channel.close()
    return method


def queue_depth(settings: Settings, name: str) -> int:
    """Ready messages waiting in `name` (0 for a queue that does not exist)."""
    with connection(settings) as opened:
        method = passive_declare(opened, name)
    return method.message_count if method is not None else 0


def peek_first(settings: Settings, name: str) -> bytes | None:
    """The body of the first message in `name`, left in the queue (None when empty or absent)."""
    with connection(settings) as opened:
        if passive_declare(opened, name) is None:
            return None
        method, _properties, body = opened.channel().basic_get(name, auto_ack=False)
        return bytes(body) if method is not None else None


def delete_queues(settings: Settings) -> None:
    """Delete every queue of this prefix: stages and maintenance with their `.DQ`/`.XQ`, and the DLQ."""
    prefix = settings.queue_prefix
    with connection(settings) as opened:
        channel = opened.channel()
        for actor in (*(stage.actor_name for stage in STAGES), MAINTENANCE_QUEUE):
            queue = queue_name(prefix, actor)
            for name in (queue, delay_queue(queue), dead_queue(queue)):
                channel.queue_delete(name)
        channel.queue_delete(dlq_name(prefix))
        channel.queue_delete(f"{dlq_name(prefix)}.synced")
