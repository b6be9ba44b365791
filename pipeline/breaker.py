"""A circuit breaker around a server (Plex, Stash), shared by the threads of one process.

closed --(breaker_failures consecutive transient/plex-down failures)--> open
open --(breaker_reset_seconds later, the next caller)--> half_open: exactly one trial call goes through
half_open --(trial succeeds)--> closed;  --(trial fails)--> open again

While open, `before_call()` raises its `refusal` error (`BreakerOpen` for Plex, `StashBreakerOpen` for
Stash) with `retry_after` = seconds until a trial may run, so callers defer work instead of spending
retries. Not-in-Plex-yet and permanent errors never count. Breakers are per process (documented in
the README); every change is reported to `on_change`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum

from pipeline.errors import BreakerOpen, BreakerRefusal, counts_for_breaker


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


StateListener = Callable[["CircuitBreaker"], None]


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 5,
        reset_seconds: float = 60.0,
        on_change: StateListener | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        service: str = "plex",
        refusal: type[BreakerRefusal] = BreakerOpen,
    ) -> None:
        self.service = service
        self.refusal = refusal
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self.on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at: float | None = None
        self.last_error: str | None = None
        self._trial_running = False
        self.opened_count = 0

    def before_call(self) -> None:
        """Let a call through, or raise `BreakerOpen`. In half-open, only one trial at a time."""
        with self._lock:
            if self.state == BreakerState.CLOSED:
                return
            now = self._clock()
            wait = (self.opened_at or now) + self.reset_seconds - now
            if self.state == BreakerState.OPEN and wait <= 0:
                self._set(BreakerState.HALF_OPEN)
            if self.state == BreakerState.HALF_OPEN and not self._trial_running:
                self._trial_running = True
                return
            retry_after = max(wait, 1.0)
        raise self.refusal(f"{self.service.capitalize()} circuit breaker is {self.state.value} (last error: {self.last_error})",
                           retry_after=retry_after)

    def record_success(self) -> None:
        with self._lock:
            self.failures = 0
            self._trial_running = False
            if self.state != BreakerState.CLOSED:
                self.opened_at = None
                self._set(BreakerState.CLOSED)

    def record_failure(self, error: BaseException) -> None:
        """Count a failure if it is a sign of a sick Plex; anything else ends a trial as a success."""
        with self._lock:
            if not counts_for_breaker(error):
                if self._trial_running:  # Plex answered the trial (with a 404, say): it is up
                    self._trial_running = False
                    self.failures = 0
                    self.opened_at = None
                    self._set(BreakerState.CLOSED)
                return
            self._trial_running = False
            self.failures += 1
            self.last_error = f"{type(error).__name__}: {error}"
            if self.state == BreakerState.HALF_OPEN or self.failures >= self.failure_threshold:
                self.opened_at = self._clock()
                if self.state != BreakerState.OPEN:
                    self.opened_count += 1
                self._set(BreakerState.OPEN)

    def seconds_until_trial(self) -> float:
        if self.state != BreakerState.OPEN or self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.reset_seconds - self._clock())

    def _set(self, state: BreakerState) -> None:
        changed = state != self.state
        self.state = state
        if changed and self.on_change is not None:
            self.on_change(self)
