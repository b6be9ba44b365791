"""The retry policy: each error class gets its documented fate."""

import random

from pipeline.config import load_settings
from pipeline.errors import AuthError, BreakerOpen, NotInPlexYet, PlexDown, RateLimited, TransientError
from pipeline.models import Job
from pipeline.policy import MAX_DEFER_SECONDS, Action, backoff, decide

SETTINGS = load_settings(max_retries=3, not_found_retries=2, breaker_reset_seconds=60, max_defer_days=1)
RNG = random.Random(1)


def test_permanent_errors_go_straight_to_the_dlq():
    job = Job(scene_id="1")
    assert decide(job, AuthError("401"), SETTINGS, rng=RNG).action == Action.DEAD_LETTER
    assert job.attempts == 0


def test_transient_errors_retry_with_growing_delays_then_dead_letter():
    job = Job(scene_id="1")
    delays = []
    for _ in range(3):
        decision = decide(job, TransientError("503"), SETTINGS, rng=RNG)
        assert decision.action == Action.RETRY
        delays.append(decision.delay_seconds)
    assert delays[0] < delays[2]
    assert decide(job, TransientError("503"), SETTINGS, rng=RNG).action == Action.DEAD_LETTER
    assert job.attempts == 4


def test_rate_limit_waits_its_retry_after():
    decision = decide(Job(scene_id="1"), RateLimited("429", retry_after=7), SETTINGS, rng=RNG)
    assert decision == decision.__class__(Action.RETRY, 7)


def test_not_in_plex_retries_slowly_and_is_bounded():
    job = Job(scene_id="1")
    first = decide(job, NotInPlexYet("missing"), SETTINGS, rng=RNG)
    assert first.action == Action.RETRY and first.delay_seconds >= 15
    decide(job, NotInPlexYet("missing"), SETTINGS, rng=RNG)
    final = decide(job, NotInPlexYet("missing"), SETTINGS, rng=RNG)
    assert final.action == Action.DEAD_LETTER and "not in Plex" in final.reason


def test_plex_down_defers_without_spending_retries():
    job = Job(scene_id="1")
    for _ in range(50):
        decision = decide(job, BreakerOpen("open", retry_after=42), SETTINGS, rng=RNG)
        assert decision.action == Action.DEFER
        assert 42 <= decision.delay_seconds <= MAX_DEFER_SECONDS
    assert job.attempts == 0 and job.deferrals == 50


def test_plex_down_dead_letters_after_the_max_age():
    job = Job(scene_id="1", first_failure=1000.0)
    decision = decide(job, PlexDown("refused"), SETTINGS, now=1000.0 + 2 * 86400, rng=RNG)
    assert decision.action == Action.DEAD_LETTER


def test_backoff_stays_within_half_and_full_ceiling():
    for attempt in range(1, 12):
        delay = backoff(attempt, 5, cap=600, rng=RNG)
        ceiling = min(600, 5 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
