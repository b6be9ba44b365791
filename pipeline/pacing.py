"""Request pacing towards Plex: a token bucket shared by the threads of a process, and 429 pauses."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """At most `rate` acquisitions per second (bursts up to `burst`); `rate <= 0` means no limit.

    `pause(seconds)` makes every thread wait (used when Plex answers 429 with Retry-After).
    """

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def acquire(self) -> float:
        """Block until a request may go; return the seconds waited.

        Each caller reserves its slot under the lock (the bucket may go negative), then sleeps
        outside it, so threads queue fairly and nobody spins.
        """
        with self._lock:
            now = self._clock()
            wait = max(0.0, self._paused_until - now)
            if self.rate > 0:
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                self._tokens -= 1
                if self._tokens < 0:
                    wait = max(wait, -self._tokens / self.rate)
        if wait > 0:
            self._sleep(wait)
        return wait
