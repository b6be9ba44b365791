"""`stash2plex demo`: the whole chain against the bundled Plex and Stash emulators, in about two seconds.

Starts the emulators (`tests/emulators`, imported from the source checkout) with a sample library,
points the settings at them through `STASH2PLEX_*` variables (a temporary data_dir, a queue prefix
`demo-<hex>` of its own), and runs the four actors in this process: on RabbitMQ when it answers,
else on dramatiq's in-process broker. Every scene goes through fetch_scene; the demo waits until
all reached Plex, shows a few items before and after, then deletes its queues and temporary files.
Nothing outside the demo is touched: other `STASH2PLEX_*` variables are ignored while it runs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.broker import bind_actors, check_broker, delete_queues
from ops.common import CliError, reapply_logging
from ops.sync import WaitResult, enqueue, wait_for_outcomes
from pipeline.config import (
    CONFIG_FILE_ENV,
    ENV_PREFIX,
    Settings,
    load_settings,
    redact_url,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
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
    if url.startswith("stub://"):
        return "stub://", "in-process broker"
    try:
        with demo_environment({f"{ENV_PREFIX}BROKER_URL": url}):
            probe = load_settings()
        check_broker(probe)
    except Exception as exc:  # noqa: BLE001 - any failure means: fall back to the in-process broker
        reason = "bad broker_url" if isinstance(exc, ValueError) else "no answer"
        note(f"RabbitMQ at {redact_url(url)}: {reason}; using dramatiq's in-process broker")
        return "stub://", "in-process broker"
    return url, "RabbitMQ"


@contextmanager
def demo_environment(values: dict[str, str]) -> Iterator[None]:
    """Only the demo's `STASH2PLEX_*` variables while it runs; the previous ones come back afterwards."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX) or k == CONFIG_FILE_ENV}
    for key in saved:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            del os.environ[key]
        os.environ.update(saved)


def snapshot(plex: Any, dataset: Any, scene_ids: list[str]) -> Snapshot:
    """Title, studio and genres of the Plex items holding these scenes' files."""
    by_id = {s["id"]: s for s in dataset.scenes}
    shown: Snapshot = {}
    for scene_id in scene_ids:
        item = plex.item(plex.rating_key_for_file(by_id[scene_id]["files"][0]["path"]))
        genres = [g if isinstance(g, str) else g.get("tag", "") for g in item.get("genres", [])]
        shown[scene_id] = {"title": item.get("title") or "", "studio": item.get("studio") or "", "genres": genres}
    return shown


def _start_worker(actors: Any, via: str) -> Any:
    import dramatiq

    if via == "RabbitMQ":
        actors.broker.emit_after("process_boot")  # what `dramatiq` does at boot; the Prometheus middleware needs it
    worker = dramatiq.Worker(actors.broker, worker_threads=4, worker_timeout=100)
    worker.start()
    return worker


def run_demo(*, scenes: int = 25, broker_url: str | None = None, timeout: float = 60.0,
             note: Note = lambda _text: None, on_progress: Callable[[int, int], None] | None = None) -> DemoResult:
    """Run the demo end to end and return what happened; cleans up even when it fails."""
    if "actors" in sys.modules:
        raise CliError("the demo must run in a fresh process (the actors are already bound here)")
    plex_cls, stash_cls, make_dataset = _load_emulators()
    url, via = choose_broker(broker_url, note)
    dataset = make_dataset(scenes)
    token, api_key = secrets.token_hex(16), secrets.token_hex(12)
    plex = plex_cls(items=dataset.plex_items, token=token).start()
    stash = stash_cls(scenes=dataset.scenes, api_key=api_key).start()
    data_dir = Path(tempfile.mkdtemp(prefix="stash2plex-demo-"))
    prefix = f"demo-{uuid.uuid4().hex[:8]}"
    values = {
        f"{ENV_PREFIX}PLEX_URL": plex.url, f"{ENV_PREFIX}PLEX_TOKEN": token,
        f"{ENV_PREFIX}STASH_URL": stash.url, f"{ENV_PREFIX}STASH_API_KEY": api_key,
        f"{ENV_PREFIX}DATA_DIR": str(data_dir), f"{ENV_PREFIX}QUEUE_PREFIX": prefix,
        f"{ENV_PREFIX}BROKER_URL": url, f"{ENV_PREFIX}LOG_LEVEL": "WARNING",
    }
    ids = [s["id"] for s in dataset.scenes]
    shown = ids[:SHOWN_SCENES]
    settings: Settings | None = None
    worker = None
    actors = None
    try:
        with demo_environment(values):
            settings = load_settings()
            result = DemoResult(scenes=len(ids), via=via, broker_url=redact_url(url), queue_prefix=prefix,
                                wait=WaitResult(), titles={i: next(s["title"] for s in dataset.scenes if s["id"] == i) for i in shown})
            result.before = snapshot(plex, dataset, shown)
            actors = bind_actors(settings)
            worker = _start_worker(actors, via)
            started = time.time()
            enqueue(settings, ids, event="demo")
            result.wait = wait_for_outcomes(settings, ids, started - 1, timeout=timeout, interval=0.05,
                                            on_progress=on_progress)
            result.seconds = time.time() - started
            result.after = snapshot(plex, dataset, shown)
            return result
    finally:
        _clean_up(worker, actors, settings, via, plex, stash, data_dir)


def _clean_up(worker: Any, actors: Any, settings: Settings | None, via: str, plex: Any, stash: Any, data_dir: Path) -> None:
    """Stop the worker, delete the demo's queues, stop the emulators, remove the temporary data_dir."""
    if worker is not None:
        worker.stop(timeout=5000)
    if actors is not None:
        with suppress(Exception):  # closing a broker whose connection already went away
            actors.broker.close()
    if settings is not None and via == "RabbitMQ":
        with suppress(CliError):  # RabbitMQ went away meanwhile: nothing left to delete
            delete_queues(settings)
    plex.stop()
    stash.stop()
    shutil.rmtree(data_dir, ignore_errors=True)
    reapply_logging()
