"""Our Prometheus metrics, beside dramatiq's own `dramatiq_*` series (same exporter, port `metrics_port`).

In `dramatiq actors` worker processes these are multiprocess metrics: `actors.exporter.WorkerMetrics`
points prometheus_client at the run's folder before this module is imported. Anywhere else (the CLI,
plugin tasks, tests) they stay in memory and write no file. `initialise()` (at worker boot) creates
every labelled series at 0, so `increase()` and `rate()` see the first dead letter or failure.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from pipeline.breaker import BreakerState, CircuitBreaker
from pipeline.errors import ErrorClass
from pipeline.models import Outcome, SkipReason
from pipeline.policy import Action
from pipeline.stages import STAGES

BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}

SCENES = Counter("stash2plex_scenes_total", "Scenes that finished the chain, by outcome.", ["outcome"])
FAILURES = Counter("stash2plex_failures_total", "Failed attempts, by error class and what the policy did.",
                   ["error_class", "action", "stage"])
DEAD_LETTERS = Counter("stash2plex_dead_letters_total", "Jobs sent to the DLQ, by error class.", ["error_class"])
PLEX_REQUESTS = Counter("stash2plex_plex_requests_total", "Requests sent to Plex, by kind and HTTP status.",
                        ["kind", "status"])
PLEX_SECONDS = Histogram("stash2plex_plex_request_seconds", "Plex request latency.", ["kind"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
STAGE_SECONDS = Histogram("stash2plex_stage_seconds", "Time one actor spends on one message.", ["stage"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
SYNC_LATENCY = Histogram("stash2plex_sync_latency_seconds", "From the hook's publish to the Plex write.",
                         buckets=(0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 5, 15, 60, 300, 3600))
BREAKER = Gauge("stash2plex_breaker_state", "Plex circuit breaker per worker process: 0 closed, 1 half-open, 2 open.",
                multiprocess_mode="liveall")
BREAKER_OPENED = Counter("stash2plex_breaker_opened_total", "Times the Plex circuit breaker opened.")
STASH_BREAKER = Gauge("stash2plex_stash_breaker_state",
                      "Stash circuit breaker per worker process: 0 closed, 1 half-open, 2 open.", multiprocess_mode="liveall")
STASH_BREAKER_OPENED = Counter("stash2plex_stash_breaker_opened_total", "Times the Stash circuit breaker opened.")
SKIPPED = Counter("stash2plex_skipped_total", "Scenes skipped on purpose, by reason.", ["reason"])


def initialise() -> None:
    """Every labelled series at 0 for its known labels, and the breaker closed, before any work is done."""
    for outcome in Outcome:
        SCENES.labels(outcome.value)
    for error_class in ErrorClass:
        DEAD_LETTERS.labels(error_class.value)
        for action in Action:
            for stage in STAGES:
                FAILURES.labels(error_class.value, action.value, stage.name)
    for stage in STAGES:
        STAGE_SECONDS.labels(stage.name)
    for reason in SkipReason:
        SKIPPED.labels(reason.value)
    BREAKER.set(BREAKER_VALUES[BreakerState.CLOSED])
    STASH_BREAKER.set(BREAKER_VALUES[BreakerState.CLOSED])


def on_plex_request(kind: str, seconds: float, status: int | None) -> None:
    PLEX_REQUESTS.labels(kind, str(status) if status is not None else "error").inc()
    PLEX_SECONDS.labels(kind).observe(seconds)


def on_breaker_change(breaker: CircuitBreaker) -> None:
    gauge, opened = (STASH_BREAKER, STASH_BREAKER_OPENED) if breaker.service == "stash" else (BREAKER, BREAKER_OPENED)
    gauge.set(BREAKER_VALUES[breaker.state])
    if breaker.state == BreakerState.OPEN:
        opened.inc()
