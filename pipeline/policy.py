"""What to do with a failed job: retry (spends the budget), defer (does not), or dead-letter.

| error class  | decision                                                                           |
|--------------|------------------------------------------------------------------------------------|
| permanent    | DLQ now                                                                            |
| transient    | retry with jittered backoff (`retry_base_seconds`, doubling, 10 min cap), Retry-After for a |
|              | 429; DLQ after `max_retries` tries                                                 |
| not_in_plex  | slow retry (`not_found_base_seconds`, doubling, 10 min cap: 12 tries ≈ 1.5 h); DLQ after |
|              | `not_found_retries`                                                                |
| internal     | DLQ now (a malformed message)                                                      |
| plex_down,   | defer until the server's breaker may half-open (at most 15 min, under RabbitMQ's   |
| stash_down   | 30 min consumer timeout), not counted; DLQ once the job has been failing for more  |
|              | than `max_defer_days`                                                              |

Pure: no broker, no clock of its own (`now` is passed in), randomness injectable for tests.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from enum import StrEnum

from pipeline.config import Settings
from pipeline.errors import DEFERRED_CLASSES, ErrorClass, SyncError
from pipeline.models import FailureRecord, Job

MAX_DELAY_SECONDS = 600.0
MAX_DEFER_SECONDS = 900.0


class Action(StrEnum):
    RETRY = "retry"
    DEFER = "defer"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Decision:
    """What to do (`action`, after `delay_seconds`), why (`reason`, for the DLQ), and the job's new failure record."""

    action: Action
    record: FailureRecord
    delay_seconds: float = 0.0
    reason: str = ""


def backoff(attempt: int, base: float, cap: float = MAX_DELAY_SECONDS, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: a random delay in [ceiling/2, ceiling], ceiling = base·2^(attempt-1)."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling / 2 + (rng or random).random() * ceiling / 2


def failure_record(job: Job, error: SyncError, now: float, *, count_attempt: bool = False,
                   count_deferral: bool = False) -> FailureRecord:
    """`job`'s failure history with this failure added (the job itself is left as it is)."""
    return FailureRecord(
        attempts=job.attempts + (1 if count_attempt else 0),
        deferrals=job.deferrals + (1 if count_deferral else 0),
        first_failure=job.first_failure or now,
        last_failure=now,
        last_error=str(error),
        error_class=error.error_class.value,
    )


def decide(job: Job, error: SyncError, settings: Settings, now: float | None = None, rng: random.Random | None = None) -> Decision:
    """What happens next to `job` after `error`, and its failure record (pure: `job` is not changed)."""
    now = time.time() if now is None else now
    kind = error.error_class
    record = failure_record(job, error, now, count_attempt=kind in (ErrorClass.TRANSIENT, ErrorClass.NOT_IN_PLEX),
                            count_deferral=kind in DEFERRED_CLASSES)
    if kind in (ErrorClass.PERMANENT, ErrorClass.INTERNAL):
        reason = "malformed message" if kind == ErrorClass.INTERNAL else "permanent error"
        return Decision(Action.DEAD_LETTER, record, reason=reason)
    if kind == ErrorClass.TRANSIENT:
        if record.attempts > settings.max_retries:
            return Decision(Action.DEAD_LETTER, record, reason=f"still failing after {settings.max_retries} retries")
        delay = error.retry_after if error.retry_after else backoff(record.attempts, settings.retry_base_seconds, rng=rng)
        return Decision(Action.RETRY, record, min(delay, MAX_DELAY_SECONDS))
    if kind == ErrorClass.NOT_IN_PLEX:
        if record.attempts > settings.not_found_retries:
            return Decision(Action.DEAD_LETTER, record, reason=f"not in Plex after {settings.not_found_retries} retries")
        return Decision(Action.RETRY, record, backoff(record.attempts, settings.not_found_base_seconds, rng=rng))
    age = now - (record.first_failure or now)
    if age > settings.max_defer_days * 86400:
        server = "Stash" if kind == ErrorClass.STASH_DOWN else "Plex"
        return Decision(Action.DEAD_LETTER, record, reason=f"{server} unreachable for more than {settings.max_defer_days:g} days")
    wait = error.retry_after or settings.breaker_reset_seconds
    jitter = (rng or random).random() * min(5.0, wait * 0.2)
    return Decision(Action.DEFER, record, min(max(wait, 1.0) + jitter, MAX_DEFER_SECONDS))
