"""The four stages of a scene's trip to Plex, defined once: name, actor, queue, next stage.

    fetch       fetch_scene       Stash -> desired Plex state
    match       match_plex        path index -> Plex ratingKey
    push        push_metadata     current Plex state, field diff, poster upload
    performers  sync_performers   actor diff, then the scene's one edit request

`retry_at` is where a failed job starts again: every retry, deferral and DLQ replay goes back to
`fetch_scene`, so it works on Stash's state of now and a fresh read of the Plex item, never on the
snapshot of an earlier attempt. (A job deferred through a Plex outage with the desired state read
before an edit would otherwise overwrite the edit, synced meanwhile, once Plex is back: found by
the soak, ops/bench/soak.py.) The periodic actors share one `maintenance` queue.

Imported by the Stash hook's fast path too: standard library only, no `typing`/`dataclasses`.
"""

from __future__ import annotations

from pipeline.broker_address import queue_name

MAINTENANCE_QUEUE = "maintenance"


class Stage:
    """One stage of the chain (immutable)."""

    __slots__ = ("name", "actor_name", "next_name", "retry_at")
    name: str
    actor_name: str
    next_name: str | None
    retry_at: str

    def __init__(self, name: str, actor_name: str, next_name: str | None, retry_at: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "actor_name", actor_name)
        object.__setattr__(self, "next_name", next_name)
        object.__setattr__(self, "retry_at", retry_at)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Stage is immutable")

    def __repr__(self) -> str:
        return f"Stage({self.name!r}, actor={self.actor_name!r})"

    def queue(self, prefix: str) -> str:
        """`<prefix>.<actor>`: where this stage's messages wait."""
        return queue_name(prefix, self.actor_name)

    @property
    def next(self) -> Stage | None:
        return STAGES_BY_NAME[self.next_name] if self.next_name else None


FETCH = Stage("fetch", "fetch_scene", "match", retry_at="fetch")
MATCH = Stage("match", "match_plex", "push", retry_at="fetch")
PUSH = Stage("push", "push_metadata", "performers", retry_at="fetch")
PERFORMERS = Stage("performers", "sync_performers", None, retry_at="fetch")

STAGES = (FETCH, MATCH, PUSH, PERFORMERS)
STAGES_BY_NAME = {stage.name: stage for stage in STAGES}
STAGES_BY_ACTOR = {stage.actor_name: stage for stage in STAGES}


def stage_named(name: str) -> Stage:
    """The stage called `name` (fetch, match, push, performers); KeyError for anything else."""
    return STAGES_BY_NAME[name]


def queue_roles(prefix: str) -> list[tuple[str, str]]:
    """(queue, role) for every queue of this prefix: stages, their delay queues, the DLQ, maintenance."""
    from pipeline.broker_address import delay_queue, dlq_name

    names = [(stage.queue(prefix), "stage") for stage in STAGES]
    names += [(delay_queue(stage.queue(prefix)), "delay") for stage in STAGES]
    return names + [(dlq_name(prefix), "dlq"), (queue_name(prefix, MAINTENANCE_QUEUE), "maintenance")]
