"""Reconcile: compare Stash with Plex scene by scene, and say which scenes differ and how. Writes nothing.

For each scene (all, or those updated in the last 24 h / 7 d) it finds the Plex item through the
same path index and `Matcher` as the sync, reads the full Plex items in batches
(`PlexClient.fetch_items`, 100 per request), and plans the edit exactly as the push stage would
(`plan_fields`, `plan_actors`, the poster rule), from Plex's state alone. Every scene lands in one
category:

    not_in_plex   no Plex item holds its file (not scanned yet, path_map wrong, or no file at all)
    ambiguous     several Plex items hold its file name and strict matching is on
    differs       a sync would change these fields (listed)
    in_sync       a sync would change nothing

`missing_only` restricts the comparison to scenes not in Plex or whose item has never received a
Stash poster from stash2plex (no `stash2plex-cover-` label).
No broker here: the caller decides what to enqueue (the scenes that differ).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from pipeline.config import Settings
from pipeline.errors import AmbiguousMatch, NoFiles, NotInPlexYet
from pipeline.matching import Match, Matcher
from pipeline.metadata import COVER_LABEL_PREFIX, desired_state, plan_actors, plan_fields, poster_is_current
from pipeline.models import PlexItemState, StashScene
from pipeline.plex import PlexClient
from pipeline.stash import StashClient, iso_since

SCOPE_SECONDS: dict[str, float | None] = {"all": None, "24h": 86400.0, "7d": 7 * 86400.0}

ProgressCallback = Callable[[int, int], None]


class Category(StrEnum):
    NOT_IN_PLEX = "not_in_plex"
    AMBIGUOUS = "ambiguous"
    DIFFERS = "differs"
    IN_SYNC = "in_sync"


@dataclass(frozen=True)
class SceneComparison:
    """One scene's verdict: its category, the fields a sync would change, and why (for the first two)."""

    scene_id: str
    category: Category
    fields: tuple[str, ...] = ()
    detail: str = ""


@dataclass
class ReconcileReport:
    """The outcome of one comparison run. `scenes` holds every verdict except `in_sync` (only counted)."""

    scope: str
    missing_only: bool
    scanned: int = 0
    skipped_written: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    scenes: list[SceneComparison] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def compared(self) -> int:
        return sum(self.counts.values())

    @property
    def differing_ids(self) -> list[str]:
        return [s.scene_id for s in self.scenes if s.category == Category.DIFFERS]

    def field_counts(self) -> Counter[str]:
        """How many differing scenes each field differs in."""
        return Counter(name for s in self.scenes if s.category == Category.DIFFERS for name in s.fields)

    def add(self, verdict: SceneComparison) -> None:
        self.counts[verdict.category.value] += 1
        if verdict.category != Category.IN_SYNC:
            self.scenes.append(verdict)


def since_for(scope: str, now: float | None = None) -> str | None:
    """Stash's `updated_at` lower bound for a scope (`all` -> None). Raises ValueError for an unknown scope."""
    if scope not in SCOPE_SECONDS:
        raise ValueError(f"scope must be one of {', '.join(SCOPE_SECONDS)}, not {scope!r}")
    seconds = SCOPE_SECONDS[scope]
    return None if seconds is None else iso_since(seconds, now)


def changed_fields(scene: StashScene, item: PlexItemState, settings: Settings) -> tuple[str, ...]:
    """The fields the push and performers stages would change on `item` for `scene` (poster included)."""
    desired = desired_state(scene, settings)
    plan = plan_fields(desired, item, settings)
    actors = plan_actors(desired.actors, item.actors, settings)
    names = plan.changed + actors.changed
    if not poster_is_current(desired, item):
        names.append("poster")
    return tuple(names)


def synced_before(item: PlexItemState) -> bool:
    """The item carries stash2plex's cover label: it has received a sync from stash2plex."""
    return any(label.startswith(COVER_LABEL_PREFIX) for label in item.labels)


class Reconciler:
    """Compares pages of Stash scenes with their Plex items; every dependency is passed in."""

    def __init__(self, settings: Settings, stash: StashClient, plex: PlexClient, matcher: Matcher) -> None:
        self.settings = settings
        self.stash = stash
        self.plex = plex
        self.matcher = matcher

    def run(self, scope: str = "all", *, missing_only: bool = False,
            on_progress: ProgressCallback | None = None) -> ReconcileReport:
        """Compare every scene of `scope` (see `SCOPE_SECONDS`) and return the report."""
        since = since_for(scope)
        report = ReconcileReport(scope=scope, missing_only=missing_only)
        started = time.perf_counter()
        for total, page in self.stash.iter_scene_pages(since=since):
            self.compare_page(page, report, missing_only=missing_only)
            report.scanned += len(page)
            if on_progress is not None:
                on_progress(report.scanned, total)
        report.seconds = time.perf_counter() - started
        return report

    def compare_page(self, scenes: list[StashScene], report: ReconcileReport, *, missing_only: bool = False) -> None:
        """Categorize one page of scenes into `report` (one batched Plex read for the whole page)."""
        matched: list[tuple[StashScene, Match]] = []
        for scene in scenes:
            verdict, found = self._match(scene)
            if verdict is not None:
                report.add(verdict)
            elif found is not None:
                matched.append((scene, found))
        current = self.plex.fetch_items([found.rating_key for _scene, found in matched])
        for scene, found in matched:
            item = current.get(found.rating_key)
            if missing_only and item is not None and synced_before(item):
                report.skipped_written += 1
                continue
            report.add(self._compare(scene, found, item))

    def _match(self, scene: StashScene) -> tuple[SceneComparison | None, Match | None]:
        try:
            return None, self.matcher.match(scene.id, scene.file_paths)
        except NoFiles:
            return SceneComparison(scene.id, Category.NOT_IN_PLEX, detail="the scene has no file in Stash"), None
        except AmbiguousMatch as error:
            return SceneComparison(scene.id, Category.AMBIGUOUS, detail=str(error)), None
        except NotInPlexYet as error:
            return SceneComparison(scene.id, Category.NOT_IN_PLEX, detail=str(error)), None

    def _compare(self, scene: StashScene, found: Match, item: PlexItemState | None) -> SceneComparison:
        if item is None:
            self.matcher.index.forget(found.rating_key)  # a stale index entry: the next match looks again
            return SceneComparison(scene.id, Category.NOT_IN_PLEX,
                                   detail=f"Plex item {found.rating_key} is gone (deleted or re-added)")
        names = changed_fields(scene, item, self.settings)
        if names:
            return SceneComparison(scene.id, Category.DIFFERS, fields=names)
        return SceneComparison(scene.id, Category.IN_SYNC)


__all__ = ["SCOPE_SECONDS", "Category", "ReconcileReport", "Reconciler", "SceneComparison", "changed_fields", "since_for"]
