"""The dead-letter queue: one durable RabbitMQ queue `<prefix>.dlq`, visible in the management UI.

Entries are JSON (`DlqEntry`): scene id, stage, error class, a readable message without secrets,
attempts, deferrals, first and last failure, and the job to replay. The queue has a TTL of
`dlq_retention_days`, so RabbitMQ itself drops old entries. Reading is non-destructive: messages are
fetched unacked and go back when the connection closes; replay and purge ack only what they remove.
With the `stub://` broker the DLQ lives in memory (the demo without RabbitMQ).

At most one entry per scene: `publish` replaces the scene's earlier entry (the latest cause wins;
`count`, `first_seen` and `last_seen` tell its history) and `discard_scenes` removes the entries of
scenes that have since synced. Every scan of the queue holds the DLQ lock, an exclusive RabbitMQ queue
`<prefix>.dlq.lock` that one connection at a time may declare and that disappears with its connection,
so the workers of every host, `dlq list` and the CLI never see each other's half-read queue.
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
LOCK_WAIT_SECONDS = 10.0
RESOURCE_LOCKED = 405


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
    count: int = 1
    first_seen: float | None = None
    last_seen: float | None = None
    job: dict[str, Any]

    def model_post_init(self, _context: Any) -> None:
        self.first_seen = self.first_seen or self.dead_lettered_at
        self.last_seen = self.last_seen or self.dead_lettered_at

    def replacing(self, earlier: list[DlqEntry]) -> DlqEntry:
        """This (latest) entry carrying the history of the scene's `earlier` entries: their count and first time."""
        if not earlier:
            return self
        return self.model_copy(update={
            "count": self.count + sum(e.count for e in earlier),
            "first_seen": min([self.first_seen or self.dead_lettered_at, *(e.first_seen or e.dead_lettered_at for e in earlier)]),
        })

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
    def publish(self, entry: DlqEntry) -> DlqEntry: ...
    def entries(self, limit: int | None = None) -> list[DlqEntry]: ...
    def remove(self, predicate: Predicate, action: Callable[[DlqEntry], None] | None = None) -> list[DlqEntry]: ...
    def count(self) -> int: ...
    def close(self) -> None: ...


def discard_scenes(dlq: DeadLetterQueue, scene_ids: set[str]) -> list[DlqEntry]:
    """Remove the entries of these scenes (they have synced since); returns what was removed."""
    return dlq.remove(lambda entry: entry.scene_id in scene_ids) if scene_ids else []


class MemoryDeadLetterQueue:
    """The DLQ of the in-process (stub) broker."""

    def __init__(self) -> None:
        self._entries: list[DlqEntry] = []
        self._lock = threading.Lock()

    def publish(self, entry: DlqEntry) -> DlqEntry:
        with self._lock:
            earlier = [e for e in self._entries if e.scene_id == entry.scene_id]
            merged = entry.replacing(earlier)
            self._entries = [e for e in self._entries if e.scene_id != entry.scene_id] + [merged]
            return merged

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
    """The DLQ on RabbitMQ. Each operation opens its own short connection (dead letters are rare), takes
    the DLQ lock for scans, and closes it afterwards: what was read and not acked goes back in order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.dlq_name
        self.lock_name = f"{settings.dlq_name}.lock"

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

    def _take_lock(self, connection: Any) -> None:
        """Declare the exclusive lock queue on `connection`, waiting while another connection holds it."""
        import pika.exceptions

        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                connection.channel().queue_declare(self.lock_name, exclusive=True, auto_delete=True)
                return
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != RESOURCE_LOCKED:
                    raise
            if time.monotonic() > deadline:
                log_event(logger, "dlq_lock_timeout", level=logging.WARNING, queue=self.lock_name,
                          waited_s=LOCK_WAIT_SECONDS, fix="a stuck client holds the DLQ lock; its connection ends it")
                return
            connection.sleep(0.02)

    def _locked(self, work: Callable[[Any], Any]) -> Any:
        """`work(channel)` on a fresh connection that holds the DLQ lock; closed afterwards."""
        connection, channel = self._open()
        try:
            self._take_lock(connection)
            return work(channel)
        finally:
            close_quietly(connection)  # releases the lock; unacked messages return to the queue in their order

    def close(self) -> None:
        return None  # no connection outlives an operation

    def _scan(self, channel: Any) -> list[tuple[int, DlqEntry]]:
        """Every entry with its delivery tag, fetched unacked (the caller acks what it removes)."""
        held: list[tuple[int, DlqEntry]] = []
        while True:
            method, _properties, body = channel.basic_get(self.name, auto_ack=False)
            if method is None:
                return held
            try:
                held.append((method.delivery_tag, DlqEntry.model_validate(json.loads(body))))
            except ValueError:
                continue  # not ours: leave it for a person to look at in the management UI

    def _publish_on(self, channel: Any, entry: DlqEntry) -> None:
        import pika

        properties = pika.BasicProperties(delivery_mode=2, content_type="application/json", message_id=entry.id,
                                          headers={"scene_id": entry.scene_id, "error_class": entry.error_class,
                                                   "stage": entry.stage, "count": entry.count})
        channel.basic_publish("", self.name, entry.model_dump_json().encode(), properties, mandatory=True)

    def publish(self, entry: DlqEntry) -> DlqEntry:
        """Publish `entry` (confirmed), then remove the scene's earlier entries it replaces."""
        def work(channel: Any) -> DlqEntry:
            earlier = [(tag, e) for tag, e in self._scan(channel) if e.scene_id == entry.scene_id]
            merged = entry.replacing([e for _, e in earlier])
            self._publish_on(channel, merged)  # first the new entry: a crash here leaves a duplicate, never nothing
            for tag, _ in earlier:
                channel.basic_ack(tag)
            return merged

        return self._with_retry(lambda: self._locked(work))

    def _with_retry(self, operation: Callable[[], Any]) -> Any:
        """Once more on a new connection if RabbitMQ dropped this one (a broker restart)."""
        import pika.exceptions

        try:
            return operation()
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError, pika.exceptions.StreamLostError):
            return operation()

    def entries(self, limit: int | None = None) -> list[DlqEntry]:
        found = [entry for _, entry in self._locked(self._scan)]
        return found[:limit] if limit is not None else found

    def remove(self, predicate: Predicate, action: Callable[[DlqEntry], None] | None = None) -> list[DlqEntry]:
        def work(channel: Any) -> list[DlqEntry]:
            taken: list[DlqEntry] = []
            for tag, entry in self._scan(channel):
                if predicate(entry):
                    if action is not None:
                        action(entry)  # e.g. re-send it: only then is it acked away
                    channel.basic_ack(tag)
                    taken.append(entry)
            return taken

        return list(self._locked(work))

    def count(self) -> int:
        connection, channel = self._open()
        try:
            return int(channel.queue_declare(self.name, passive=True).method.message_count)
        finally:
            close_quietly(connection)


def make_dlq(settings: Settings) -> DeadLetterQueue:
    if settings.uses_stub_broker:
        return MemoryDeadLetterQueue()
    return RabbitDeadLetterQueue(settings)
