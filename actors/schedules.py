"""Periodic work, run by `periodiq actors` (one scheduler process; it has no locking) and executed by
the ordinary workers:

| actor               | when                                  | what                                              |
|---------------------|---------------------------------------|---------------------------------------------------|
| rebuild_path_index  | daily 04:15                           | full Plex listing, forgets deleted items          |
| reconcile_library   | `reconcile_interval` (never = off),   | compares `reconcile_scope` of Stash with Plex and enqueues the scenes that differ |
|                     | or on demand (Stash reconcile tasks)  |                                                   |
| flush_hook_spool    | every minute                          | publishes events the hook spooled while RabbitMQ was down |
"""

from __future__ import annotations

import logging
from pathlib import Path

import dramatiq
from periodiq import cron

from actors import runtime
from actors.stages import send_jobs
from pipeline.logs import log_event
from pipeline.models import Job
from pipeline.reconcile import Reconciler

logger = logging.getLogger("stash2plex.schedules")
settings = runtime.settings()

RECONCILE_CRON = {"hourly": "5 * * * *", "daily": "30 3 * * *", "weekly": "30 3 * * 0"}


def _queue(name: str) -> str:
    return settings.queue_name(name)


@dramatiq.actor(queue_name=_queue("maintenance"), periodic=cron("15 4 * * *"), max_retries=3)
def rebuild_path_index() -> None:
    """Re-list every Plex section so items deleted from Plex leave the index."""
    paths = runtime.engine().index.rebuild()
    log_event(logger, "index_rebuilt", stage="match", paths=paths)


def reconcile_now(scope: str, missing_only: bool) -> int:
    """Compare Stash with Plex and enqueue the scenes that differ; returns how many were enqueued."""
    engine = runtime.engine()
    report = Reconciler(settings, engine.stash, engine.plex, engine.store, engine.matcher).run(scope, missing_only=missing_only)
    ids = report.differing_ids
    for start in range(0, len(ids), settings.batch_size):
        send_jobs("fetch", [Job(scene_id=i, event="reconcile") for i in ids[start:start + settings.batch_size]])
    log_event(logger, "reconciled", stage="reconcile", scope=scope, compared=report.compared, enqueued=len(ids))
    return len(ids)


_reconcile_options = {"periodic": cron(RECONCILE_CRON[settings.reconcile_interval])} if settings.reconcile_interval in RECONCILE_CRON else {}


@dramatiq.actor(queue_name=_queue("maintenance"), max_retries=3, **_reconcile_options)
def reconcile_library(scope: str | None = None, missing_only: bool | None = None) -> None:
    """The schedule's reconcile (settings' scope), or one asked for by a Stash task or the CLI."""
    reconcile_now(scope or settings.reconcile_scope,
                  settings.reconcile_missing if missing_only is None else missing_only)


@dramatiq.actor(queue_name=_queue("maintenance"), periodic=cron("* * * * *"), max_retries=0)
def flush_hook_spool() -> None:
    """Publish what the Stash hook spooled to disk while RabbitMQ was unreachable (same host only)."""
    from plugin.spool import flush_spool, has_pending

    data_dir = Path(settings.data_dir)
    if has_pending(data_dir):
        result = flush_spool(settings.broker_url, settings.queue_prefix, data_dir)
        log_event(logger, "spool_flushed", stage="hook", published=result.published, remaining=result.remaining,
                  skipped_corrupt=result.skipped_corrupt)
