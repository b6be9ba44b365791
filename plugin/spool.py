"""The hook's no-loss spool: events that could not be published wait in a JSON-lines file.

Layout, all in `data_dir`:

- `hook-spool.jsonl`           one event per line: `{"scene_id": "45", "event": "Scene.Update.Post",
                               "ts": 1732712345.123}` (`ts` = UNIX seconds when the hook saw it)
- `hook-spool.lock`            `fcntl.flock` lock shared by appenders and the flusher
- `hook-spool.jsonl.flushing`  the spool renamed aside while a flush publishes it (a crash leaves it
                               there; the next flush picks it up again, duplicates are harmless)
- `hook-spool.rejected.jsonl`  corrupt lines a flush skipped, kept for inspection

Appends take the lock, open with O_APPEND, write each line with one `os.write`, fsync. A flush takes
the lock (without waiting, by default: if another process is flushing, it is left to do so),
renames the spool aside, publishes every line, writes the failed and unprocessed lines back and
removes the aside file. Two hook processes may run at once; lines never interleave.

Only the standard library and `plugin.amqp` are imported: this runs on the hook's fast path.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections import namedtuple
from collections.abc import Callable, Iterable
from pathlib import Path

from plugin.amqp import (
    DEFAULT_TIMEOUT,
    AmqpPublisher,
    PublishError,
    dramatiq_queue_arguments,
    fetch_scene_message,
    fetch_scene_queue,
)

__all__ = [
    "FlushResult",
    "LogFn",
    "SpoolEvent",
    "append_events",
    "flush_spool",
    "flush_with_publisher",
    "has_pending",
    "pending_count",
    "spool_path",
]

SPOOL_NAME = "hook-spool.jsonl"
ASIDE_NAME = "hook-spool.jsonl.flushing"
LOCK_NAME = "hook-spool.lock"
REJECTED_NAME = "hook-spool.rejected.jsonl"

LOCK_WAIT_SECONDS = 5.0
"""How long an append waits for a flusher's lock before writing without it (O_APPEND stays atomic)."""
PUBLISH_BATCH = 500
"""Lines published per pipelined batch during a flush."""

LogFn = Callable[[str, str], None]
"""`log(level, message)` with level one of t d i w e (Stash's log levels); the caller adds its prefix."""


class SpoolEvent(namedtuple("SpoolEvent", "scene_id event ts")):
    """One hook event waiting to be published as a `fetch_scene(scene_id, event)` message.

    Fields: `scene_id: str`, `event: str` (the hook type), `ts: float` (UNIX seconds).
    (`collections.namedtuple`, not `typing.NamedTuple`: typing costs ~5 ms to import on the fast path.)
    """

    __slots__ = ()
    scene_id: str
    event: str
    ts: float


class FlushResult(namedtuple("FlushResult", "published skipped_corrupt remaining")):
    """What a flush did: lines published, corrupt lines skipped, lines still waiting in the spool (ints)."""

    __slots__ = ()
    published: int
    skipped_corrupt: int
    remaining: int


def _stderr_log(level: str, message: str) -> None:
    """Default logger: one Stash-protocol line on stderr, prefixed `[stash2plex spool]`."""
    sys.stderr.write(f"\x01{level}\x02[stash2plex spool] {message}\n")
    sys.stderr.flush()


def spool_path(data_dir: Path) -> Path:
    """The spool file inside `data_dir`."""
    return Path(data_dir) / SPOOL_NAME


def has_pending(data_dir: Path) -> bool:
    """Cheap check (one or two `stat` calls): is anything waiting in the spool?"""
    for name in (SPOOL_NAME, ASIDE_NAME):
        try:
            if os.stat(os.path.join(data_dir, name)).st_size > 0:
                return True
        except OSError:  # missing, or data_dir unusable: appending will report the real problem
            continue
    return False


def pending_count(data_dir: Path) -> int:
    """Number of lines waiting (spool + a leftover aside file); for status reports."""
    total = 0
    for name in (SPOOL_NAME, ASIDE_NAME):
        try:
            with open(os.path.join(data_dir, name), "rb") as handle:
                total += sum(1 for line in handle if line.strip())
        except (FileNotFoundError, NotADirectoryError):
            continue
    return total


class _SpoolLock:
    """`with _SpoolLock(data_dir, wait=...) as locked:` holds the spool's flock; `locked` is False
    if it could not be taken within `wait` seconds (a class, not @contextmanager: contextlib is slow to import)."""

    def __init__(self, data_dir: Path, *, wait: float) -> None:
        self._path = os.path.join(data_dir, LOCK_NAME)
        self._data_dir = data_dir
        self._wait = wait
        self._fd: int | None = None
        self._locked = False

    def __enter__(self) -> bool:
        os.makedirs(self._data_dir, exist_ok=True)
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self._wait
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._locked = True
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.005)

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is None:
            return
        try:
            if self._locked:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None
            self._locked = False


def _encode_line(event: SpoolEvent) -> bytes:
    return (json.dumps({"scene_id": event.scene_id, "event": event.event, "ts": event.ts},
                       separators=(",", ":")) + "\n").encode("utf-8")


def _append_lines(path: str, lines: Iterable[bytes]) -> int:
    """O_APPEND + one write per line + fsync. Returns the number of lines written."""
    count = 0
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        for line in lines:
            view = memoryview(line)
            while view:  # a regular file takes the whole line in one write; loop only on a short write
                written = os.write(fd, view)
                view = view[written:]
            count += 1
        if count:
            os.fsync(fd)
    finally:
        os.close(fd)
    return count


def append_events(
    data_dir: Path,
    events: Iterable[tuple[str, str]],
    *,
    log: LogFn | None = None,
) -> int:
    """Append `(scene_id, event)` pairs to the spool, durably. Returns the number of lines written.

    Raises `OSError` when the spool cannot be written (the caller reports that as an error).
    """
    now = round(time.time(), 3)
    lines = [_encode_line(SpoolEvent(str(scene_id), str(event), now)) for scene_id, event in events]
    if not lines:
        return 0
    with _SpoolLock(data_dir, wait=LOCK_WAIT_SECONDS) as locked:
        if not locked:
            (log or _stderr_log)("w", f"lock busy for {LOCK_WAIT_SECONDS:g} s; "
                                      "appending without it (O_APPEND keeps lines whole)")
        return _append_lines(str(spool_path(data_dir)), lines)


def _parse_line(raw: bytes) -> SpoolEvent:
    """Decode one spool line; raises ValueError describing what is wrong with it."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    scene_id = data.get("scene_id")
    if isinstance(scene_id, int) and not isinstance(scene_id, bool):
        scene_id = str(scene_id)
    if not isinstance(scene_id, str) or not scene_id.isdigit() or int(scene_id) <= 0:
        raise ValueError(f"bad scene_id {scene_id!r}")
    event = data.get("event")
    if not isinstance(event, str) or not event:
        raise ValueError(f"bad event {event!r}")
    ts = data.get("ts")
    return SpoolEvent(str(int(scene_id)), event, float(ts) if isinstance(ts, (int, float)) else 0.0)


def _take_aside(data_dir: Path) -> str | None:
    """Under the lock: move the spool aside (merging into a leftover aside file). Returns its path."""
    spool = str(spool_path(data_dir))
    aside = os.path.join(data_dir, ASIDE_NAME)
    if os.path.exists(aside):
        if os.path.exists(spool):
            with open(spool, "rb") as handle:
                _append_lines(aside, [line if line.endswith(b"\n") else line + b"\n"
                                      for line in handle if line.strip()])
            os.unlink(spool)
        return aside
    try:
        os.rename(spool, aside)
    except FileNotFoundError:
        return None
    return aside


def flush_with_publisher(
    publisher: AmqpPublisher,
    queue_prefix: str,
    data_dir: Path,
    *,
    max_lines: int | None = None,
    wait_for_lock: float = 0.0,
    batch_timeout: float | None = None,
    log: LogFn | None = None,
) -> FlushResult | None:
    """Publish the spooled events over an open publisher (its queue already declared).

    Returns None when another process holds the spool lock (it is flushing). `max_lines` bounds
    the work of one call (the rest stays spooled); `batch_timeout` restarts the publisher's
    deadline for each batch (a long flush from a task), None keeps the caller's deadline (the hook).
    """
    emit = log or _stderr_log
    queue = fetch_scene_queue(queue_prefix)
    with _SpoolLock(data_dir, wait=wait_for_lock) as locked:
        if not locked:
            return None
        aside = _take_aside(data_dir)
        if aside is None:
            return FlushResult(0, 0, 0)
        with open(aside, "rb") as handle:
            raw_lines = [line for line in handle.read().split(b"\n") if line.strip()]

        events: list[tuple[bytes, SpoolEvent]] = []
        rejected: list[bytes] = []
        for number, raw in enumerate(raw_lines, start=1):
            try:
                events.append((raw, _parse_line(raw)))
            except ValueError as exc:
                rejected.append(raw)
                preview = raw[:80].decode("utf-8", "replace")
                emit("w", f"skipped corrupt spool line {number}: {exc}: {preview!r}")

        limit = len(events) if max_lines is None else max(0, min(max_lines, len(events)))
        keep: list[bytes] = []
        published = 0
        error: PublishError | None = None
        for start in range(0, limit, PUBLISH_BATCH):
            batch = events[start:min(start + PUBLISH_BATCH, limit)]
            if error is not None:
                keep.extend(raw for raw, _ in batch)
                continue
            if batch_timeout is not None:
                publisher.set_deadline(batch_timeout)
            bodies = [fetch_scene_message(ev.scene_id, ev.event, queue_prefix) for _, ev in batch]
            try:
                outcomes = publisher.publish(queue, bodies)
            except PublishError as exc:
                error = exc
                keep.extend(raw for raw, _ in batch)
                continue
            for (raw, ev), outcome in zip(batch, outcomes):
                if outcome is None:
                    published += 1
                else:
                    keep.append(raw)
                    emit("w", f"scene {ev.scene_id} not accepted ({outcome}); kept in the spool")
        keep.extend(raw for raw, _ in events[limit:])
        if error is not None:
            emit("w", f"flush stopped: {error}; {len(keep)} event(s) kept in the spool")

        if rejected:
            _append_lines(os.path.join(data_dir, REJECTED_NAME), [raw + b"\n" for raw in rejected])
        if keep:
            _append_lines(str(spool_path(data_dir)), [raw + b"\n" for raw in keep])
        os.unlink(aside)
        return FlushResult(published, len(rejected), len(keep))


def flush_spool(
    broker_url: str,
    queue_prefix: str,
    data_dir: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    wait_for_lock: float = LOCK_WAIT_SECONDS,
    log: LogFn | None = None,
) -> FlushResult:
    """Publish everything in the spool on a connection of its own (the `flush_spool` task).

    Lines the broker does not confirm stay in the spool; corrupt lines are skipped with one log line
    each. If the broker cannot be reached, nothing is lost and `remaining` says how much waits.
    Raises `TimeoutError` if another process keeps the spool locked for `wait_for_lock` seconds.
    """
    data_dir = Path(data_dir)
    if not has_pending(data_dir):
        return FlushResult(0, 0, 0)
    emit = log or _stderr_log
    queue = fetch_scene_queue(queue_prefix)
    try:
        with AmqpPublisher(broker_url, timeout=timeout, connection_name="stash2plex spool flush") as publisher:
            publisher.declare_queue(queue, arguments=dramatiq_queue_arguments(queue))
            result = flush_with_publisher(publisher, queue_prefix, data_dir, wait_for_lock=wait_for_lock,
                                          batch_timeout=timeout, log=emit)
    except PublishError as exc:
        emit("w", f"broker unavailable, nothing flushed: {exc}")
        return FlushResult(0, 0, pending_count(data_dir))
    if result is None:
        raise TimeoutError(f"spool in {data_dir} stayed locked by another process for {wait_for_lock:g} s")
    return result
