"""The four stage actors, each on its own queue `<prefix>.<actor>` (pipeline/stages.py). Thin:

    fetch_scene(scene_id, event)   hook entry (`scene_id` may be a list); bulk work sends `jobs=[...]`
    match_plex(jobs)               path index -> ratingKey
    push_metadata(jobs)            current Plex state (batched), field diff, poster upload
    sync_performers(jobs)          actors, then the scene's one edit request

Each runs its step of `pipeline.sync` on the batch, forwards the jobs that go on as ONE message to
the next stage, records the finished ones, and raises `JobsFailed` for the rest: what happens to
those is decided by the `RetryPolicy` middleware alone (actors/retry.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from actors.retry import JobsFailed
from pipeline.models import Job
from pipeline.stages import FETCH, MATCH, PERFORMERS, PUSH, STAGES, Stage

if TYPE_CHECKING:
    from actors.runtime import Actor, Runtime

# dramatiq's options for every stage actor: a message may take 10 min; JobsFailed is expected (no traceback).
STAGE_OPTIONS: dict[str, Any] = {"time_limit": 10 * 60 * 1000, "throws": (JobsFailed,)}


def hook_jobs(scene_id: Any, event: str) -> list[dict[str, Any]]:
    """The jobs of a hook message `fetch_scene(scene_id, event)` (a bulk edit's lead run sends a list)."""
    message = CurrentMessage.get_current_message()
    origin = message.message_timestamp / 1000 if message is not None else time.time()
    ids = scene_id if isinstance(scene_id, list) else [scene_id]
    return [{"scene_id": str(i), "event": event, "origin_ts": origin} for i in ids if i not in (None, "", 0, "0")]


def run_stage(runtime: Runtime, stage: Stage, raw_jobs: list[dict[str, Any]]) -> None:
    """One stage on one message's jobs (see the module docstring)."""
    from actors import metrics

    jobs = [Job.model_validate(item) for item in raw_jobs]
    started = time.perf_counter()
    result = runtime.engine().step(stage.name)(jobs)
    if stage.next_name and result.forward:
        runtime.send(stage.next_name, result.forward)
    runtime.record_outcomes(result.done)
    metrics.STAGE_SECONDS.labels(stage.name).observe(time.perf_counter() - started)
    if result.failed:
        raise JobsFailed(result.failed)


def declare_stage_actors(runtime: Runtime) -> dict[str, Actor]:
    """Declare the four actors on the runtime's broker; returns them by stage name."""

    def fetch_scene(scene_id: str | int | list[str | int] | None = None, event: str = "Scene.Update.Post",
                    jobs: list[dict[str, Any]] | None = None) -> None:
        """Read scenes from Stash (one request for the batch) and build their desired Plex state."""
        run_stage(runtime, FETCH, jobs if jobs is not None else hook_jobs(scene_id, event))

    def match_plex(jobs: list[dict[str, Any]]) -> None:
        """Find each scene's Plex item through the path index."""
        run_stage(runtime, MATCH, jobs)

    def push_metadata(jobs: list[dict[str, Any]]) -> None:
        """Read the items' full state (batched), diff the fields, upload changed posters."""
        run_stage(runtime, PUSH, jobs)

    def sync_performers(jobs: list[dict[str, Any]]) -> None:
        """Diff the actors and send each scene's single edit request."""
        run_stage(runtime, PERFORMERS, jobs)

    functions: dict[str, Callable[..., None]] = {"fetch": fetch_scene, "match": match_plex, "push": push_metadata, "performers": sync_performers}
    return {
        stage.name: dramatiq.actor(broker=runtime.broker, actor_name=stage.actor_name,
                                   queue_name=stage.queue(runtime.settings.queue_prefix), **STAGE_OPTIONS)(functions[stage.name])
        for stage in STAGES
    }
