"""Our Prometheus metrics, beside dramatiq's own `dramatiq_*` series (same exporter, port `metrics_port`).

Multiprocess-safe: `actors.broker.prepare_prometheus_env()` runs before this module is imported.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from pipeline.breaker import BreakerState, CircuitBreaker

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


def on_plex_request(kind: str, seconds: float, status: int | None) -> None:
    PLEX_REQUESTS.labels(kind, str(status) if status is not None else "error").inc()
    PLEX_SECONDS.labels(kind).observe(seconds)


def on_breaker_change(breaker: CircuitBreaker) -> None:
    BREAKER.set(BREAKER_VALUES[breaker.state])
    if breaker.state == BreakerState.OPEN:
        BREAKER_OPENED.inc()
