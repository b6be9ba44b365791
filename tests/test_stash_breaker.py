"""The Stash client's breaker against the Stash emulator over HTTP: an outage or a sick Stash is deferred
(stash_down), never a spent retry, and an open breaker sends nothing to Stash."""

from __future__ import annotations

import time

import pytest

from pipeline.breaker import BreakerState
from pipeline.errors import ErrorClass, StashBreakerOpen, StashDown, TransientError
from pipeline.stash import StashClient


@pytest.fixture
def client(make_settings):
    return StashClient(make_settings(breaker_failures=3, breaker_reset_seconds=60))


def test_a_stash_that_refuses_connections_is_stash_down(make_settings, closed_port):
    client = StashClient(make_settings(stash_url=f"http://127.0.0.1:{closed_port}"))
    with pytest.raises(StashDown) as raised:
        client.find_scenes(["1"])
    assert raised.value.error_class == ErrorClass.STASH_DOWN


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_gateway_or_unavailable_answer_is_stash_down(client, stash, status):
    stash.faults.fail_next(1, status, path_prefix="/graphql")
    with pytest.raises(StashDown):
        client.find_scenes(["1"])


def test_a_500_is_transient_until_it_opens_the_breaker(client, stash):
    stash.faults.fail_next(3, 500, path_prefix="/graphql")
    for _ in range(2):
        with pytest.raises(TransientError):
            client.find_scenes(["1"])
    with pytest.raises(StashDown):  # the third failure opens the breaker: from now on it is an outage
        client.find_scenes(["1"])
    assert client.breaker.state == BreakerState.OPEN


def test_an_open_breaker_refuses_without_asking_stash(client, stash):
    stash.faults.fail_next(3, 500, path_prefix="/graphql")
    for _ in range(3):
        with pytest.raises((TransientError, StashDown)):
            client.find_scenes(["1"])
    asked = len(stash.requests)
    with pytest.raises(StashBreakerOpen) as raised:
        client.find_scenes(["1"])
    assert len(stash.requests) == asked
    assert raised.value.error_class == ErrorClass.STASH_DOWN and raised.value.retry_after > 0


def test_a_good_answer_closes_a_half_open_breaker(make_settings, stash):
    client = StashClient(make_settings(breaker_failures=1, breaker_reset_seconds=0.05))
    stash.faults.fail_next(1, 503, path_prefix="/graphql")
    with pytest.raises(StashDown):
        client.find_scenes(["1"])
    assert client.breaker.state == BreakerState.OPEN
    time.sleep(0.1)
    assert set(client.find_scenes(["1"])) == {"1"}
    assert client.breaker.state == BreakerState.CLOSED


def test_no_secret_in_a_stash_down_message(make_settings, closed_port):
    client = StashClient(make_settings(stash_url=f"http://127.0.0.1:{closed_port}"))
    with pytest.raises(StashDown) as raised:
        client.find_scenes(["1"])
    assert "stash-test-key" not in str(raised.value)
