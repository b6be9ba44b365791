"""dramatiq middleware of our own.

`DeadLetterGuard`: the actors apply the error-class policy themselves and never raise for a
classified failure; what still fails a message in dramatiq's eyes (RabbitMQ unreachable for every
infrastructure retry, a time limit, a malformed message) is copied into our DLQ too, so an operator
sees every job dramatiq gave up on in `<prefix>.dlq`, not only in the `.XQ` queues.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from pipeline.errors import scrub
from pipeline.logs import log_event

logger = logging.getLogger("stash2plex.dlq")
ACTOR_STAGES = {"fetch_scene": "fetch", "match_plex": "match", "push_metadata": "push", "sync_performers": "performers"}


def jobs_of(message: dramatiq.Message | MessageProxy) -> list[dict[str, Any]]:
    """The jobs a stage message carries, whatever its form (`jobs=[...]` or a hook's `(scene_id, event)`)."""
    jobs = message.kwargs.get("jobs")
    if isinstance(jobs, list):
        return [job if isinstance(job, dict) else {"scene_id": str(job)} for job in jobs]
    scene_ids = message.args[0] if message.args else message.kwargs.get("scene_id")
    scene_ids = scene_ids if isinstance(scene_ids, list) else [scene_ids]
    return [{"scene_id": str(scene_id), "event": "hook"} for scene_id in scene_ids if scene_id is not None]


class DeadLetterGuard(Middleware):
    """Must sit before `Retries` in the middleware list, so its after-hook runs once Retries has decided."""

    def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        if exception is None or not message.failed or message.actor_name not in ACTOR_STAGES:
            return
        from actors import runtime
        from actors.dlq import DlqEntry

        stage = ACTOR_STAGES[message.actor_name]
        text = scrub(f"{type(exception).__name__}: {exception}")[:2000]
        retries = int(message.options.get("retries", 0))
        for job in jobs_of(message):
            entry = DlqEntry(scene_id=str(job.get("scene_id", "?")), stage=stage, actor=message.actor_name,
                             error_class="internal", message=text, attempts=retries, job=job,
                             reason="dramatiq gave up on the message (infrastructure retries, time limit or malformed)")
            runtime.dlq().publish(entry)
            log_event(logger, "dead_letter", level=logging.ERROR, scene_id=entry.scene_id, stage=stage,
                      error_class="internal", error=text)
