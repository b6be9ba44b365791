"""The Stash plugin's tasks: `run(mode, payload) -> {"output": "<one line>"}`, called by stash2plex_entry.py.

Every task returns in seconds: it enqueues work for the workers and never syncs inside Stash's
process. They reuse the CLI's operations (`ops.sync`, `ops.dlq`, `ops.status`, `ops.doctor`), so
each concern has one implementation.

Settings: Stash's saved plugin settings, read through Stash's own URL and session cookie from the
payload's `server_connection` (Host 0.0.0.0 means this machine), under `STASH2PLEX_*` variables
and the file named by `STASH2PLEX_CONFIG`. Output to Stash: progress as `\\x01p\\x02<0..1>` and log
lines as `\\x01<level>\\x02[stash2plex] ...` on stderr (every stderr line carries that prefix);
expected failures raise an exception with a one-line message, which the entry script reports.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.common import (
    CliError,
    as_cli_error,
    load_cli_settings,
    parse_duration,
)
from pipeline.config import Settings
from pipeline.broker_address import redact_url
from pipeline.errors import scrub
from pipeline.stash import iso_since

LOG_PREFIX = "[stash2plex]"
LOCAL_HOSTS = {"", "0.0.0.0", "::", "[::]"}
RECENT_SECONDS = 86400.0
LEVELS = {logging.DEBUG: "d", logging.INFO: "i", logging.WARNING: "w", logging.ERROR: "e", logging.CRITICAL: "e"}


class StashLog:
    """Task log lines `[stash2plex] ...` and progress, written with the hook's Stash protocol writer."""

    def __init__(self, stream: Any = None) -> None:
        from plugin.hook import StashLog as ProtocolWriter

        self.raw = ProtocolWriter(stream or sys.stderr)

    def __call__(self, level: str, message: str) -> None:
        self.raw(level, f"{LOG_PREFIX} {' '.join(scrub(message).split())}")

    def progress(self, fraction: float) -> None:
        self.raw.progress(fraction)

    def between(self, low: float, high: float) -> Callable[[int, int], None]:
        """A (done, total) callback reporting progress inside [low, high]."""
        return lambda done, total: self.progress(low + (high - low) * (done / total if total else 1.0))


class StashLogHandler(logging.Handler):
    """Log records as Stash log lines (so nothing on stderr lacks the Stash prefix)."""

    def __init__(self, log: StashLog) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = LEVELS.get(record.levelno, "i")
            fields = getattr(record, "s2p_fields", {})
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            self.log(level, f"{record.getMessage()} {extra}".strip())
        except Exception:  # noqa: BLE001 - a log line must never break a task
            self.handleError(record)


def route_logging(log: StashLog, level: int = logging.INFO) -> None:
    """The `stash2plex` loggers (and any library warning) go to Stash's log, nowhere else."""
    handler = StashLogHandler(log)
    ours = logging.getLogger("stash2plex")
    ours.handlers[:] = [handler]
    ours.setLevel(level)
    ours.propagate = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


# --- settings -----------------------------------------------------------------------------------------
def stash_overrides(payload: dict[str, Any]) -> dict[str, Any]:
    """stash_url and stash_session_cookie from the payload's `server_connection`."""
    connection = payload.get("server_connection") or {}
    if not isinstance(connection, dict):
        return {}
    host = str(connection.get("Host") or "")
    host = "127.0.0.1" if host in LOCAL_HOSTS else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    scheme = str(connection.get("Scheme") or "http")
    port = connection.get("Port") or 9999
    cookie = connection.get("SessionCookie") or {}
    value = cookie.get("Value") if isinstance(cookie, dict) else None
    return {"stash_url": f"{scheme}://{host}:{port}", "stash_session_cookie": value or None}


HOOK_KEYS = ("broker_url", "queue_prefix", "hook_events")


def sync_hook_settings(settings: Settings, payload: dict[str, Any]) -> None:
    """Copy the hook's settings saved in Stash (or set in env) into stash2plex.hook.json.

    The hook reads only that file (a GraphQL call per edit would slow every edit in Stash), so every
    task run carries what the user saved on the settings page over to it. Unsaved keys are left alone.
    """
    from plugin.install import write_hook_settings

    plugin_dir = (payload.get("server_connection") or {}).get("PluginDir")
    chosen = {key: getattr(settings, key) for key in HOOK_KEYS if key in settings.model_fields_set}
    if plugin_dir and chosen and Path(plugin_dir).is_dir():
        write_hook_settings(Path(plugin_dir), **chosen)


def task_args(payload: dict[str, Any]) -> dict[str, Any]:
    args = payload.get("args")
    return args if isinstance(args, dict) else {}


@dataclass
class Task:
    """What a task handler gets: the settings (None for the health check, which loads them itself), the payload, the log."""

    settings: Settings
    payload: dict[str, Any]
    log: StashLog


# --- the tasks --------------------------------------------------------------------------------------
def _sync(task: Task, since: str | None, label: str) -> str:
    from ops.sync import enqueue, list_scene_ids

    ids = list_scene_ids(task.settings, since=since, on_progress=task.log.between(0.0, 0.5))
    if not ids:
        return f"{label}: no scene to queue"
    sent = enqueue(task.settings, ids, event="task", on_progress=task.log.between(0.5, 1.0))
    return f"{label}: queued {len(ids)} scene(s) in {sent.messages} message(s) to {sent.queue}"


def sync_all(task: Task) -> str:
    return _sync(task, None, "sync all")


def sync_recent(task: Task) -> str:
    return _sync(task, iso_since(RECENT_SECONDS), "sync recent (24h)")


def _reconcile(task: Task, scope: str, missing_only: bool) -> str:
    """Hand the comparison to the workers (it reads the whole library), so the task returns at once."""
    from ops.broker import send_reconcile

    queue = send_reconcile(task.settings, scope, missing_only)
    label = "reconcile missing" if missing_only else f"reconcile {scope}"
    return (f"{label}: queued to {queue}; the workers compare Stash with Plex and queue the scenes that differ "
            "(see `stash2plex status` or the workers' logs)")


def reconcile_all(task: Task) -> str:
    return _reconcile(task, "all", False)


def reconcile_24h(task: Task) -> str:
    return _reconcile(task, "24h", False)


def reconcile_7d(task: Task) -> str:
    return _reconcile(task, "7d", False)


def reconcile_missing(task: Task) -> str:
    return _reconcile(task, "all", True)


def hook_target(task: Task) -> tuple[str, str, Path]:
    """(broker_url, queue_prefix, spool folder) the hook uses: its stash2plex.hook.json in PluginDir, else the settings."""
    connection = task.payload.get("server_connection") or {}
    plugin_dir = connection.get("PluginDir") if isinstance(connection, dict) else None
    if plugin_dir:
        try:
            from plugin.hook import load_hook_settings

            hook = load_hook_settings(Path(plugin_dir))
            return hook.broker_url, hook.queue_prefix, Path(hook.data_dir)
        except ImportError:
            pass
    return task.settings.broker_url, task.settings.queue_prefix, Path(task.settings.data_dir)


def status(task: Task) -> str:
    from ops.status import gather_status, one_line

    line = one_line(gather_status(task.settings))
    try:
        from plugin.spool import pending_count

        line += f"; hook spool {pending_count(hook_target(task)[2])} event(s) waiting"
    except ImportError:
        pass
    return f"status: {line}"


def dlq_replay(task: Task) -> str:
    from ops.dlq import replay

    done = replay(task.settings, everything=True)
    return f"dlq replay: {len(done)} dead-lettered scene(s) sent back to their stage"


def dlq_purge(task: Task) -> str:
    from ops.dlq import purge

    older_than = task_args(task.payload).get("older_than")
    seconds = parse_duration(str(older_than)) if older_than else None
    removed = purge(task.settings, older_than_seconds=seconds)
    scope = f" older than {older_than}" if older_than else ""
    return f"dlq purge: {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}{scope} deleted from {task.settings.dlq_name}"


def health_check(task: Task) -> str:
    from ops.doctor import FAIL, WARN, run_checks

    def report(check: Any) -> None:
        level = {"fail": "e", "warn": "w"}.get(check.status, "i")
        task.log(level, f"{check.name}: {check.status} - {check.detail}" + (f" (fix: {check.fix})" if check.fix else ""))

    checks = run_checks(None, overrides=stash_overrides(task.payload), on_check=report)
    failed = [c for c in checks if c.status == FAIL]
    if failed:
        raise CliError("health check failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed))
    warned = sum(1 for c in checks if c.status == WARN)
    return f"health check: {len(checks) - warned} ok, {warned} warning(s)"


def flush_spool(task: Task) -> str:
    try:
        from plugin.spool import flush_spool as flush
    except ImportError:
        return "flush spool: the hook spool is not part of this install"
    broker_url, queue_prefix, data_dir = hook_target(task)
    result = flush(broker_url, queue_prefix, data_dir, log=task.log.raw)
    return (f"flush spool: {result.published} event(s) published to {redact_url(broker_url)}, "
            f"{result.remaining} still spooled, {result.skipped_corrupt} corrupt line(s) skipped")


TASKS: dict[str, Callable[[Task], str]] = {
    "sync_all": sync_all, "sync_recent": sync_recent,
    "reconcile_all": reconcile_all, "reconcile_24h": reconcile_24h, "reconcile_7d": reconcile_7d,
    "reconcile_missing": reconcile_missing,
    "status": status, "dlq_replay": dlq_replay, "dlq_purge": dlq_purge,
    "health_check": health_check, "flush_spool": flush_spool,
}
LOADS_ITS_OWN_SETTINGS = {"health_check"}  # it reports bad settings as a failed check


def run(mode: str, payload: dict[str, Any]) -> str:
    """Run one task; returns its one-line summary (the entry puts it in Stash's `output`) or raises."""
    log = StashLog()
    handler = TASKS.get(mode)
    if handler is None:
        raise ValueError(f"unknown task mode {mode!r} (known: {', '.join(sorted(TASKS))})")
    route_logging(log)
    log.progress(0.0)
    try:
        settings = None if mode in LOADS_ITS_OWN_SETTINGS else load_cli_settings(None, **stash_overrides(payload))
        if settings is not None:
            sync_hook_settings(settings, payload)
        output = handler(Task(settings, payload, log))  # type: ignore[arg-type]
    except Exception as exc:
        failure = as_cli_error(exc)
        if failure is None:
            raise
        if failure.fix:
            log("e", f"fix: {failure.fix}")
        raise failure from None
    log.progress(1.0)
    log("i", output)
    return output
