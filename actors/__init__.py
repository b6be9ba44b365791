"""dramatiq workers for stash2plex: `dramatiq actors` (or `dramatiq actors -p 2 -t 4`) starts them.

Importing this package reads the settings, builds the broker and declares the four actors on it,
in that order (an actor binds to whatever broker exists when it is declared).
"""

import logging

from actors.broker import prepare_prometheus_env, setup_broker

prepare_prometheus_env()

from actors import runtime  # noqa: E402
from pipeline.logs import setup_logging  # noqa: E402

_settings = runtime.settings()
if not logging.getLogger("stash2plex").handlers:  # a CLI or plugin task that set up logging keeps its own
    setup_logging("DEBUG" if _settings.debug_logging else _settings.log_level, obfuscate_paths=_settings.obfuscate_paths)
broker = setup_broker(_settings)

from actors.stages import fetch_scene, match_plex, push_metadata, sync_performers  # noqa: E402
from actors.schedules import flush_hook_spool, rebuild_path_index, reconcile_library  # noqa: E402

__all__ = ["broker", "fetch_scene", "match_plex", "push_metadata", "sync_performers",
           "rebuild_path_index", "reconcile_library", "flush_hook_spool"]
