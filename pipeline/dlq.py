"""The dead-letter queue: one durable RabbitMQ queue `<prefix>.dlq`, visible in the management UI.

Entries are JSON (`DlqEntry`): scene id, stage, error class, a readable message without secrets,
attempts, deferrals, first and last failure, and the job to replay. The queue has a TTL of
`dlq_retention_days`, so RabbitMQ itself drops old entries. Reading is non-destructive: messages are
fetched unacked and go back when the channel closes; replay and purge ack only what they remove.
With the `stub://` broker the DLQ lives in memory (the demo without RabbitMQ).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, Field

from pipeline.config import Settings
from pipeline.logs import log_event
from pipeline.models import Job
from pipeline.rabbit import close_quietly, connect
from pipeline.stages import stage_named

logger = logging.getLogger("stash2plex.dlq")


class DlqEntry(BaseModel):
    """One dead-lettered job and why."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    scene_id: str
    stage: str
    actor: str
    error_class: str
    message: str
    reason: str = ""
    attempts: int = 0
    deferrals: int = 0
    first_failure: float | None = None
    last_failure: float | None = None
    dead_lettered_at: float = Field(default_factory=time.time)
    job: dict[str, Any]

    @classmethod
    def for_job(cls, job: Job, stage: str, reason: str) -> DlqEntry:
        """The entry of a job whose failure record (error class, message, counts) is already on it."""
        return cls(scene_id=job.scene_id, stage=stage, actor=stage_named(stage).actor_name,
                   error_class=job.error_class or "internal", message=job.last_error or "", reason=reason,
                   attempts=job.attempts, deferrals=job.deferrals, first_failure=job.first_failure,
                   last_failure=job.last_failure, job=job.model_dump(mode="json"))

    def replay_job(self) -> Job:
        """The entry's job with its failure history cleared (a replay starts a fresh retry budget)."""
        return Job.model_validate(self.job).fresh()


Predicate = Callable[[DlqEntry], bool]


class DeadLetterQueue(Protocol):
    def publish(self, entry: DlqEntry) -> None: ...
    def entries(self, limit: int | None = None) -> list[DlqEntry]: ...
    def remove(self, predicate: Predicate, action: Callable[[DlqEntry], None] | None = None) -> list[DlqEntry]: ...
    def count(self) -> int: ...
    def close(self) -> None: ...


class MemoryDeadLetterQueue:
    """The DLQ of the in-process (stub) broker."""

    def __init__(self) -> None:
        self._entries: list[DlqEntry] = []
        self._lock = threading.Lock()

    def publish(self, entry: DlqEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, limit: int | None = None) -> list[DlqEntry]:
        with self._lock:
            return list(self._entries[:limit])

    def remove(self, predicate: Predicate, action: Callable[[DlqEntry], None] | None = None) -> list[DlqEntry]:
        with self._lock:
            taken = [e for e in self._entries if predicate(e)]
            for entry in taken:
                if action is not None:
                    action(entry)
                self._entries.remove(entry)
            return taken

    def count(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        return None


def dlq_arguments(settings: Settings) -> dict[str, Any]:
    """The DLQ's declaration arguments; every declarer (workers, CLI, plugin tasks) uses exactly these."""
    return {"x-message-ttl": settings.dlq_retention_days * 86_400_000}


class RabbitDeadLetterQueue:
    """The DLQ on RabbitMQ, with one pika connection per thread that reconnects after a broker restart."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.dlq_name
        self._local = threading.local()

    def _open(self) -> tuple[Any, Any]:
        import pika.exceptions

        connection = connect(self.settings)
        channel = connection.channel()
        try:
            channel.queue_declare(self.name, durable=True, arguments=dlq_arguments(self.settings))
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 406:
                raise
            # The DLQ exists with another TTL (dlq_retention_days changed): keep using it as it is.
            log_event(logger, "dlq_ttl_differs", level=logging.WARNING, queue=self.name,
                      fix="delete the empty DLQ or set its TTL with a RabbitMQ policy")
            channel = connection.channel()
            channel.queue_declare(self.name, passive=True)
        channel.confirm_delivery()
        return connection, channel

    def _with_channel(self, work: Callable[[Any], Any]) -> Any:
        """Run `work(channel)` on this thread's channel; reconnect once if the connection died."""
        import pika.exceptions

        for attempt in (1, 2):
            if getattr(self._local, "channel", None) is None or self._local.channel.is_closed:
                self._local.connection, self._local.channel = self._open()
            try:
                return work(self._local.channel)
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError, pika.exceptions.StreamLostError):
                self.close()
                if attempt == 2:
                    raise
        return None

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = self._local.channel = None
        close_quietly(connection)

    def publish(self, entry: DlqEntry) -> None:
        import pika

        body = entry.model_dump_json().encode()
        properties = pika.BasicProperties(delivery_mode=2, content_type="application/json", message_id=entry.id,
                                          headers={"scene_id": entry.scene_id, "error_class": entry.error_class,
                                                   "stage": entry.stage})
        self._with_channel(lambda ch: ch.basic_publish("", self.name, body, properties, mandatory=True))

    def _scan(self, channel: Any, visit: Callable[[Any, DlqEntry], bool]) -> None:
        """Fetch every message unacked; `visit` returns True to ack (remove) it. The rest go back."""
        while True:
            method, _properties, body = channel.basic_get(self.name, auto_ack=False)
            if method is None:
                break
            try:
                entry = DlqEntry.model_validate(json.loads(body))
            except ValueError:
                continue  # not ours: leave it for a person to look at in the management UI
            if visit(method, entry):
                channel.basic_ack(method.delivery_tag)

    def _on_fresh_channel(self, work: Callable[[Any], Any]) -> Any:
        connection, channel = self._open()
        try:
            return work(channel)
        finally:
            close_quietly(connection)  # unacked messages return to the queue in their order

    def entries(self, limit: int | None = None) -> list[DlqEntry]:
        found: list[DlqEntry] = []

        def visit(_method: Any, entry: DlqEntry) -> bool:
            if limit is None or len(found) < limit:
                found.append(entry)
            return False

        self._on_fresh_channel(lambda ch: self._scan(ch, visit))
        return found

    def remove(self, predicate: Predicate, action: Callable[[DlqEntry], None] | None = None) -> list[DlqEntry]:
        taken: list[DlqEntry] = []

        def visit(_method: Any, entry: DlqEntry) -> bool:
            if not predicate(entry):
                return False
            if action is not None:
                action(entry)  # e.g. re-send it: only then is it acked away
            taken.append(entry)
            return True

        self._on_fresh_channel(lambda ch: self._scan(ch, visit))
        return taken

    def count(self) -> int:
        return int(self._on_fresh_channel(lambda ch: ch.queue_declare(self.name, passive=True).method.message_count))


def make_dlq(settings: Settings) -> DeadLetterQueue:
    if settings.uses_stub_broker:
        return MemoryDeadLetterQueue()
    return RabbitDeadLetterQueue(settings)
