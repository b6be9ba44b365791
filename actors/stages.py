"""The four actors, each on its own queue `<prefix>.<actor>`. Thin: the work is in `pipeline.sync`.

    fetch_scene(scene_id, event)   hook/CLI entry; `scene_id` may also be a list (bulk syncs batch them)
    match_plex(jobs)               path index -> ratingKey
    push_metadata(jobs)            current Plex state, field diff, poster upload
    sync_performers(jobs)          actors, then the scene's one edit request

Jobs that go on are forwarded as ONE message to the next actor. Failures are decided per job by
`pipeline.policy`: retried or deferred as a fresh delayed message to the actor of the failing stage
(deferrals do not spend the retry budget), or written to the DLQ. The actors never raise for a
classified failure, so nothing lands in dramatiq's `.XQ` queues; a failure to publish (RabbitMQ
gone) does raise, and the message is redelivered (late acks) — the steps are idempotent.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import dramatiq
from pydantic import ValidationError
from dramatiq.middleware import CurrentMessage

from actors import metrics, runtime
from actors.dlq import STAGE_ACTORS, DlqEntry
from pipeline.errors import SyncError
from pipeline.logs import log_event
from pipeline.models import Job
from pipeline.policy import Action, decide
from pipeline.sync import StageResult

logger = logging.getLogger("stash2plex.actors")
settings = runtime.settings()
NEXT_STAGE = {"fetch": "match", "match": "push", "push": "performers", "performers": None}


def _origin_ts() -> float:
    message = CurrentMessage.get_current_message()
    return message.message_timestamp / 1000 if message is not None else time.time()


def _dump(jobs: list[Job]) -> list[dict[str, Any]]:
    return [job.model_dump(mode="json", exclude_defaults=True) for job in jobs]


def send_jobs(stage: str, jobs: list[Job], delay_seconds: float = 0.0) -> None:
    actor = ACTORS[stage]
    if delay_seconds > 0:
        actor.send_with_options(kwargs={"jobs": _dump(jobs)}, delay=int(delay_seconds * 1000))
    else:
        actor.send_with_options(kwargs={"jobs": _dump(jobs)})


def run_stage(stage: str, jobs: list[Job]) -> StageResult:
    engine = runtime.engine()
    started = time.perf_counter()
    result: StageResult = getattr(engine, stage)(jobs)
    following = NEXT_STAGE[stage]
    if following and result.forward:
        send_jobs(following, result.forward)
    engine.record(result.done)
    for job, outcome, _detail in result.done:
        metrics.SCENES.labels(outcome.value).inc()
        if outcome.value == "updated":
            metrics.SYNC_LATENCY.observe(max(0.0, time.time() - job.origin_ts))
    _handle_failures(result.failed)
    metrics.STAGE_SECONDS.labels(stage).observe(time.perf_counter() - started)
    return result


def _handle_failures(failed: list[tuple[Job, SyncError]]) -> None:
    """Apply the policy per job; send the retries of one stage as one message with the longest delay."""
    later: dict[tuple[str, Action], list[tuple[Job, float]]] = defaultdict(list)
    for job, error in failed:
        stage = error.stage or "fetch"
        decision = decide(job, error, settings)
        metrics.FAILURES.labels(error.error_class.value, decision.action.value, stage).inc()
        log_event(logger, decision.action.value, level=logging.WARNING, scene_id=job.scene_id, stage=stage,
                  error_class=error.error_class.value, error=str(error), attempts=job.attempts,
                  deferrals=job.deferrals, delay_s=round(decision.delay_seconds, 1) if decision.delay_seconds else None)
        if decision.action == Action.DEAD_LETTER:
            dead_letter(job, stage, error, decision.reason)
        else:
            later[(stage, decision.action)].append((job, decision.delay_seconds))
    for (stage, _action), entries in later.items():
        send_jobs(stage, [job for job, _ in entries], max(delay for _, delay in entries))


def dead_letter(job: Job, stage: str, error: SyncError, reason: str) -> None:
    entry = DlqEntry(
        scene_id=job.scene_id, stage=stage, actor=STAGE_ACTORS[stage], error_class=error.error_class.value,
        message=str(error), reason=reason, attempts=job.attempts, deferrals=job.deferrals,
        first_failure=job.first_failure, last_failure=job.last_failure, job=job.model_dump(mode="json"),
    )
    runtime.dlq().publish(entry)
    runtime.engine().store.record_outcomes([(job.scene_id, "dead_letter", f"{entry.error_class}: {entry.message}")])
    metrics.DEAD_LETTERS.labels(entry.error_class).inc()
    metrics.SCENES.labels("dead_letter").inc()


def _jobs(raw: list[dict[str, Any]]) -> list[Job]:
    return [Job.model_validate(item) for item in raw]


# dramatiq's own retries are for infrastructure failures only; a malformed message cannot get better.
ACTOR_OPTIONS: dict[str, Any] = {"max_retries": 20, "time_limit": 10 * 60 * 1000, "throws": (ValidationError,)}


@dramatiq.actor(actor_name="fetch_scene", queue_name=settings.queue_name("fetch_scene"), **ACTOR_OPTIONS)
def fetch_scene(scene_id: str | int | list[str | int] | None = None, event: str = "Scene.Update.Post",
                jobs: list[dict[str, Any]] | None = None) -> None:
    """Read scenes from Stash (one request for the whole batch) and build their desired Plex state."""
    if jobs is None:
        ids = scene_id if isinstance(scene_id, list) else [scene_id]
        origin = _origin_ts()
        jobs = [{"scene_id": str(i), "event": event, "origin_ts": origin} for i in ids if i not in (None, "", 0, "0")]
    run_stage("fetch", _jobs(jobs))


@dramatiq.actor(actor_name="match_plex", queue_name=settings.queue_name("match_plex"), **ACTOR_OPTIONS)
def match_plex(jobs: list[dict[str, Any]]) -> None:
    """Find each scene's Plex item through the path index."""
    run_stage("match", _jobs(jobs))


@dramatiq.actor(actor_name="push_metadata", queue_name=settings.queue_name("push_metadata"), **ACTOR_OPTIONS)
def push_metadata(jobs: list[dict[str, Any]]) -> None:
    """Read the items' full state (batched), diff the fields, upload changed posters."""
    run_stage("push", _jobs(jobs))


@dramatiq.actor(actor_name="sync_performers", queue_name=settings.queue_name("sync_performers"), **ACTOR_OPTIONS)
def sync_performers(jobs: list[dict[str, Any]]) -> None:
    """Diff the actors and send each scene's single edit request."""
    run_stage("performers", _jobs(jobs))


ACTORS: dict[str, dramatiq.Actor[..., None]] = {
    "fetch": fetch_scene, "match": match_plex, "push": push_metadata, "performers": sync_performers,
}
