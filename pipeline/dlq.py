"""The dead-letter queue: one durable RabbitMQ queue `<prefix>.dlq`, visible in the management UI.

Entries are JSON (`DlqEntry`): scene id, stage, error class, a readable message without secrets,
attempts, deferrals, first and last failure, and the job to replay. The queue has a TTL of
`dlq_retention_days`, so RabbitMQ itself drops old entries. Reading is non-destructive: messages are
fetched unacked and go back when the connection closes; replay and purge ack only what they remove.
With the `stub://` broker the DLQ lives in memory (the demo without RabbitMQ).

One entry per scene, at any size. A dead letter is appended (O(1), whatever the DLQ holds), and so is
a note of the scenes that synced (`<prefix>.dlq.synced`, one message per batch). `tidy()` reads the DLQ
once and settles both: the entries of a scene merge into one (the latest cause, with `count` and
`first_seen`/`last_seen`), and a scene that synced after its last failure loses its entry. The workers
tidy every minute and a few seconds after a dead letter or a sync note; listings merge per scene
too, so nobody sees a scene twice. Every scan holds the DLQ lock, an exclusive RabbitMQ queue
`<prefix>.dlq.lock` that one connection at a time may declare and that disappears with its
connection: workers of every host and `dlq list` never see each other's half-read queue.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
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
    def publish(self, entry: DlqEntry) -> None: ...
    def note_synced(self, scene_ids: list[str], at: float) -> None: ...
    def tidy(self) -> TidyReport: ...
    def entries(self, limit: int | None = None) -> list[DlqEntry]: ...
    def remove(self, predicate: Predicate, action: Callable[[DlqEntry], None] | None = None) -> list[DlqEntry]: ...
    def count(self) -> int: ...
    def close(self) -> None: ...


class TidyReport(BaseModel):
    merged: int = 0   # entries folded into another entry of their scene
    cleared: int = 0  # entries of scenes that synced since
    kept: int = 0     # entries left, one per scene


def one_per_scene(entries: Iterable[DlqEntry]) -> list[DlqEntry]:
    """Each scene's entries as one: the latest cause carrying their count and first time (oldest first)."""
    by_scene: dict[str, list[DlqEntry]] = defaultdict(list)
    for entry in entries:
        by_scene[entry.scene_id].append(entry)
    merged = []
    for group in by_scene.values():
        latest = max(group, key=lambda e: e.last_seen or e.dead_lettered_at)
        merged.append(latest.replacing([e for e in group if e is not latest]))
    return sorted(merged, key=lambda e: e.first_seen or e.dead_lettered_at)


def read_sync_notes(bodies: Iterable[bytes]) -> dict[str, float]:
    """scene id -> the latest time it synced, from `<prefix>.dlq.synced` notes (unreadable ones are skipped)."""
    synced: dict[str, float] = {}
    for body in bodies:
        try:
            note = json.loads(body)
            at = float(note["at"])
            for scene_id in map(str, note["scene_ids"]):
                synced[scene_id] = max(synced.get(scene_id, at), at)
        except (ValueError, KeyError, TypeError):
            log_event(logger, "sync_note_unreadable", level=logging.WARNING, body=repr(body[:80]))
    return synced


def synced_since(entry: DlqEntry, synced: dict[str, float]) -> bool:
    """The entry's scene synced at or after its last failure (so the entry goes)."""
    return synced.get(entry.scene_id, float("-inf")) >= (entry.last_seen or entry.dead_lettered_at)


class MemoryDeadLetterQueue:
    """The DLQ of the in-process (stub) broker: settled at once."""

    def __init__(self) -> None:
        self._entries: list[DlqEntry] = []
        self._lock = threading.Lock()

    def publish(self, entry: DlqEntry) -> None:
        with self._lock:
            self._entries = one_per_scene([*self._entries, entry])

    def note_synced(self, scene_ids: list[str], at: float) -> None:
        with self._lock:
            synced = {scene_id: at for scene_id in scene_ids}
            self._entries = [entry for entry in self._entries if not synced_since(entry, synced)]

    def tidy(self) -> TidyReport:
        return TidyReport(kept=len(self._entries))

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


def synced_queue_arguments(settings: Settings) -> dict[str, Any]:
    """`<prefix>.dlq.synced` keeps sync notes a day at most (a tidy reads them within a minute)."""
    return {"x-message-ttl": 86_400_000}


class RabbitDeadLetterQueue:
    """The DLQ on RabbitMQ. Appends use this thread's connection (reconnected after a broker restart);
    scans open their own connection holding the DLQ lock and close it: what was read and not acked goes
    back in order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.dlq_name
        self.lock_name = f"{settings.dlq_name}.lock"
        self.synced_name = f"{settings.dlq_name}.synced"
        self._local = threading.local()

    # --- connections ---------------------------------------------------------------------------
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
        channel.queue_declare(self.synced_name, durable=True, arguments=synced_queue_arguments(self.settings))
        channel.confirm_delivery()
        return connection, channel

    def _with_channel(self, work: Callable[[Any], Any]) -> Any:
        """`work(channel)` on this thread's channel; once more on a new connection if the old one died."""
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

    # --- appends -------------------------------------------------------------------------------
    def publish(self, entry: DlqEntry) -> None:
        self._with_channel(lambda ch: self._publish_on(ch, entry))

    def note_synced(self, scene_ids: list[str], at: float) -> None:
        """Tell the next tidy that these scenes synced at `at` (their older entries then go)."""
        import pika

        body = json.dumps({"scene_ids": scene_ids, "at": at}).encode()
        properties = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        self._with_channel(lambda ch: ch.basic_publish("", self.synced_name, body, properties, mandatory=True))

    # --- scans -------------------------------------------------------------------------------
    def _scan(self, channel: Any, queue: str | None = None) -> list[tuple[int, bytes]]:
        """Every message of the queue (the DLQ by default) with its delivery tag, fetched unacked."""
        held: list[tuple[int, bytes]] = []
        while True:
            method, _properties, body = channel.basic_get(queue or self.name, auto_ack=False)
            if method is None:
                return held
            held.append((method.delivery_tag, body))

    @staticmethod
    def _readable(held: list[tuple[int, bytes]]) -> list[tuple[int, DlqEntry]]:
        readable = []
        for tag, body in held:
            try:
                readable.append((tag, DlqEntry.model_validate(json.loads(body))))
            except ValueError:
                continue  # not ours: leave it for a person to look at in the management UI
        return readable

    def tidy(self) -> TidyReport:
        """One entry per scene, none for scenes that synced since their last failure (module docstring).
        Only the scenes that change are rewritten; a DLQ of single, unsynced entries is left as it is."""
        def work(channel: Any) -> TidyReport:
            notes = self._scan(channel, self.synced_name)
            synced = read_sync_notes(body for _tag, body in notes)
            groups: dict[str, list[tuple[int, DlqEntry]]] = defaultdict(list)
            for tag, entry in self._readable(self._scan(channel)):
                groups[entry.scene_id].append((tag, entry))
            report = TidyReport()
            for group in groups.values():
                [latest] = one_per_scene(entry for _, entry in group)
                if synced_since(latest, synced):
                    report.cleared += 1
                elif len(group) > 1:
                    self._publish_on(channel, latest)  # first the merged entry: a crash leaves a duplicate, never a loss
                    report.merged += len(group) - 1
                    report.kept += 1
                else:
                    report.kept += 1
                    continue
                for tag, _ in group:
                    channel.basic_ack(tag)
            for tag, _ in notes:
                channel.basic_ack(tag)
            return report

        return self._locked(work)

    def _publish_on(self, channel: Any, entry: DlqEntry) -> None:
        import pika

        properties = pika.BasicProperties(delivery_mode=2, content_type="application/json", message_id=entry.id,
                                          headers={"scene_id": entry.scene_id, "error_class": entry.error_class,
                                                   "stage": entry.stage, "count": entry.count})
        channel.basic_publish("", self.name, entry.model_dump_json().encode(), properties, mandatory=True)

    def entries(self, limit: int | None = None) -> list[DlqEntry]:
        """One entry per scene (merged as a tidy would), oldest first; nothing is removed."""
        found = one_per_scene(entry for _, entry in self._locked(lambda ch: self._readable(self._scan(ch))))
        return found[:limit] if limit is not None else found

    def remove(self, predicate: Predicate, action: Callable[[DlqEntry], None] | None = None) -> list[DlqEntry]:
        """Remove the scenes whose (merged) entry matches, after `action` succeeded for it."""
        def work(channel: Any) -> list[DlqEntry]:
            held = self._readable(self._scan(channel))
            tags: dict[str, list[int]] = defaultdict(list)
            for tag, entry in held:
                tags[entry.scene_id].append(tag)
            taken: list[DlqEntry] = []
            for entry in one_per_scene(entry for _, entry in held):
                if predicate(entry):
                    if action is not None:
                        action(entry)  # e.g. re-send it: only then is it acked away
                    for tag in tags[entry.scene_id]:
                        channel.basic_ack(tag)
                    taken.append(entry)
            return taken

        return list(self._locked(work))

    def count(self) -> int:
        """Messages in the DLQ (a scene dead-lettered again counts twice until the next tidy)."""
        return int(self._with_channel(lambda ch: ch.queue_declare(self.name, passive=True).method.message_count))


def make_dlq(settings: Settings) -> DeadLetterQueue:
    if settings.uses_stub_broker:
        return MemoryDeadLetterQueue()
    return RabbitDeadLetterQueue(settings)
