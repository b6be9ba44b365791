"""Sync and reconcile as operations: choose scenes, enqueue them, follow them, or run them inline.

One implementation for the CLI (`stash2plex sync`, `stash2plex reconcile`), the demo and the Stash
plugin tasks. Following enqueued work (`wait_for_outcomes`) reads the outcomes the workers record
in the shared state file (`<data_dir>/state.db`), so it needs the workers' `data_dir`; queue depths
end the wait early when everything is idle but some scene left no outcome.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ops.broker import open_runtime, send_scene_batches
from pipeline.config import Settings
from pipeline.inline import RunSummary, run_inline
from pipeline.reconcile import Reconciler, ReconcileReport
from pipeline.stages import FETCH
from pipeline.stash import StashClient
from pipeline.state import StateStore
from pipeline.sync import SyncEngine

if TYPE_CHECKING:
    from actors.runtime import Runtime

ProgressCallback = Callable[[int, int], None]
IdleProbe = Callable[[], bool | None]

# How the outcome table names what the workers record (in this order).
OUTCOME_LABELS = {
    "updated": "updated",
    "unchanged": "unchanged",
    "dry_run": "dry run (nothing written)",
    "not_found": "not found",
    "failed": "failed",
    "dead_letter": "dead-lettered",
    "skipped": "skipped",
    "coalesced": "coalesced",
}
PROBLEM_OUTCOMES = ("not_found", "failed", "dead_letter")
IDLE_SECONDS_NEEDED = 7.0  # the management API refreshes its counts every 5 s


@dataclass
class Enqueued:
    """What `enqueue` sent: scene ids, message count, the queue, and ids Stash does not know."""

    scene_ids: list[str]
    messages: int
    queue: str
    unknown: list[str] = field(default_factory=list)


@dataclass
class WaitResult:
    """The latest outcome per scene since the enqueue, and the scenes that never got one."""

    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    timed_out: bool = False
    seconds: float = 0.0

    def counts(self) -> Counter[str]:
        found = Counter(outcome for outcome, _detail in self.outcomes.values())
        if self.pending:
            found["no outcome" if not self.timed_out else "still in progress"] = len(self.pending)
        return found

    @property
    def problems(self) -> list[tuple[str, str, str]]:
        return [(sid, outcome, detail) for sid, (outcome, detail) in self.outcomes.items() if outcome in PROBLEM_OUTCOMES]


# --- choosing scenes -------------------------------------------------------------------------------
def list_scene_ids(settings: Settings, *, since: str | None = None, on_progress: ProgressCallback | None = None) -> list[str]:
    """Every scene id in Stash (light listing), or those updated after `since` (ISO time)."""
    stash = StashClient(settings)
    ids: list[str] = []
    if since is None:
        for total, page in stash.iter_scene_paths():
            ids.extend(str(scene["id"]) for scene in page)
            if on_progress is not None:
                on_progress(len(ids), total)
    else:
        for total, scenes in stash.iter_scene_pages(since=since):
            ids.extend(scene.id for scene in scenes)
            if on_progress is not None:
                on_progress(len(ids), total)
    return list(dict.fromkeys(ids))


def known_scene_ids(settings: Settings, scene_ids: list[str]) -> tuple[list[str], list[str]]:
    """(ids Stash has, ids it does not), in the given order."""
    found = StashClient(settings).find_scenes(scene_ids)
    return [i for i in scene_ids if i in found], [i for i in scene_ids if i not in found]


# --- enqueue and follow -------------------------------------------------------------------------------
def enqueue(settings: Settings, scene_ids: list[str], *, dry_run: bool = False, event: str = "cli",
            on_progress: ProgressCallback | None = None, runtime: Runtime | None = None) -> Enqueued:
    """Send the scenes as `fetch_scene` batches of `batch_size` jobs, through `runtime` (the demo's)
    or a runtime of these settings made for the purpose."""
    if runtime is None:
        with open_runtime(settings) as made:
            return enqueue(settings, scene_ids, dry_run=dry_run, event=event, on_progress=on_progress, runtime=made)
    messages = send_scene_batches(runtime, scene_ids, dry_run=dry_run, event=event, on_progress=on_progress)
    return Enqueued(scene_ids=scene_ids, messages=messages, queue=FETCH.queue(settings.queue_prefix))


def read_outcomes(data_dir: Path, since: float) -> dict[str, tuple[str, str]]:
    """scene id -> (latest outcome, detail) the workers recorded at or after `since` (same `data_dir`)."""
    if not (Path(data_dir) / "state.db").exists():
        return {}
    return StateStore(Path(data_dir)).outcomes_since(since)


def wait_for_outcomes(
    settings: Settings,
    scene_ids: list[str],
    since: float,
    *,
    timeout: float = 300.0,
    interval: float = 0.25,
    idle_probe: IdleProbe | None = None,
    probe_every: float = 2.0,
    on_progress: ProgressCallback | None = None,
) -> WaitResult:
    """Poll until every scene has an outcome, the queues stay idle, or `timeout` passes.

    `idle_probe()` (asked every `probe_every` s) answers True when every stage and delay queue is
    empty with nothing unacked, None when it cannot tell; idle for `IDLE_SECONDS_NEEDED` ends the wait.
    """
    wanted = set(scene_ids)
    started = time.monotonic()
    idle_since: float | None = None
    probed_at = float("-inf")
    result = WaitResult()
    while True:
        seen = read_outcomes(settings.data_dir, since)
        result.outcomes = {sid: seen[sid] for sid in scene_ids if sid in seen}
        if on_progress is not None:
            on_progress(len(result.outcomes), len(wanted))
        now = time.monotonic()
        if len(result.outcomes) == len(wanted):
            break
        if idle_probe is not None and now - probed_at >= probe_every:
            probed_at = now
            if idle_probe():
                idle_since = idle_since or now
            else:
                idle_since = None
        if idle_since is not None and now - idle_since >= IDLE_SECONDS_NEEDED:
            break
        if now - started >= timeout:
            result.timed_out = True
            break
        time.sleep(interval)
    result.pending = [sid for sid in scene_ids if sid not in result.outcomes]
    result.seconds = time.monotonic() - started
    return result


# --- inline -----------------------------------------------------------------------------------------
def preflight(engine: SyncEngine) -> None:
    """Reach Stash and Plex once, so an unreachable service fails the command instead of every scene."""
    engine.stash.version()
    engine.plex.sections()


def sync_inline(settings: Settings, *, scene_ids: list[str] | None = None, since: str | None = None,
                all_scenes: bool = False, dry_run: bool = False,
                on_progress: ProgressCallback | None = None) -> RunSummary:
    """The four steps in this process (`run_inline`); raises for an unreachable Stash or Plex."""
    engine = SyncEngine.from_settings(settings)
    preflight(engine)
    return run_inline(engine, scene_ids=scene_ids, since=since, all_scenes=all_scenes, dry_run=dry_run,
                      on_progress=on_progress)


# --- reconcile --------------------------------------------------------------------------------------
def reconcile(settings: Settings, scope: str = "all", *, missing_only: bool = False, dry_run: bool = False,
              on_progress: ProgressCallback | None = None) -> tuple[ReconcileReport, Enqueued | None]:
    """Compare Stash with Plex (`pipeline.reconcile`) and enqueue the scenes that differ unless `dry_run`."""
    engine = SyncEngine.from_settings(settings)
    preflight(engine)
    report = Reconciler(settings, engine.stash, engine.plex, engine.matcher).run(
        scope, missing_only=missing_only, on_progress=on_progress)
    if dry_run or not report.differing_ids:
        return report, None
    return report, enqueue(settings, report.differing_ids, event="reconcile")
