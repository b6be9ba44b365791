"""`RetryPolicy`: the one dramatiq middleware that decides what happens to a failed job.

Every stage actor works on a batch of jobs. Jobs that went well are forwarded by the actor; the
ones that failed are raised together as `JobsFailed`, and any other exception fails every job of
the message. For each failed job, `pipeline.policy.decide` (pure) says:

    retry        send it again, after a backoff, to the stage it restarts at (fetch) (spends the retry budget)
    defer        the same, when Plex is down or the breaker is open (does not spend it)
    dead_letter  publish a `DlqEntry` with the reason to `<prefix>.dlq`; outcome `dead_letter`

Retries of one stage are sent as one message with the longest delay. A message the policy cannot
settle because RabbitMQ itself is gone is failed (nacked, never acked): RabbitMQ redelivers it, or
keeps it in dramatiq's `.XQ`, so nothing is lost. Maintenance actors (no jobs) are retried as a
whole up to their `max_retries` option with the same backoff.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import dramatiq
import dramatiq.errors
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware
from pydantic import ValidationError

from pipeline.dlq import DlqEntry
from pipeline.errors import BrokerUnreachable, MalformedMessage, SyncError, classify
from pipeline.logs import log_event
from pipeline.models import Job, Outcome
from pipeline.policy import Action, backoff, decide
from pipeline.stages import STAGES_BY_ACTOR, Stage, stage_named

if TYPE_CHECKING:
    from actors.runtime import Runtime

logger = logging.getLogger("stash2plex.retry")
MAINTENANCE_BACKOFF_SECONDS = 30.0


class JobsFailed(Exception):
    """Raised by a stage actor after forwarding its good jobs: the ones that failed, with their typed errors."""

    def __init__(self, failures: list[tuple[Job, SyncError]]) -> None:
        super().__init__(f"{len(failures)} job(s) failed")
        self.failures = failures


def jobs_in(message: dramatiq.Message | MessageProxy) -> list[Job]:
    """The jobs a stage message carries, read leniently (a malformed job keeps at least its scene id)."""
    raw = message.kwargs.get("jobs")
    if not isinstance(raw, list):
        scene_ids = message.args[0] if message.args else message.kwargs.get("scene_id")
        raw = [{"scene_id": i, "event": "hook"} for i in (scene_ids if isinstance(scene_ids, list) else [scene_ids])
               if i is not None]
    jobs = []
    for item in raw:
        item = item if isinstance(item, dict) else {"scene_id": item}
        try:
            jobs.append(Job.model_validate(item))
        except ValidationError:
            jobs.append(Job(scene_id=str(item.get("scene_id", "?"))))
    return jobs


def unreadable(message: dramatiq.Message | MessageProxy, exception: BaseException) -> tuple[Job, SyncError]:
    """A failed stage message that carries no readable job: dead-lettered (and counted) as `internal`, not lost."""
    return Job(scene_id="?"), MalformedMessage(
        f"malformed message: no job in {message.actor_name} message {message.message_id} "
        f"({type(exception).__name__}: {exception})")


class RetryPolicy(Middleware):
    """Retry, defer or dead-letter every failed job of the stage actors (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def actor_options(self) -> set[str]:
        return {"max_retries", "throws"}

    def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        if exception is None:
            return
        stage = STAGES_BY_ACTOR.get(message.actor_name)
        try:
            if stage is None:
                self._retry_whole(broker, message, exception)
                return
            if isinstance(exception, JobsFailed):
                failures = exception.failures
            else:
                error = classify(exception)
                failures = [(job, error) for job in jobs_in(message)] or [unreadable(message, exception)]
            self.settle(stage, failures)
        except (dramatiq.errors.BrokerError, BrokerUnreachable, OSError) as exc:
            # RabbitMQ is gone: do not ack. It redelivers the message (or keeps it in `.XQ`).
            log_event(logger, "failure_not_settled", level=logging.ERROR, stage=stage.name if stage else None,
                      actor=message.actor_name, error=f"{type(exc).__name__}: {exc}")
            message.fail()

    def settle(self, stage: Stage, failures: list[tuple[Job, SyncError]]) -> None:
        """Decide each failure, dead-letter what is exhausted, send the rest back with their delay."""
        from actors import metrics

        later: dict[tuple[str, Action], list[tuple[Job, float]]] = defaultdict(list)
        for failed, error in failures:
            failed_at = error.stage or stage.name
            decision = decide(failed, error, self.runtime.settings)
            job = failed.with_failure(decision.record)
            metrics.FAILURES.labels(error.error_class.value, decision.action.value, failed_at).inc()
            log_event(logger, decision.action.value, level=logging.WARNING, scene_id=job.scene_id, stage=failed_at,
                      error_class=error.error_class.value, error=str(error), attempts=job.attempts,
                      deferrals=job.deferrals, delay_s=round(decision.delay_seconds, 1) if decision.delay_seconds else None)
            if decision.action == Action.DEAD_LETTER:
                self.dead_letter(job, failed_at, decision.reason)
            else:
                later[(stage_named(failed_at).retry_at, decision.action)].append((job, decision.delay_seconds))
        for (target, _action), entries in later.items():
            self.runtime.send(target, [job for job, _ in entries], max(delay for _, delay in entries))

    def dead_letter(self, job: Job, stage: str, reason: str) -> None:
        from actors import metrics

        entry = DlqEntry.for_job(job, stage, reason)
        self.runtime.dlq().publish(entry)  # the next tidy merges it with the scene's earlier entry
        self.runtime.request_tidy()
        metrics.DEAD_LETTERS.labels(entry.error_class).inc()  # counted as soon as it is in the DLQ
        self.runtime.record_outcomes([(job, Outcome.DEAD_LETTER, f"{entry.error_class}: {entry.message}")])
        log_event(logger, "dead_letter", level=logging.ERROR, scene_id=job.scene_id, stage=stage,
                  error_class=entry.error_class, reason=reason)

    def _retry_whole(self, broker: dramatiq.Broker, message: MessageProxy, exception: BaseException) -> None:
        """A maintenance actor failed: run it again later, up to its `max_retries` option."""
        actor = broker.get_actor(message.actor_name)
        retries = int(message.options.get("retries", 0))
        error = classify(exception)
        if retries >= int(actor.options.get("max_retries", 0)):
            log_event(logger, "gave_up", level=logging.ERROR, actor=message.actor_name, retries=retries, error=str(error))
            message.fail()
            return
        message.options["retries"] = retries + 1
        delay = backoff(retries + 1, MAINTENANCE_BACKOFF_SECONDS)
        log_event(logger, "retry", level=logging.WARNING, actor=message.actor_name, retries=retries + 1,
                  delay_s=round(delay, 1), error=str(error))
        broker.enqueue(message.copy(), delay=int(delay * 1000))  # same id and options, `retries` counted
