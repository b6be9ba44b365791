"""The workers' entry point: `dramatiq actors` (or `dramatiq actors -p 2 -t 4`, and `periodiq actors`).

This is the ONE place that builds a runtime from the environment: `STASH2PLEX_*` variables and the
TOML file named by `STASH2PLEX_CONFIG`, read without any network call. The settings saved in Stash
are layered in when dramatiq boots each worker process (actors/boot.py). Everything else (the CLI,
the Stash plugin tasks, the demo, benchmarks, tests) calls `actors.runtime.build_runtime(settings)`
with the settings it resolved itself; importing this package only makes an unconnected broker.
"""

import dramatiq

from actors.boot import WorkerBoot
from actors.runtime import Runtime, build_runtime
from pipeline.config import load_settings

runtime: Runtime = build_runtime(load_settings())
runtime.broker.add_middleware(WorkerBoot(runtime))
broker = runtime.broker
dramatiq.set_broker(broker)

fetch_scene = runtime.stage_actors["fetch"]
match_plex = runtime.stage_actors["match"]
push_metadata = runtime.stage_actors["push"]
sync_performers = runtime.stage_actors["performers"]
rebuild_path_index = runtime.maintenance_actors["rebuild_path_index"]
reconcile_library = runtime.maintenance_actors["reconcile_library"]
flush_hook_spool = runtime.maintenance_actors["flush_hook_spool"]

__all__ = ["broker", "runtime", "fetch_scene", "match_plex", "push_metadata", "sync_performers",
           "rebuild_path_index", "reconcile_library", "flush_hook_spool"]
