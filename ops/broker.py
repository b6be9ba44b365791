"""The operator side of the broker: checking RabbitMQ, and a runtime for the commands that send work.

Commands that only look (status, dlq list/show/purge, doctor's RabbitMQ check) use the pika admin
path of `pipeline.rabbit` and never build a runtime. Commands that send work (sync, reconcile,
dlq replay) build one with the settings they resolved (`open_runtime`), send through its actors,
and close it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ops.common import CliError, Unreachable, batches
from pipeline import rabbit
from pipeline.broker_address import redact_url
from pipeline.config import Settings
from pipeline.errors import BrokerRefused, BrokerUnreachable
from pipeline.models import Job

if TYPE_CHECKING:
    from actors.runtime import Runtime

ProgressCallback = Callable[[int, int], None]
BROKER_FIX = "check broker_url (STASH2PLEX_BROKER_URL) and that RabbitMQ runs (`rabbitmq-server -detached`)"


def unreachable_broker(settings: Settings, detail: str = "") -> Unreachable:
    where = redact_url(settings.broker_url)
    why = f" ({detail})" if detail else ""
    return Unreachable(f"RabbitMQ at {where} is unreachable{why}", fix=BROKER_FIX)


def broker_failure(settings: Settings, error: BrokerUnreachable | BrokerRefused) -> CliError:
    """The CLI form of a broker error, with its fix."""
    if isinstance(error, BrokerRefused):
        return CliError(str(error), fix="check the user, password and vhost in broker_url (STASH2PLEX_BROKER_URL)")
    if settings.uses_stub_broker:
        return CliError(str(error), fix="set broker_url to your RabbitMQ, e.g. amqp://guest:guest@127.0.0.1:5672/",
                        exit_code=2)
    return Unreachable(str(error), fix=BROKER_FIX)


def check_broker(settings: Settings) -> str:
    """Connect once; returns the RabbitMQ version it reports. Raises `Unreachable`/`CliError`."""
    try:
        return rabbit.server_version(settings)
    except (BrokerUnreachable, BrokerRefused) as error:
        raise broker_failure(settings, error) from None


@contextmanager
def open_runtime(settings: Settings) -> Iterator[Runtime]:
    """A runtime bound to `settings` for sending work; its connections are closed afterwards.

    A failure to reach RabbitMQ while sending becomes `Unreachable`.
    """
    import dramatiq.errors

    from actors.runtime import build_runtime

    runtime = build_runtime(settings)
    try:
        yield runtime
    except dramatiq.errors.BrokerError as exc:
        raise unreachable_broker(settings, type(exc).__name__) from None
    finally:
        runtime.close()


def send_reconcile(settings: Settings, scope: str, missing_only: bool) -> str:
    """Ask the workers to reconcile (the `reconcile_library` actor); returns the queue it went to."""
    with open_runtime(settings) as runtime:
        return runtime.request_reconcile(scope, missing_only)


def send_scene_batches(
    runtime: Runtime,
    scene_ids: list[str],
    *,
    dry_run: bool = False,
    event: str = "cli",
    on_progress: ProgressCallback | None = None,
) -> int:
    """Send `fetch_scene` messages of `batch_size` jobs each; returns how many messages went out."""
    sent = messages = 0
    for chunk in batches(scene_ids, runtime.settings.batch_size):
        runtime.send("fetch", [Job(scene_id=scene_id, event=event, dry_run=dry_run) for scene_id in chunk])
        sent += len(chunk)
        messages += 1
        if on_progress is not None:
            on_progress(sent, len(scene_ids))
    return messages
