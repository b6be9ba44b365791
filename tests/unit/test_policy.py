"""The retry policy: each error class gets its documented fate; `decide` is pure."""

import random

from pipeline.config import load_settings
from pipeline.errors import (
    StashBreakerOpen,
    StashDown,
    AuthError,
    BreakerOpen,
    MalformedMessage,
    NotInPlexYet,
    PlexDown,
    RateLimited,
    SyncError,
    TransientError,
)
from pipeline.models import Job
from pipeline.policy import MAX_DEFER_SECONDS, Action, Decision, backoff, decide

SETTINGS = load_settings(max_retries=3, not_found_retries=2, breaker_reset_seconds=60, max_defer_days=1)
RNG = random.Random(1)


def fail_repeatedly(job: Job, error: SyncError, times: int) -> tuple[Job, list[Decision]]:
    """Apply `decide` `times` times, carrying each failure record on, as the RetryPolicy middleware does."""
    decisions = []
    for _ in range(times):
        decision = decide(job, error, SETTINGS, rng=RNG)
        decisions.append(decision)
        job = job.with_failure(decision.record)
    return job, decisions


def test_decide_leaves_the_job_as_it_is_and_returns_the_failure_record():
    job = Job(scene_id="1")
    decision = decide(job, TransientError("503"), SETTINGS, now=1000.0, rng=RNG)
    assert job.attempts == 0 and job.first_failure is None and job.last_error is None
    assert decision.record.attempts == 1 and decision.record.deferrals == 0
    assert decision.record.first_failure == decision.record.last_failure == 1000.0
    assert decision.record.last_error == "503" and decision.record.error_class == "transient"


def test_the_first_failure_time_is_kept_across_failures():
    job = Job(scene_id="1", attempts=1, first_failure=500.0, last_failure=500.0)
    record = decide(job, TransientError("503"), SETTINGS, now=900.0, rng=RNG).record
    assert (record.first_failure, record.last_failure, record.attempts) == (500.0, 900.0, 2)


def test_permanent_errors_go_straight_to_the_dlq():
    decision = decide(Job(scene_id="1"), AuthError("401"), SETTINGS, rng=RNG)
    assert decision.action == Action.DEAD_LETTER and decision.reason == "permanent error"


def test_a_malformed_message_goes_straight_to_the_dlq():
    decision = decide(Job(scene_id="1"), MalformedMessage("bad jobs"), SETTINGS, rng=RNG)
    assert decision.action == Action.DEAD_LETTER and decision.record.error_class == "internal"


def test_transient_errors_retry_with_growing_delays_then_dead_letter():
    job, decisions = fail_repeatedly(Job(scene_id="1"), TransientError("503"), 4)
    assert [d.action for d in decisions] == [Action.RETRY] * 3 + [Action.DEAD_LETTER]
    assert decisions[0].delay_seconds < decisions[2].delay_seconds
    assert job.attempts == 4 and "3 retries" in decisions[3].reason


def test_rate_limit_waits_its_retry_after():
    decision = decide(Job(scene_id="1"), RateLimited("429", retry_after=7), SETTINGS, rng=RNG)
    assert (decision.action, decision.delay_seconds) == (Action.RETRY, 7)


def test_not_in_plex_retries_slowly_and_is_bounded():
    _job, decisions = fail_repeatedly(Job(scene_id="1"), NotInPlexYet("missing"), 3)
    assert decisions[0].action == Action.RETRY and decisions[0].delay_seconds >= 15
    assert decisions[2].action == Action.DEAD_LETTER and "not in Plex" in decisions[2].reason


def test_plex_down_defers_without_spending_retries():
    job, decisions = fail_repeatedly(Job(scene_id="1"), BreakerOpen("open", retry_after=42), 50)
    assert all(d.action == Action.DEFER and 42 <= d.delay_seconds <= MAX_DEFER_SECONDS for d in decisions)
    assert job.attempts == 0 and job.deferrals == 50


def test_plex_down_dead_letters_after_the_max_age():
    job = Job(scene_id="1", first_failure=1000.0)
    decision = decide(job, PlexDown("refused"), SETTINGS, now=1000.0 + 2 * 86400, rng=RNG)
    assert decision.action == Action.DEAD_LETTER


def test_stash_down_defers_without_spending_retries():
    job, decisions = fail_repeatedly(Job(scene_id="1"), StashBreakerOpen("open", retry_after=30), 50)
    assert all(d.action == Action.DEFER for d in decisions)
    assert job.attempts == 0 and job.deferrals == 50


def test_stash_down_dead_letters_after_the_max_age_naming_stash():
    job = Job(scene_id="1", first_failure=1000.0)
    decision = decide(job, StashDown("refused"), SETTINGS, now=1000.0 + 8 * 86400, rng=RNG)
    assert decision.action == Action.DEAD_LETTER and "Stash unreachable" in decision.reason


def test_backoff_stays_within_half_and_full_ceiling():
    for attempt in range(1, 12):
        delay = backoff(attempt, 5, cap=600, rng=RNG)
        ceiling = min(600, 5 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
