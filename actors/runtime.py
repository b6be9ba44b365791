"""Per-process singletons of a worker: settings (read once at import), the sync engine and the DLQ
(made lazily, after dramatiq forked the worker process, so no connection crosses a fork)."""

from __future__ import annotations

import os
import threading
from functools import lru_cache

from pipeline.config import Settings
from pipeline.errors import register_secrets
from pipeline.stash import load_settings_with_stash
from pipeline.sync import SyncEngine

_lock = threading.Lock()
_engine: tuple[int, SyncEngine] | None = None
_dlq: tuple[int, object] | None = None


@lru_cache(maxsize=1)
def settings() -> Settings:
    loaded = load_settings_with_stash()
    register_secrets(loaded.secrets())
    return loaded


def engine() -> SyncEngine:
    global _engine
    with _lock:
        if _engine is None or _engine[0] != os.getpid():
            from actors import metrics

            built = SyncEngine.from_settings(settings(), on_request=metrics.on_plex_request,
                                             on_breaker_change=_breaker_listener)
            _engine = (os.getpid(), built)
        return _engine[1]


def _breaker_listener(breaker) -> None:  # type: ignore[no-untyped-def]
    from actors import metrics
    from pipeline.logs import log_event
    import logging

    metrics.on_breaker_change(breaker)
    log_event(logging.getLogger("stash2plex.breaker"), f"breaker_{breaker.state.value}", level=logging.WARNING,
              stage="plex", last_error=breaker.last_error, failures=breaker.failures)
    if _engine is not None:
        _engine[1].store.save_breaker(f"{os.uname().nodename}:{os.getpid()}", breaker.state.value, breaker.failures,
                                      breaker.opened_at, breaker.last_error)


def dlq():  # type: ignore[no-untyped-def]
    global _dlq
    from actors.dlq import make_dlq

    with _lock:
        if _dlq is None or _dlq[0] != os.getpid():
            _dlq = (os.getpid(), make_dlq(settings()))
        return _dlq[1]
