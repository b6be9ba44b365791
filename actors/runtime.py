"""Per-process singletons of a worker: settings (read once at import), the sync engine and the DLQ
(made lazily, after dramatiq forked the worker process, so no connection crosses a fork)."""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import lru_cache

from actors.dlq import DeadLetterQueue, make_dlq
from pipeline.breaker import BreakerState, CircuitBreaker
from pipeline.config import Settings
from pipeline.errors import register_secrets
from pipeline.logs import log_event
from pipeline.stash import load_settings_with_stash
from pipeline.sync import SyncEngine

logger = logging.getLogger("stash2plex.breaker")
_lock = threading.Lock()
_engine: tuple[int, SyncEngine] | None = None
_dlq: tuple[int, DeadLetterQueue] | None = None


@lru_cache(maxsize=1)
def settings() -> Settings:
    loaded = load_settings_with_stash()
    register_secrets(loaded.secrets())
    return loaded


def engine() -> SyncEngine:
    global _engine
    with _lock:
        if _engine is None or _engine[0] != os.getpid():
            from actors import metrics  # after prepare_prometheus_env(), see actors/__init__.py

            built = SyncEngine.from_settings(settings(), on_request=metrics.on_plex_request,
                                             on_breaker_change=_on_breaker_change)
            _engine = (os.getpid(), built)
        return _engine[1]


def _on_breaker_change(breaker: CircuitBreaker) -> None:
    """Export, log and persist (for `stash2plex status`) every breaker state change of this process."""
    from actors import metrics

    metrics.on_breaker_change(breaker)
    log_event(logger, f"breaker_{breaker.state.value}", level=logging.WARNING, stage="plex",
              last_error=breaker.last_error, failures=breaker.failures)
    if _engine is not None:
        opened_at = time.time() if breaker.state == BreakerState.OPEN else None  # wall clock, for people
        _engine[1].store.save_breaker(f"{os.uname().nodename}:{os.getpid()}", breaker.state.value, breaker.failures,
                                      opened_at, breaker.last_error)


def dlq() -> DeadLetterQueue:
    global _dlq
    with _lock:
        if _dlq is None or _dlq[0] != os.getpid():
            _dlq = (os.getpid(), make_dlq(settings()))
        return _dlq[1]
