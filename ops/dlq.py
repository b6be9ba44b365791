"""`stash2plex dlq`: list, show, replay and purge dead-lettered scenes (the `<prefix>.dlq` RabbitMQ queue).

Built on `pipeline.dlq` (reads are non-destructive; removal acks only what it takes). Listing, showing
and purging need RabbitMQ only (never Stash, never a dramatiq runtime). A replay re-sends the entry's
job to the stage it restarts at (`fetch_scene`), with its attempts and deferrals reset, through a runtime of these
settings; the entry is acked away only after that send succeeded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ops.broker import broker_failure, check_broker, open_runtime
from ops.common import BadSetting, CliError
from pipeline.config import Settings
from pipeline.dlq import DeadLetterQueue, DlqEntry, make_dlq
from pipeline.errors import BrokerRefused, BrokerUnreachable
from pipeline.stages import stage_named

SUMMARY_KEYS = ("id", "scene_id", "stage", "actor", "error_class", "message", "reason", "attempts", "deferrals",
                "first_failure", "last_failure", "dead_lettered_at", "count", "first_seen", "last_seen")


def open_dlq(settings: Settings) -> DeadLetterQueue:
    """The RabbitMQ DLQ of `settings`; refuses the in-process broker (its DLQ lives in another process)."""
    if settings.uses_stub_broker:
        raise BadSetting("broker_url: stub:// keeps its DLQ in the memory of the process that ran it; "
                         "set broker_url to your RabbitMQ")
    check_broker(settings)
    return make_dlq(settings)


def _guard(settings: Settings, work: Callable[[], Any]) -> Any:
    """Run a DLQ operation; a connection lost on the way becomes an `Unreachable` error."""
    import pika.exceptions

    try:
        return work()
    except (BrokerUnreachable, BrokerRefused) as error:
        raise broker_failure(settings, error) from None
    except (pika.exceptions.AMQPConnectionError, OSError) as exc:
        raise broker_failure(settings, BrokerUnreachable(f"lost the connection to RabbitMQ ({type(exc).__name__})")) from None


def summary(entry: Any, now: float | None = None) -> dict[str, Any]:
    """An entry without its job, plus its age: what `dlq list --json` prints per entry."""
    data = {key: getattr(entry, key) for key in SUMMARY_KEYS}
    data["age_seconds"] = round((time.time() if now is None else now) - entry.dead_lettered_at, 1)
    return data


def list_entries(settings: Settings, *, limit: int | None = None, error_class: str | None = None) -> tuple[list[Any], int]:
    """(entries matching `error_class`, at most `limit`; how many matched in all), oldest first."""
    dlq = open_dlq(settings)
    entries = _guard(settings, dlq.entries)
    matching = [e for e in entries if error_class is None or e.error_class == error_class]
    return (matching[:limit] if limit is not None else matching), len(matching)


def find_entry(settings: Settings, entry_id: str) -> Any:
    """The entry whose id is `entry_id` (or starts with it, when that is unambiguous)."""
    entries, _total = list_entries(settings)
    exact = [e for e in entries if e.id == entry_id]
    prefixed = exact or [e for e in entries if e.id.startswith(entry_id)]
    if len(prefixed) == 1:
        return prefixed[0]
    if not prefixed:
        raise CliError(f"no DLQ entry has id {entry_id!r}", fix="list the ids with `stash2plex dlq list`")
    raise CliError(f"{len(prefixed)} DLQ entries have ids starting with {entry_id!r}", fix="give more of the id")


def replay(settings: Settings, *, ids: list[str] | None = None, error_class: str | None = None,
           everything: bool = False) -> list[DlqEntry]:
    """Re-send the chosen entries to the stage they restart at, then remove them; returns the replayed entries."""
    if not (everything or ids or error_class):
        raise CliError("say which entries to replay: --all, entry ids, or --error-class", exit_code=2)
    wanted = set(ids or [])
    dlq = open_dlq(settings)

    def chosen(entry: DlqEntry) -> bool:
        if everything:
            return True
        if wanted and entry.id not in wanted:
            return False
        return error_class is None or entry.error_class == error_class

    with open_runtime(settings) as runtime:
        def resend(entry: DlqEntry) -> None:
            runtime.send(stage_named(entry.stage).retry_at, [entry.replay_job()])

        return _guard(settings, lambda: dlq.remove(chosen, resend))


def purge(settings: Settings, *, older_than_seconds: float | None = None, now: float | None = None) -> list[Any]:
    """Delete every entry (or those dead-lettered more than `older_than_seconds` ago); returns them."""
    dlq = open_dlq(settings)
    cutoff = (time.time() if now is None else now) - older_than_seconds if older_than_seconds else None
    return _guard(settings, lambda: dlq.remove(lambda e: cutoff is None or e.dead_lettered_at < cutoff))


def count_purgeable(settings: Settings, older_than_seconds: float | None = None) -> int:
    """How many entries a purge with the same argument would delete (for the confirmation prompt)."""
    entries, _total = list_entries(settings)
    if not older_than_seconds:
        return len(entries)
    cutoff = time.time() - older_than_seconds
    return sum(1 for e in entries if e.dead_lettered_at < cutoff)
