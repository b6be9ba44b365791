"""The operator side of the broker: queue names, a short AMQP connection, binding the actors, sending work.

Importing `actors` reads the settings from the environment, builds the broker and declares the
actors on it; so `bind_actors(settings)` first exports the settings the CLI resolved (from flags,
`--config` and Stash) into `STASH2PLEX_*` variables, then imports the package, once per process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlsplit

from ops.common import CliError, Unreachable, batches, reapply_logging
from pipeline.config import Settings, redact_url

STAGE_ACTOR_NAMES = ("fetch_scene", "match_plex", "push_metadata", "sync_performers")
MAINTENANCE_QUEUE = "maintenance"  # the periodic actors (actors/schedules.py)
CONNECT_TIMEOUT_SECONDS = 3.0

# Settings a process that imports `actors` must agree on with the CLI that resolved them.
EXPORTED_KEYS = (
    "broker_url", "broker_management_url", "queue_prefix", "data_dir", "dlq_retention_days", "batch_size",
    "stash_url", "stash_api_key", "stash_session_cookie", "plex_url", "plex_token", "log_level", "debug_logging",
    "obfuscate_paths",
)

ProgressCallback = Callable[[int, int], None]


def is_stub(settings: Settings) -> bool:
    return settings.broker_url.startswith("stub://")


def queue_names(settings: Settings) -> list[tuple[str, str]]:
    """(queue, role) for the four stage queues, their `.DQ` delay queues, the DLQ, and the maintenance queue."""
    names = [(settings.queue_name(actor), "stage") for actor in STAGE_ACTOR_NAMES]
    names += [(f"{settings.queue_name(actor)}.DQ", "delay") for actor in STAGE_ACTOR_NAMES]
    return names + [(settings.dlq_name, "dlq"), (settings.queue_name(MAINTENANCE_QUEUE), "maintenance")]


def broker_credentials(settings: Settings) -> tuple[str, str, str]:
    """(user, password, vhost) of `broker_url`, with RabbitMQ's defaults for what it leaves out."""
    parts = urlsplit(settings.broker_url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return unquote(parts.username or "guest"), unquote(parts.password or "guest"), vhost


def unreachable_broker(settings: Settings, detail: str = "") -> Unreachable:
    where = redact_url(settings.broker_url)
    why = f" ({detail})" if detail else ""
    return Unreachable(
        f"RabbitMQ at {where} is unreachable{why}",
        fix="check broker_url (STASH2PLEX_BROKER_URL) and that RabbitMQ runs (`rabbitmq-server -detached`)",
    )


@contextmanager
def amqp_connection(settings: Settings, timeout: float = CONNECT_TIMEOUT_SECONDS) -> Iterator[Any]:
    """A short-lived pika connection; refused credentials and unreachable brokers become CLI errors."""
    import pika
    import pika.exceptions as amqp_errors

    if is_stub(settings):
        raise CliError("broker_url is stub:// (the in-process broker): there is no RabbitMQ to talk to",
                       fix="set broker_url to your RabbitMQ, e.g. amqp://guest:guest@127.0.0.1:5672/", exit_code=2)
    parameters = pika.URLParameters(settings.broker_url)
    parameters.socket_timeout = timeout
    parameters.stack_timeout = timeout + 2
    parameters.blocked_connection_timeout = timeout + 2
    parameters.connection_attempts = 1
    try:
        connection = pika.BlockingConnection(parameters)
    except (amqp_errors.ProbableAuthenticationError, amqp_errors.AuthenticationError):
        raise CliError(f"RabbitMQ at {redact_url(settings.broker_url)} refused the user or password",
                       fix="check the credentials in broker_url (STASH2PLEX_BROKER_URL)") from None
    except amqp_errors.ProbableAccessDeniedError:
        raise CliError(f"RabbitMQ at {redact_url(settings.broker_url)} denied access to the virtual host",
                       fix="check the vhost in broker_url and the user's permissions on it") from None
    except (amqp_errors.AMQPError, OSError) as exc:
        raise unreachable_broker(settings, type(exc).__name__) from None
    try:
        yield connection
    finally:
        if connection.is_open:
            with suppress(amqp_errors.AMQPError, OSError):  # a connection that broke while closing
                connection.close()


def check_broker(settings: Settings) -> str:
    """Connect once; returns the RabbitMQ version it reports. Raises `Unreachable`/`CliError`."""
    with amqp_connection(settings) as connection:
        properties = getattr(connection._impl, "server_properties", {}) or {}
        version = properties.get("version", b"?")
        return version.decode() if isinstance(version, bytes) else str(version)


def delete_queues(settings: Settings) -> None:
    """Delete every queue of this prefix (the four stages and maintenance with `.DQ` and `.XQ`, the DLQ)."""
    with amqp_connection(settings) as connection:
        channel = connection.channel()
        for actor in (*STAGE_ACTOR_NAMES, MAINTENANCE_QUEUE):
            for suffix in ("", ".DQ", ".XQ"):
                channel.queue_delete(f"{settings.queue_name(actor)}{suffix}")
        channel.queue_delete(settings.dlq_name)


def export_settings(settings: Settings) -> None:
    """Put the resolved settings into `STASH2PLEX_*` variables, for `actors` (and child processes)."""
    for key in EXPORTED_KEYS:
        value = getattr(settings, key)
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        os.environ[f"STASH2PLEX_{key.upper()}"] = str(value)


def passive_declare(connection: Any, name: str) -> Any | None:
    """The queue's declare-ok frame (message and consumer counts), or None when it does not exist."""
    import pika.exceptions

    channel = connection.channel()
    try:
        method = channel.queue_declare(name, passive=True).method
    except pika.exceptions.ChannelClosedByBroker:
        return None  # the broker closed this channel; the connection stays usable
    channel.close()
    return method


def queue_depth(settings: Settings, name: str) -> int:
    """Ready messages waiting in `name` (0 for a queue that does not exist)."""
    with amqp_connection(settings) as connection:
        method = passive_declare(connection, name)
    return method.message_count if method is not None else 0


def bind_actors(settings: Settings) -> ModuleType:
    """Import `actors` bound to `settings` (once per process); returns the package.

    Importing it reconfigures the `stash2plex` loggers; the CLI's logging is put back afterwards.
    """
    existing = sys.modules.get("actors")
    if existing is not None and hasattr(existing, "broker"):
        bound = getattr(existing, "_settings", None)  # the settings the package was built with
        if bound is not None and (bound.broker_url, bound.queue_prefix) != (settings.broker_url, settings.queue_prefix):
            raise CliError("the actors are already bound to another broker or queue prefix in this process")
        return existing
    export_settings(settings)
    import actors

    reapply_logging()
    return actors


def send_reconcile(settings: Settings, scope: str, missing_only: bool) -> str:
    """Ask the workers to reconcile (the `reconcile_library` actor); returns the queue it went to."""
    import dramatiq.errors

    actors = bind_actors(settings)
    try:
        actors.reconcile_library.send(scope, missing_only)
    except dramatiq.errors.ConnectionError as exc:
        raise unreachable_broker(settings, type(exc).__name__) from None
    return settings.queue_name(MAINTENANCE_QUEUE)


def send_scene_batches(
    settings: Settings,
    scene_ids: list[str],
    *,
    dry_run: bool = False,
    event: str = "cli",
    on_progress: ProgressCallback | None = None,
) -> int:
    """Send `fetch_scene` messages of `batch_size` jobs each; returns how many messages went out."""
    import dramatiq.errors

    actors = bind_actors(settings)
    sent = 0
    for chunk in batches(scene_ids, settings.batch_size):
        jobs = [{"scene_id": scene_id, "event": event, "dry_run": dry_run} for scene_id in chunk]
        try:
            actors.fetch_scene.send_with_options(kwargs={"jobs": jobs})
        except dramatiq.errors.BrokerError as exc:
            raise unreachable_broker(settings, type(exc).__name__) from None
        sent += len(chunk)
        if on_progress is not None:
            on_progress(sent, len(scene_ids))
    return (len(scene_ids) + settings.batch_size - 1) // settings.batch_size
