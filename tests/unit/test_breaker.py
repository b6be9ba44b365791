"""The circuit breaker opens on a sick Plex, lets one trial through, and closes on success."""

import pytest

from pipeline.breaker import BreakerState, CircuitBreaker
from pipeline.errors import BreakerOpen, NotInPlexYet, PermanentError, PlexDown, RateLimited, TransientError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(threshold=3, reset=60.0):
    clock = Clock()
    return CircuitBreaker(threshold, reset, clock=clock), clock


def test_opens_after_consecutive_plex_failures():
    breaker, _ = make()
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure(PlexDown("refused"))
    assert breaker.state == BreakerState.OPEN
    with pytest.raises(BreakerOpen) as raised:
        breaker.before_call()
    assert 59 <= raised.value.retry_after <= 60


def test_not_found_permanent_and_rate_limit_errors_never_count():
    breaker, _ = make(threshold=1)
    for error in (NotInPlexYet("x"), PermanentError("x"), RateLimited("x", retry_after=1)):
        breaker.record_failure(error)
    assert breaker.state == BreakerState.CLOSED


def test_a_success_resets_the_count():
    breaker, _ = make()
    breaker.record_failure(TransientError("503"))
    breaker.record_failure(TransientError("503"))
    breaker.record_success()
    breaker.record_failure(TransientError("503"))
    assert breaker.state == BreakerState.CLOSED


def test_half_open_lets_exactly_one_trial_through():
    breaker, clock = make(threshold=1)
    breaker.record_failure(PlexDown("refused"))
    clock.now += 61
    breaker.before_call()
    assert breaker.state == BreakerState.HALF_OPEN
    with pytest.raises(BreakerOpen):
        breaker.before_call()


def test_successful_trial_closes_and_failed_trial_reopens():
    breaker, clock = make(threshold=1)
    breaker.record_failure(PlexDown("refused"))
    clock.now += 61
    breaker.before_call()
    breaker.record_failure(PlexDown("still refused"))
    assert breaker.state == BreakerState.OPEN
    clock.now += 61
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == BreakerState.CLOSED


def test_state_changes_are_reported():
    seen = []
    breaker = CircuitBreaker(1, 60, on_change=lambda b: seen.append(b.state))
    breaker.record_failure(PlexDown("refused"))
    breaker.record_success()
    assert seen == [BreakerState.OPEN, BreakerState.CLOSED]


def test_a_trial_that_ends_in_an_uncounted_error_closes_the_breaker():
    breaker, clock = make(threshold=1)
    breaker.record_failure(PlexDown("refused"))
    clock.now += 61
    breaker.before_call()
    breaker.record_failure(NotInPlexYet("404: Plex answered"))
    assert breaker.state == BreakerState.CLOSED
    breaker.before_call()
