"""The composition root: `build_runtime(settings)` makes broker, middleware, actors, DLQ and engine.

    runtime = build_runtime(settings)           # nothing connects yet
    runtime.send("fetch", [Job(scene_id="12")])  # the CLI, the plugin tasks, the demo
    dramatiq.Worker(runtime.broker).start()      # the demo; `dramatiq actors` uses actors/__init__.py

Everything is built from the `Settings` given, never from the environment: `actors/__init__.py`
(what `dramatiq actors` imports) is the one caller that reads the environment. The engine and the
DLQ connection are made lazily, once per process (after dramatiq forked its workers, so no
connection crosses a fork).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import dramatiq

from actors.broker import build_broker
from actors.retry import RetryPolicy
from pipeline.breaker import BreakerState, CircuitBreaker
from pipeline.config import Settings
from pipeline.dlq import DeadLetterQueue, make_dlq
from pipeline.errors import BrokerUnreachable, register_secrets
from pipeline.logs import log_event
from pipeline.models import Job, Outcome
from pipeline.sync import SyncEngine

logger = logging.getLogger("stash2plex.runtime")
Actor = dramatiq.Actor[..., None]
TIDY_DEBOUNCE_SECONDS = 15.0
TIDY_DELAY_SECONDS = 2.0
CLEARS_DEAD_LETTER = (Outcome.UPDATED, Outcome.UNCHANGED, Outcome.SKIPPED)


class PerProcess:
    """A value made on first use in each process (a forked worker makes its own)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._made: tuple[int, Any] | None = None

    def get(self) -> Any:
        with self._lock:
            if self._made is None or self._made[0] != os.getpid():
                self._made = (os.getpid(), self._make())
            return self._made[1]

    def peek(self) -> Any | None:
        """The value of this process, if it was made."""
        made = self._made
        return made[1] if made is not None and made[0] == os.getpid() else None


class Runtime:
    """Settings, broker and actors of one process, with the engine and DLQ they share."""

    def __init__(self, settings: Settings, broker: dramatiq.Broker) -> None:
        self.settings = settings
        self.broker = broker
        self.stage_actors: dict[str, Actor] = {}
        self.maintenance_actors: dict[str, Actor] = {}
        self._engine = PerProcess(self._make_engine)
        self._dlq = PerProcess(lambda: make_dlq(self.settings))
        self._next_tidy_at = float("-inf")  # monotonic time the last tidy this process asked for runs
        self._tidy_lock = threading.Lock()

    # --- shared per process -------------------------------------------------------------------
    def engine(self) -> SyncEngine:
        engine: SyncEngine = self._engine.get()
        return engine

    def dlq(self) -> DeadLetterQueue:
        dlq: DeadLetterQueue = self._dlq.get()
        return dlq

    def _make_engine(self) -> SyncEngine:
        from actors import metrics

        return SyncEngine.from_settings(self.settings, on_request=metrics.on_plex_request,
                                        on_breaker_change=self._on_breaker_change)

    def _on_breaker_change(self, breaker: CircuitBreaker) -> None:
        """Export, log and persist (for `stash2plex status`) every change of this process's Plex or Stash breaker."""
        from actors import metrics

        metrics.on_breaker_change(breaker)
        log_event(logger, f"breaker_{breaker.state.value}", level=logging.WARNING, stage=breaker.service,
                  service=breaker.service, last_error=breaker.last_error, failures=breaker.failures)
        engine = self._engine.peek()
        if engine is not None:
            opened_at = time.time() if breaker.state == BreakerState.OPEN else None  # wall clock, for people
            engine.store.save_breaker(f"{os.uname().nodename}:{os.getpid()}", breaker.state.value, breaker.failures,
                                      opened_at, breaker.last_error, service=breaker.service)

    # --- sending and recording ----------------------------------------------------------------
    def send(self, stage: str, jobs: list[Job], delay_seconds: float = 0.0) -> None:
        """One message with these jobs to the actor of `stage` (after `delay_seconds`)."""
        payload = [job.model_dump(mode="json", exclude_defaults=True) for job in jobs]
        delay = int(delay_seconds * 1000) if delay_seconds > 0 else None
        self.stage_actors[stage].send_with_options(kwargs={"jobs": payload}, delay=delay)

    def request_reconcile(self, scope: str, missing_only: bool) -> str:
        """Ask the workers to reconcile (the `reconcile_library` actor); returns its queue."""
        actor = self.maintenance_actors["reconcile_library"]
        actor.send(scope, missing_only)
        return actor.queue_name

    def request_tidy(self) -> None:
        """Make sure a DLQ tidy (`tidy_dlq`) runs after now: within TIDY_DELAY_SECONDS, or, when this process
        asked for one less than TIDY_DEBOUNCE_SECONDS ago, that long after the previous one."""
        now = time.monotonic()
        with self._tidy_lock:
            if self._next_tidy_at > now:
                return  # a tidy of ours is still to come, and it will see this change too
            self._next_tidy_at = max(now + TIDY_DELAY_SECONDS, self._next_tidy_at + TIDY_DEBOUNCE_SECONDS)
            delay = self._next_tidy_at - now
        self.maintenance_actors["tidy_dlq"].send_with_options(delay=int(delay * 1000))

    def record_outcomes(self, outcomes: list[tuple[Job, Outcome, str]]) -> None:
        """Final outcomes: into the state file (for `status` and `sync --wait`) and the metrics; scenes that
        synced (or are skipped on purpose) are noted for the DLQ tidy, which removes their entries."""
        from actors import metrics

        self.engine().record(outcomes)
        self._note_synced([job.scene_id for job, outcome, _ in outcomes if outcome in CLEARS_DEAD_LETTER])
        for job, outcome, _detail in outcomes:
            metrics.SCENES.labels(outcome.value).inc()
            if outcome == Outcome.SKIPPED and job.skip_reason:
                metrics.SKIPPED.labels(job.skip_reason).inc()
            if outcome == Outcome.UPDATED:
                metrics.SYNC_LATENCY.observe(max(0.0, time.time() - job.origin_ts))

    def _note_synced(self, scene_ids: list[str]) -> None:
        import pika.exceptions

        if not scene_ids:
            return
        try:
            self.dlq().note_synced(scene_ids, time.time())
            self.request_tidy()
        except (BrokerUnreachable, OSError, pika.exceptions.AMQPError) as exc:
            # The scenes synced; only old DLQ entries of theirs (if any) stay until their next success.
            log_event(logger, "dlq_sync_note_failed", level=logging.WARNING, scenes=len(scene_ids),
                      error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Close the broker's and the DLQ's connections of this process."""
        dlq = self._dlq.peek()
        if dlq is not None:
            dlq.close()
        self.broker.close()


def build_runtime(settings: Settings) -> Runtime:
    """Broker, middleware, the four stage actors and the schedules, bound to `settings`."""
    from actors.schedules import declare_schedules
    from actors.stages import declare_stage_actors

    register_secrets(settings.secrets())
    runtime = Runtime(settings, build_broker(settings))
    runtime.broker.add_middleware(RetryPolicy(runtime))
    from periodiq import PeriodiqMiddleware

    runtime.broker.add_middleware(PeriodiqMiddleware(skip_delay=60))
    runtime.stage_actors = declare_stage_actors(runtime)
    runtime.maintenance_actors = declare_schedules(runtime)
    return runtime
