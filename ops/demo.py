"""`stash2plex demo`: the whole chain against the bundled Plex and Stash emulators, in about two seconds.

Starts the emulators (`tests/emulators`, imported from the source checkout) with a sample library,
builds settings pointing at them (`explicit_settings`: a temporary data_dir, a queue prefix
`demo-<hex>` of its own; `STASH2PLEX_*` variables are not read, except the broker URL to try), builds
a runtime from them and runs its four actors in this process: on RabbitMQ when it answers, else on
dramatiq's in-process broker. Every scene goes through fetch_scene; the demo waits until all reached
Plex, shows a few items before and after, then deletes its queues and temporary files.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dramatiq

from ops.broker import check_broker
from ops.common import CliError
from ops.sync import WaitResult, enqueue, wait_for_outcomes
from pipeline import rabbit
from pipeline.broker_address import DEFAULT_BROKER_URL, is_stub, redact_url
from pipeline.config import ENV_PREFIX, ConfigError, Settings, explicit_settings
from pipeline.errors import BrokerUnreachable

if TYPE_CHECKING:
    from actors.runtime import Runtime

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHOWN_SCENES = 3
CHAIN = "fetch_scene -> match_plex -> push_metadata -> sync_performers"

Snapshot = dict[str, dict[str, Any]]  # scene id -> {"title", "studio", "genres"}
Note = Callable[[str], None]


@dataclass
class DemoResult:
    """What the demo did: scenes, outcomes, the Plex items before and after, time, and which broker."""

    scenes: int
    via: str
    broker_url: str
    queue_prefix: str
    wait: WaitResult
    before: Snapshot = field(default_factory=dict)
    after: Snapshot = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def synced(self) -> int:
        return sum(1 for outcome, _detail in self.wait.outcomes.values() if outcome == "updated")

    @property
    def ok(self) -> bool:
        return self.synced == self.scenes

    def summary_line(self) -> str:
        return f"{self.synced} scenes synced through {CHAIN} in {self.seconds:.1f} s, via {self.via}"


def _load_emulators() -> tuple[Any, Any, Callable[[int], Any]]:
    """PlexEmulator, StashEmulator and make_dataset from the source checkout's tests/emulators."""
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    try:
        from tests.emulators.plex import PlexEmulator
        from tests.emulators.sample_data import make_dataset
        from tests.emulators.stash import StashEmulator
    except ImportError as exc:
        raise CliError(f"the demo needs the emulators in {PROJECT_ROOT / 'tests' / 'emulators'} ({exc})",
                       fix="run it from a source checkout installed with `pip install -e .`") from None
    return PlexEmulator, StashEmulator, make_dataset


def choose_broker(broker_url: str | None, note: Note) -> tuple[str, str]:
    """(broker URL, label): RabbitMQ when it answers, else dramatiq's in-process broker."""
    url = broker_url or os.environ.get(f"{ENV_PREFIX}BROKER_URL") or DEFAULT_BROKER_URL
    if is_stub(url):
        return "stub://", "in-process broker"
    try:
        check_broker(explicit_settings(broker_url=url))
    except (ConfigError, CliError) as exc:
        reason = "bad broker_url" if isinstance(exc, ConfigError) else "no answer"
        note(f"RabbitMQ at {redact_url(url)}: {reason}; using dramatiq's in-process broker")
        return "stub://", "in-process broker"
    return url, "RabbitMQ"


def snapshot(plex: Any, dataset: Any, scene_ids: list[str]) -> Snapshot:
    """Title, studio and genres of the Plex items holding these scenes' files."""
    by_id = {s["id"]: s for s in dataset.scenes}
    shown: Snapshot = {}
    for scene_id in scene_ids:
        item = plex.item(plex.rating_key_for_file(by_id[scene_id]["files"][0]["path"]))
        genres = [g if isinstance(g, str) else g.get("tag", "") for g in item.get("genres", [])]
        shown[scene_id] = {"title": item.get("title") or "", "studio": item.get("studio") or "", "genres": genres}
    return shown


def _start_worker(runtime: Runtime, via: str) -> dramatiq.Worker:
    if via == "RabbitMQ":
        runtime.broker.emit_after("process_boot")  # what `dramatiq` does at boot; the Prometheus middleware needs it
    worker = dramatiq.Worker(runtime.broker, worker_threads=4, worker_timeout=100)
    worker.start()
    return worker


def run_demo(*, scenes: int = 25, broker_url: str | None = None, timeout: float = 60.0,
             note: Note = lambda _text: None, on_progress: Callable[[int, int], None] | None = None) -> DemoResult:
    """Run the demo end to end and return what happened; cleans up even when it fails."""
    from actors.runtime import build_runtime

    plex_cls, stash_cls, make_dataset = _load_emulators()
    url, via = choose_broker(broker_url, note)
    dataset = make_dataset(scenes)
    token, api_key = secrets.token_hex(16), secrets.token_hex(12)
    plex = plex_cls(items=dataset.plex_items, token=token).start()
    stash = stash_cls(scenes=dataset.scenes, api_key=api_key).start()
    data_dir = Path(tempfile.mkdtemp(prefix="stash2plex-demo-"))
    prefix = f"demo-{uuid.uuid4().hex[:8]}"
    ids = [s["id"] for s in dataset.scenes]
    shown = ids[:SHOWN_SCENES]
    settings: Settings | None = None
    runtime: Runtime | None = None
    worker = None
    try:
        settings = explicit_settings(plex_url=plex.url, plex_token=token, stash_url=stash.url, stash_api_key=api_key,
                                     data_dir=data_dir, queue_prefix=prefix, broker_url=url, log_level="WARNING")
        result = DemoResult(scenes=len(ids), via=via, broker_url=redact_url(url), queue_prefix=prefix,
                            wait=WaitResult(), titles={i: next(s["title"] for s in dataset.scenes if s["id"] == i) for i in shown})
        result.before = snapshot(plex, dataset, shown)
        runtime = build_runtime(settings)
        worker = _start_worker(runtime, via)
        started = time.time()
        enqueue(settings, ids, event="demo", runtime=runtime)
        result.wait = wait_for_outcomes(settings, ids, started - 1, timeout=timeout, interval=0.05,
                                        on_progress=on_progress)
        result.seconds = time.time() - started
        result.after = snapshot(plex, dataset, shown)
        return result
    finally:
        _clean_up(worker, runtime, settings, via, plex, stash, data_dir)


def _clean_up(worker: dramatiq.Worker | None, runtime: Runtime | None, settings: Settings | None, via: str,
              plex: Any, stash: Any, data_dir: Path) -> None:
    """Stop the worker, delete the demo's queues, stop the emulators, remove the temporary data_dir."""
    if worker is not None:
        worker.stop(timeout=5000)
    if runtime is not None:
        runtime.close()
    if settings is not None and via == "RabbitMQ":
        try:
            rabbit.delete_queues(settings)
        except BrokerUnreachable as error:  # RabbitMQ went away meanwhile: say what is left behind
            logging.getLogger("stash2plex.demo").warning("demo queues %s.* not deleted: %s", settings.queue_prefix, error)
    plex.stop()
    stash.stop()
    shutil.rmtree(data_dir, ignore_errors=True)
