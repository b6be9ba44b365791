"""The four sync steps, each working on a batch of jobs, with no broker in sight.

    fetch       Stash -> desired Plex state (one GraphQL request per batch); bursts coalesced
    match       path index -> ratingKey (no Plex request when the index knows the file)
    push        full current Plex state (one request per 100 items), field diff, poster upload
    performers  actor diff, then the scene's ONE edit request carrying every changed field

Each step returns a `StageResult`: jobs that go on, jobs that are finished (with their outcome),
and jobs that failed with a typed error. What happens to a failure (retry, defer, DLQ) is the
caller's policy (`pipeline/policy.py` for the actors, "report it" for inline runs); the caller also
records final outcomes with `record()`.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.breaker import CircuitBreaker
from pipeline.config import Settings
from pipeline.errors import NotInPlexYet, SyncError, TransientError
from pipeline.logs import log_event, show_path
from pipeline.matching import Matcher, PathIndex, map_path
from pipeline.metadata import cover_label_params, desired_state, plan_actors, plan_fields, poster_is_current
from pipeline.models import Job, Outcome, PlexItemState, SkipReason, StashScene
from pipeline.pacing import RateLimiter
from pipeline.policy import failure_record
from pipeline.plex import ItemGone, PlexClient, RequestListener
from pipeline.stash import StashClient, stash_breaker
from pipeline.state import StateStore

logger = logging.getLogger("stash2plex.sync")

COALESCE_SECONDS = 5.0


@dataclass
class StageResult:
    """What one step did with a batch: jobs that go on, jobs that are finished, jobs that failed."""

    forward: list[Job] = field(default_factory=list)
    done: list[tuple[Job, Outcome, str]] = field(default_factory=list)
    failed: list[tuple[Job, SyncError]] = field(default_factory=list)

    def fail(self, job: Job, error: SyncError, stage: str) -> None:
        error.stage = error.stage or stage
        self.failed.append((job, error))

    def skip(self, job: Job, reason: SkipReason, detail: str) -> None:
        """Finished on purpose without a write: a counted `skipped` outcome, never an error or a DLQ entry."""
        job.skip_reason = reason.value
        self.done.append((job, Outcome.SKIPPED, detail))


def refresh_view(settings: Settings) -> Settings:
    """push_mode=refresh: diff only what the provider serves, as it serves it (no collection, no userRating,
    actor photos left to Plex), so a refreshed item diffs to "unchanged" next time."""
    return settings.model_copy(update={"sync_collection": False, "sync_rating": False, "performer_thumbs": False})


def _unexpected(exc: Exception) -> SyncError:
    """A bug or an unforeseen library error: retried like a transient error, then dead-lettered with its text."""
    return TransientError(f"unexpected {type(exc).__name__}: {exc}")


class SyncEngine:
    def __init__(self, settings: Settings, stash: StashClient, plex: PlexClient, store: StateStore) -> None:
        self.settings = settings
        self.stash = stash
        self.plex = plex
        self.store = store
        self.index = PathIndex(plex, store)
        self.matcher = Matcher(self.index, settings)
        self.desired_settings = refresh_view(settings) if settings.push_mode == "refresh" else settings
        self._recent: dict[str, tuple[str, float]] = {}
        self._recent_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        on_request: RequestListener | None = None,
        on_breaker_change: Callable[[CircuitBreaker], None] | None = None,
    ) -> "SyncEngine":
        store = StateStore(settings.data_dir, settings.outcome_retention_days * 86400)
        breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset_seconds, on_change=on_breaker_change)
        plex = PlexClient(settings, store.client_identifier(), breaker, RateLimiter(settings.plex_max_rps), on_request)
        stash = StashClient(settings, breaker=stash_breaker(settings, on_change=on_breaker_change))
        return cls(settings, stash, plex, store)

    def step(self, stage: str) -> Callable[[list[Job]], StageResult]:
        """The step of `stage` (fetch, match, push, performers)."""
        steps = {"fetch": self.fetch, "match": self.match, "push": self.push, "performers": self.performers}
        return steps[stage]

    # --- fetch -------------------------------------------------------------------------------
    def fetch(self, jobs: list[Job]) -> StageResult:
        result = StageResult()
        if not self.settings.enabled:
            for job in jobs:
                result.skip(job, SkipReason.DISABLED, "stash2plex is disabled (enabled=false)")
            return result
        first_of_scene: dict[str, Job] = {}
        for job in jobs:
            if job.scene_id in first_of_scene:
                result.done.append((job, Outcome.COALESCED, "duplicate in batch"))
            else:
                first_of_scene[job.scene_id] = job
        unique = list(first_of_scene.values())
        try:
            scenes = self.stash.find_scenes([job.scene_id for job in unique])
        except SyncError as error:
            for job in unique:
                result.fail(job, error, "fetch")
            return result
        for job in unique:
            scene = scenes.get(job.scene_id)
            if scene is None:
                log_event(logger, "scene_gone", level=logging.WARNING, scene_id=job.scene_id, stage="fetch")
                result.skip(job, SkipReason.SCENE_GONE, "scene no longer in Stash")
                continue
            self._prepare(job, scene, result)
        return result

    def fetch_from_scenes(self, jobs_and_scenes: list[tuple[Job, StashScene]]) -> StageResult:
        """Like `fetch`, for scenes already read (bulk listings carry the full scene)."""
        result = StageResult()
        for job, scene in jobs_and_scenes:
            self._prepare(job, scene, result)
        return result

    def _prepare(self, job: Job, scene: StashScene, result: StageResult) -> None:
        if not scene.files:
            detail = f"No file path for scene {scene.id}, cannot sync"  # the older plugin's words, which users know
            log_event(logger, "skipped", level=logging.WARNING, scene_id=scene.id, stage="fetch",
                      reason=SkipReason.NO_FILE.value, message=detail)
            result.skip(job, SkipReason.NO_FILE, detail)
            return
        try:
            job.desired = desired_state(scene, self.desired_settings)
        except Exception as exc:  # noqa: BLE001 - classified, retried, then dead-lettered with its text
            result.fail(job, _unexpected(exc), "fetch")
            return
        job.files = scene.file_paths
        if job.event.startswith("Scene.") and job.attempts == 0 and job.deferrals == 0 and self._coalesce(job):
            log_event(logger, "coalesced", scene_id=job.scene_id, stage="fetch")
            result.done.append((job, Outcome.COALESCED, "same state already on its way to Plex"))
            return
        result.forward.append(job)

    def _coalesce(self, job: Job) -> bool:
        """True when a hook event's desired state for this scene went on less than 5 s ago (a burst of edits)."""
        assert job.desired is not None
        fingerprint = hashlib.sha1((job.desired.model_dump_json() + "|".join(job.files)).encode()).hexdigest()
        now = time.monotonic()
        with self._recent_lock:
            previous = self._recent.get(job.scene_id)
            if previous and previous[0] == fingerprint and now - previous[1] < COALESCE_SECONDS:
                return True
            self._recent[job.scene_id] = (fingerprint, now)
            if len(self._recent) > 10_000:
                self._recent = {k: v for k, v in self._recent.items() if now - v[1] < COALESCE_SECONDS}
        return False

    # --- match -------------------------------------------------------------------------------
    def match(self, jobs: list[Job]) -> StageResult:
        result = StageResult()
        for job in jobs:
            try:
                found = self.matcher.match(job.scene_id, job.files)
            except NotInPlexYet as error:
                self._maybe_scan(job)
                if self.settings.skip_not_found:
                    result.done.append((job, Outcome.NOT_FOUND, str(error)))
                else:
                    result.fail(job, error, "match")
                continue
            except SyncError as error:
                result.fail(job, error, "match")
                continue
            except Exception as exc:  # noqa: BLE001 - classified, retried, then dead-lettered with its text
                result.fail(job, _unexpected(exc), "match")
                continue
            job.rating_key, job.section_id = found.rating_key, found.section_id
            result.forward.append(job)
        return result

    def _maybe_scan(self, job: Job) -> None:
        """With trigger_plex_scan, ask Plex to scan the file's folder once per attempt."""
        if not self.settings.trigger_plex_scan or not job.files:
            return
        folder = posixpath.dirname(map_path(job.files[0], self.settings.path_map))
        try:
            for section in self.plex.sections():
                if not section.locations or any(folder.startswith(loc.rstrip("/")) for loc in section.locations):
                    self.plex.scan(section.id, folder)
                    self.index.expect_news()
                    log_event(logger, "scan_requested", scene_id=job.scene_id, stage="match",
                              section=section.title, folder=show_path(folder, self.settings))
        except SyncError as error:
            log_event(logger, "scan_failed", level=logging.WARNING, scene_id=job.scene_id, stage="match", error=str(error))

    # --- push --------------------------------------------------------------------------------
    def push(self, jobs: list[Job]) -> StageResult:
        result = StageResult()
        keys = [job.rating_key for job in jobs if job.rating_key is not None]
        try:
            current = self.plex.fetch_items(keys)
        except SyncError as error:
            for job in jobs:
                result.fail(job, error, "push")
            return result
        for job in jobs:
            try:
                self._push_one(job, current)
            except SyncError as error:
                result.fail(job, error, error.stage or "push")
                continue
            except Exception as exc:  # noqa: BLE001 - classified, retried, then dead-lettered with its text
                result.fail(job, _unexpected(exc), "push")
                continue
            result.forward.append(job)
        return result

    def _push_one(self, job: Job, current: dict[int, PlexItemState]) -> None:
        """Plan the fields from the item's current state and upload a changed poster (decided from Plex alone)."""
        assert job.desired is not None and job.rating_key is not None
        item = current.get(job.rating_key)
        if item is None:
            self.index.forget(job.rating_key)
            job.rating_key = None
            raise ItemGone(f"Plex item of scene {job.scene_id} is gone; matching again", stage="match")
        plan = plan_fields(job.desired, item, self.settings)
        job.edit, job.changed, job.diff = plan.params, plan.changed, plan.diff
        job.current_actors = item.actors
        job.section_id = item.section_id
        for name in plan.preserved:
            log_event(logger, "kept_plex_edit", scene_id=job.scene_id, stage="push", field=name)
        desired = job.desired
        if desired.poster_url and desired.poster_key and not poster_is_current(desired, item):
            job.changed.append("poster")
            job.diff["poster"] = (item.thumb, desired.poster_url)
            if not (job.dry_run or self.settings.dry_run):
                if self.settings.push_mode == "fields":  # in refresh mode Plex pulls the poster from the provider
                    self.plex.upload_poster(job.rating_key, self.stash.download(desired.poster_url))
                job.edit.update(cover_label_params(item.labels, desired.poster_key))  # rides on the one edit

    # --- performers and the edit -------------------------------------------------------------
    def performers(self, jobs: list[Job]) -> StageResult:
        result = StageResult()
        for job in jobs:
            try:
                result.done.append((job, *self._commit(job)))
            except SyncError as error:
                result.fail(job, error, "performers")
            except Exception as exc:  # noqa: BLE001 - classified, retried, then dead-lettered with its text
                result.fail(job, _unexpected(exc), "performers")
        return result

    def _commit(self, job: Job) -> tuple[Outcome, str]:
        assert job.desired is not None and job.rating_key is not None and job.section_id is not None
        actors = plan_actors(job.desired.actors, job.current_actors or [], self.settings)
        params = {**job.edit, **actors.params}
        changed = job.changed + actors.changed
        job.diff.update(actors.diff)
        if not changed:
            log_event(logger, "unchanged", scene_id=job.scene_id, stage="performers", rating_key=job.rating_key)
            return Outcome.UNCHANGED, ""
        if job.dry_run or self.settings.dry_run:
            log_event(logger, "dry_run", scene_id=job.scene_id, stage="performers", changed=changed)
            return Outcome.DRY_RUN, ",".join(changed)
        if self.settings.push_mode == "refresh":
            # Plex pulls every field and the poster from the provider (the library's agent); the one write
            # is the cover label, so that a poster Plex was asked to pull is not asked for again.
            labels = {key: value for key, value in params.items() if key.startswith("label[")}
            if labels:
                self.plex.edit(job.section_id, job.rating_key, labels)
            self.plex.refresh(job.rating_key)
        elif params:
            self.plex.edit(job.section_id, job.rating_key, params)
        latency_ms = (time.time() - job.origin_ts) * 1000
        log_event(logger, "updated", scene_id=job.scene_id, stage="performers", rating_key=job.rating_key,
                  changed=changed, latency_ms=round(latency_ms, 1))
        return Outcome.UPDATED, ",".join(changed)

    def record(self, outcomes: list[tuple[Job, Outcome, str]]) -> None:
        """Keep final outcomes in the state file (for `status`, `sync --wait` and reconcile)."""
        self.store.record_outcomes([(job.scene_id, outcome.value, detail) for job, outcome, detail in outcomes])

    # --- everything at once (inline runs) ----------------------------------------------------
    def run_batch(self, jobs: list[Job], scenes: list[StashScene] | None = None) -> list[tuple[Job, Outcome, str]]:
        """Run the four steps in-process; a failure ends its job as FAILED with the error's text."""
        outcomes: list[tuple[Job, Outcome, str]] = []
        first = self.fetch_from_scenes(list(zip(jobs, scenes))) if scenes is not None else self.fetch(jobs)
        steps = [self.match, self.push, self.performers]
        current = first
        while True:
            outcomes += current.done
            for failed, error in current.failed:
                job = failed.with_failure(failure_record(failed, error, time.time(), count_attempt=True))
                outcome = Outcome.NOT_FOUND if isinstance(error, NotInPlexYet) else Outcome.FAILED
                log_event(logger, "failed", level=logging.WARNING, scene_id=job.scene_id, stage=error.stage,
                          error_class=error.error_class.value, error=str(error))
                outcomes.append((job, outcome, f"{error.error_class.value}: {error}"))
            if not steps or not current.forward:
                break
            current = steps.pop(0)(current.forward)
        self.record(outcomes)
        return outcomes
