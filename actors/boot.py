"""`WorkerBoot`: what a `dramatiq actors` worker process does once, after it imported the actors.

The worker runtime is built at import from the environment alone (actors/__init__.py), so importing
the package never waits on Stash. When dramatiq boots a worker process, this middleware:

1. layers in the plugin settings saved on Stash's settings page (env > TOML > Stash > defaults);
   the keys that shape queues and schedules (`TOPOLOGY_KEYS`) keep their import-time values, with a
   warning when Stash holds another value (set those in the environment or the TOML file);
2. makes writes to dramatiq's log pipe one at a time (`serialize_log_pipe`), registers the secrets
   with the log scrubber and routes the `stash2plex` loggers to stderr;
3. forgets the breaker rows (state.db, shown by `stash2plex status`) of this host's worker processes
   that are gone, e.g. SIGKILLed with their breaker open, so `status` shows the running ones only.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import Middleware

from pipeline.errors import register_secrets
from pipeline.logs import log_event, setup_logging
from pipeline.state import StateStore
from pipeline.stash import load_settings_with_stash

if TYPE_CHECKING:
    from actors.runtime import Runtime

logger = logging.getLogger("stash2plex.boot")
TOPOLOGY_KEYS = ("broker_url", "queue_prefix", "reconcile_interval", "metrics_port", "metrics_host")


class WorkerBoot(Middleware):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        booted = self.runtime.settings
        layered = load_settings_with_stash()
        ignored = [key for key in TOPOLOGY_KEYS if getattr(layered, key) != getattr(booted, key)]
        settings = layered.model_copy(update={key: getattr(booted, key) for key in TOPOLOGY_KEYS})
        self.runtime.settings = settings
        serialize_log_pipe()
        register_secrets(settings.secrets())
        setup_logging("DEBUG" if settings.debug_logging else settings.log_level, obfuscate_paths=settings.obfuscate_paths)
        if ignored:
            log_event(logger, "stash_setting_ignored", level=logging.WARNING, keys=ignored,
                      fix="the workers read these before asking Stash: set them as STASH2PLEX_* variables or in the TOML file")
        forgotten = forget_dead_breakers(StateStore(settings.data_dir), os.uname().nodename)
        if forgotten:
            log_event(logger, "stale_breakers_forgotten", owners=forgotten)


class SerializedStream:
    """A text stream whose writes go through one lock.

    In a `dramatiq actors` worker process, stderr and stdout are dramatiq's `StreamablePipe`, a
    multiprocessing connection to the main process, which frames every write as a length and bytes.
    dramatiq's handler and ours (`pipeline.logs`) each lock only themselves, so two threads logging at
    once (a deferral storm logs several-KB records) interleave their bytes; the main process then waits
    forever for a frame that never ends, stops reading, and every worker thread blocks on its next log
    line (found by the soak, ops/bench/soak.py: one worker process hung with 8 messages per queue).
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, text: str) -> Any:
        with self._lock:
            return self.stream.write(text)

    def flush(self) -> None:
        with self._lock:
            self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def serialize_log_pipe() -> SerializedStream | None:
    """Route every writer of dramatiq's log pipe (stderr, stdout, the handlers on it) through one `SerializedStream`."""
    pipe = sys.stderr
    if isinstance(pipe, SerializedStream) or not hasattr(pipe, "pipe"):  # not a dramatiq worker process
        return None
    shared = SerializedStream(pipe)
    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger))]
    for handler in (h for each in loggers for h in each.handlers):
        if isinstance(handler, logging.StreamHandler) and handler.stream is pipe:
            handler.setStream(shared)  # type: ignore[arg-type]
    if sys.stdout is pipe:
        sys.stdout = shared  # type: ignore[assignment]
    sys.stderr = shared  # type: ignore[assignment]
    return shared


def forget_dead_breakers(store: StateStore, node: str) -> list[str]:
    """Drop the breaker rows of `node`'s worker processes that no longer run; returns their owners."""
    from actors.exporter import pid_alive

    dead = []
    for owner in dict.fromkeys(str(row["owner"]) for row in store.breakers()):
        owner_node, _, pid = owner.rpartition(":")
        if owner_node == node and pid.isdigit() and not pid_alive(int(pid)):
            dead.append(owner)
    store.forget_breakers(dead)
    return dead
