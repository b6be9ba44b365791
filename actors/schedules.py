"""Periodic work, run by `periodiq actors` (one scheduler process; it has no locking) and executed by
the ordinary workers on the `<prefix>.maintenance` queue:

| actor               | when                                  | what                                              |
|---------------------|---------------------------------------|---------------------------------------------------|
| rebuild_path_index  | daily 04:15                           | full Plex listing, forgets deleted items          |
| reconcile_library   | `reconcile_interval` (never = off),   | compares `reconcile_scope` of Stash with Plex and enqueues the scenes that differ |
|                     | or on demand (Stash reconcile tasks)  |                                                   |
| flush_hook_spool    | every minute                          | publishes events the hook spooled while RabbitMQ was down |
| tidy_dlq            | every minute, and 2 s after a dead    | one DLQ entry per scene; removes the entries of scenes |
|                     | letter or a sync (at most every 15 s  | that synced since (pipeline/dlq.py)               |
|                     | per process)                          |                                                   |
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dramatiq
from periodiq import cron

from pipeline.logs import log_event
from pipeline.models import Job
from pipeline.reconcile import Reconciler
from pipeline.stages import MAINTENANCE_QUEUE

if TYPE_CHECKING:
    from actors.runtime import Actor, Runtime

logger = logging.getLogger("stash2plex.schedules")
RECONCILE_CRON = {"hourly": "5 * * * *", "daily": "30 3 * * *", "weekly": "30 3 * * 0"}


def reconcile_now(runtime: Runtime, scope: str, missing_only: bool) -> int:
    """Compare Stash with Plex and enqueue the scenes that differ; returns how many were enqueued."""
    engine, settings = runtime.engine(), runtime.settings
    report = Reconciler(settings, engine.stash, engine.plex, engine.matcher).run(scope, missing_only=missing_only)
    ids = report.differing_ids
    for start in range(0, len(ids), settings.batch_size):
        runtime.send("fetch", [Job(scene_id=i, event="reconcile") for i in ids[start:start + settings.batch_size]])
    log_event(logger, "reconciled", stage="reconcile", scope=scope, compared=report.compared, enqueued=len(ids))
    return len(ids)


def declare_schedules(runtime: Runtime) -> dict[str, Actor]:
    """Declare the maintenance actors (with their schedules) on the runtime's broker."""
    def rebuild_path_index() -> None:
        """Re-list every Plex section so items deleted from Plex leave the index."""
        paths = runtime.engine().index.rebuild()
        log_event(logger, "index_rebuilt", stage="match", paths=paths)

    def reconcile_library(scope: str | None = None, missing_only: bool | None = None) -> None:
        """The schedule's reconcile (settings' scope), or one asked for by a Stash task or the CLI."""
        settings = runtime.settings
        reconcile_now(runtime, scope or settings.reconcile_scope,
                      settings.reconcile_missing if missing_only is None else missing_only)

    def flush_hook_spool() -> None:
        """Publish what the Stash hook spooled to disk while RabbitMQ was unreachable (same host only)."""
        from plugin.spool import flush_spool, has_pending

        settings = runtime.settings
        data_dir = Path(settings.data_dir)
        if has_pending(data_dir):
            result = flush_spool(settings.broker_url, settings.queue_prefix, data_dir)
            log_event(logger, "spool_flushed", stage="hook", published=result.published, remaining=result.remaining,
                      skipped_corrupt=result.skipped_corrupt)

    def tidy_dlq() -> None:
        """Merge each scene's DLQ entries into one and drop the entries of scenes that synced since."""
        report = runtime.dlq().tidy()
        if report.merged or report.cleared:
            log_event(logger, "dlq_tidied", stage="dlq", merged=report.merged, cleared=report.cleared, kept=report.kept)

    settings = runtime.settings
    reconcile_schedule = RECONCILE_CRON.get(settings.reconcile_interval)
    schedules: list[tuple[Any, dict[str, Any]]] = [
        (rebuild_path_index, {"periodic": cron("15 4 * * *"), "max_retries": 3}),
        (reconcile_library, {"max_retries": 3, **({"periodic": cron(reconcile_schedule)} if reconcile_schedule else {})}),
        (flush_hook_spool, {"periodic": cron("* * * * *"), "max_retries": 0}),
        (tidy_dlq, {"periodic": cron("* * * * *"), "max_retries": 0}),
    ]
    queue = settings.queue_name(MAINTENANCE_QUEUE)
    return {fn.__name__: dramatiq.actor(broker=runtime.broker, actor_name=fn.__name__, queue_name=queue, **options)(fn)
            for fn, options in schedules}
