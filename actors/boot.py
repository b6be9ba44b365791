"""`WorkerBoot`: what a `dramatiq actors` worker process does once, after it imported the actors.

The worker runtime is built at import from the environment alone (actors/__init__.py), so importing
the package never waits on Stash. When dramatiq boots a worker process, this middleware:

1. layers in the plugin settings saved on Stash's settings page (env > TOML > Stash > defaults);
   the keys that shape queues and schedules (`TOPOLOGY_KEYS`) keep their import-time values, with a
   warning when Stash holds another value (set those in the environment or the TOML file);
2. registers the secrets with the log scrubber and routes the `stash2plex` loggers to stderr, every
   writer of dramatiq's log pipe behind one lock (`pipeline.logs.SerializedStream`);
3. forgets the breaker rows (state.db, shown by `stash2plex status`) of this host's worker processes
   that are gone, e.g. SIGKILLed with their breaker open, so `status` shows the running ones only.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

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
        register_secrets(settings.secrets())
        setup_logging("DEBUG" if settings.debug_logging else settings.log_level, obfuscate_paths=settings.obfuscate_paths)
        if ignored:
            log_event(logger, "stash_setting_ignored", level=logging.WARNING, keys=ignored,
                      fix="the workers read these before asking Stash: set them as STASH2PLEX_* variables or in the TOML file")
        forgotten = forget_dead_breakers(StateStore(settings.data_dir), os.uname().nodename)
        if forgotten:
            log_event(logger, "stale_breakers_forgotten", owners=forgotten)


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
