"""The inline runner: the same four steps as the actors, in this process, batch by batch.

Used by `stash2plex sync ... --inline` and the benchmarks. Reports progress through a callback so
the CLI can draw a progress bar; returns a summary (updated, unchanged, not found, failed, ...).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pipeline.models import Job, StashScene
from pipeline.models import Outcome
from pipeline.sync import SyncEngine

ProgressCallback = Callable[[int, int], None]


@dataclass
class RunSummary:
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (scene id, outcome, detail)
    diffs: dict[str, dict] = field(default_factory=dict)  # scene id -> field -> (Plex now, Stash)
    seconds: float = 0.0
    total: int = 0

    @property
    def failed(self) -> int:
        return self.counts[Outcome.FAILED.value]


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def run_inline(
    engine: SyncEngine,
    *,
    scene_ids: list[str] | None = None,
    since: str | None = None,
    all_scenes: bool = False,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
) -> RunSummary:
    """Sync the given scenes (or all, or those updated after `since`) and summarize the outcomes."""
    summary = RunSummary()
    started = time.perf_counter()
    size = engine.settings.batch_size
    done = 0

    def record(outcomes: list[tuple[Job, Outcome, str]]) -> None:
        nonlocal done
        for job, outcome, detail in outcomes:
            summary.counts[outcome.value] += 1
            if outcome in (Outcome.FAILED, Outcome.NOT_FOUND, Outcome.SKIPPED):
                summary.problems.append((job.scene_id, outcome.value, detail))
            if job.diff and outcome in (Outcome.DRY_RUN, Outcome.UPDATED):
                summary.diffs[job.scene_id] = dict(job.diff)
        done += len(outcomes)
        if on_progress is not None:
            on_progress(done, summary.total)

    if scene_ids is not None:
        ids = list(dict.fromkeys(str(i) for i in scene_ids))
        summary.total = len(ids)
        for chunk in _batches(ids, size):
            record(engine.run_batch([Job(scene_id=i, event="inline", dry_run=dry_run) for i in chunk]))
    elif all_scenes or since:
        for total, page in engine.stash.iter_scene_pages(since=since, per_page=max(size, 200)):
            summary.total = total
            for start in range(0, len(page), size):
                scenes: list[StashScene] = page[start:start + size]
                jobs = [Job(scene_id=s.id, event="inline", dry_run=dry_run) for s in scenes]
                record(engine.run_batch(jobs, scenes))
    summary.seconds = time.perf_counter() - started
    return summary
