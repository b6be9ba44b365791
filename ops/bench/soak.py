"""A compressed month of unattended running, with the invariants checked at the end of every day.

    python -m ops.bench.soak [--days 30] [--day-seconds 20] [--scenes 500] [--processes 2 --threads 4]
                             [--edits 30] [--fault KIND=DAYS ...] [--json FILE] [--keep]

What runs: the Plex and Stash emulators in their own processes (N scenes whose files Plex holds, plus
three that truly cannot sync: one whose file name two Plex items hold (ambiguous under strict matching,
a DLQ entry), one whose file Plex never has (not_in_plex: a DLQ entry after its retries) and one with
no file (a `skipped` outcome, never a DLQ entry)); plain `dramatiq actors -p P -t T` on a per-run
queue prefix, restarted by this harness whenever it exits (a supervisor loop, as compose `restart:`).

A compressed day (`--day-seconds`) is a script of timed events:

    0.00  `sync --all` (every id, in `fetch_scene` batches of batch_size, through the CLI's own sender)
    0.02-0.50  `--edits` scene edits in Stash (GraphQL `sceneUpdate`), each published by the hook's own
          `deliver()` (spooled to disk when RabbitMQ is down)
    every second  `flush_hook_spool` and `tidy_dlq`;  0.45 `reconcile_library` (scope all);  0.95 `rebuild_path_index`
    fault days (`--fault`, defaults below): 0.04 SIGKILL of one worker process (`kill`); 0.08-0.33 Plex
          down (`plex`, longer than breaker_reset_seconds); 0.55 a second `sync --all` and Stash down
          until 0.85 (`stash`); 0.88 RabbitMQ `stop_app`, 3 edits spooled by the hook, `start_app` (`rabbit`)

The schedules are driven by this harness: it sends the maintenance actors' messages itself on the
`<prefix>.maintenance` queue at the compressed times (periodiq is not run). Time-based settings are set
to the compressed scale where they are part of the month (`max_defer_days` and the outcome log's
`outcome_retention_days` are 7 compressed days); retry bases are small (0.25 s) so a compressed day
settles, with a retry budget (3 transient retries, ~2-4 s) shorter than a Stash outage (0.3 day), as in
production (2.5 min of retries against a longer outage).

At the end of every day, once the queues drained (bounded wait), the invariants are checked:
  (a) 0 lost: every syncable scene shows its latest Stash title in Plex (so every edit of the day), or
      has a DLQ entry;
  (b) the DLQ holds exactly one entry for each scene that truly cannot sync (ambiguous, not_in_plex),
      in its listing and as messages in `<prefix>.dlq`, and nothing else; the scene without a file
      ends `skipped` (its last outcome in state.db);
  (c) flat resources: worker RSS (sum over the `dramatiq actors` process tree, /proc) stays within
      `--growth-bound` (10 %) of its day-3 value, state.db (+ -wal) within it of its day-8 value (the
      outcome log holds 7 days and the WAL reaches its checkpoint size by then) on every later day;
  (d) nothing left behind: every `<prefix>.*` queue but the DLQ is empty (ready + unacked, `.DQ`/`.XQ`
      included, management API), the exporter shows no series of a dead pid, and the metrics folder
      holds files of live processes only.
Drained means: nothing ready (AMQP passive declares), nothing running and nothing processed (the
workers' exporter) for QUIET_SECONDS, longer than the management API's 5 s refresh, and then the
management API shows no message either (bounded by DRAIN_TIMEOUT_SECONDS).
Prints a table per day and a summary; exits 1 when an invariant failed. Everything is cleaned up
(queues of the prefix deleted, processes stopped, the temporary folder removed unless `--keep`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from ops.bench.bench_chain import BROKER_URL, dramatiq_workers, stash_update_title, stop
from ops.bench.bench_hook_outage import plex_titles
from ops.bench.common import (
    emulator_env,
    free_port,
    metric_sum,
    print_table,
    rss_mb,
    scrape_metrics,
    start_emulator,
    wait_until,
)
from pipeline.broker_address import dead_queue, delay_queue, parse_broker_url, queue_name
from pipeline.config import Settings, explicit_settings
from pipeline.stages import MAINTENANCE_QUEUE, STAGES
from tests.emulators.sample_data import make_dataset, make_plex_item, make_scene

MANAGEMENT_URL = os.environ.get("STASH2PLEX_BROKER_MANAGEMENT_URL", "http://127.0.0.1:15672")
SECONDS_PER_DAY = 86_400
FAULT_KINDS = ("kill", "plex", "stash", "rabbit")
DEFAULT_FAULT_DAYS = {"plex": [2, 9, 16, 23, 30], "stash": [3, 11, 17, 25], "kill": [10, 24], "rabbit": [15]}
RSS_BASELINE_DAY = 3      # the workers have seen every kind of day (full syncs, a Plex and a Stash outage)
STATE_BASELINE_DAY = 8    # the outcome log holds 7 days, and the WAL reaches its checkpoint size, by then
DRAIN_TIMEOUT_SECONDS = 120.0
QUIET_SECONDS = 5.5  # longer than the management API's refresh of its counts (every 5 s)
RABBIT_DOWN_SECONDS = 3.0
PID_LABEL = re.compile(r'pid="(\d+)"')
PID_IN_FILE = re.compile(r"_(\d+)\.db$")


# --- the library ------------------------------------------------------------------------------------
@dataclass
class Library:
    """The scenes of the run: which can sync (with their Plex ratingKey) and which truly cannot."""

    titles: dict[str, str]          # syncable scene id -> the title Stash has now
    rating_keys: dict[str, int]     # syncable scene id -> its Plex item
    ambiguous: str
    not_in_plex: str
    no_file: str

    @property
    def syncable(self) -> list[str]:
        return list(self.titles)

    @property
    def all_ids(self) -> list[str]:
        return [*self.titles, self.ambiguous, self.not_in_plex, self.no_file]

    @property
    def expected_dlq(self) -> Counter[str]:
        return Counter({self.ambiguous: 1, self.not_in_plex: 1})


def write_fixtures(scenes: int, workdir: Path) -> tuple[Library, Path, Path]:
    """Stash and Plex fixture files: `scenes` syncable scenes plus the three that cannot sync."""
    data = make_dataset(scenes)
    rng = random.Random(11)
    ambiguous, missing, no_file = (make_scene(scenes + n, rng) for n in (1, 2, 3))
    ambiguous["files"] = [{"path": "/stash/elsewhere/dup_scene.mp4", "basename": "dup_scene.mp4"}]
    missing["files"] = [{"path": "/data/videos/never_scanned.mp4", "basename": "never_scanned.mp4"}]
    no_file["files"] = []
    plex_items = data.plex_items + [
        make_plex_item(scenes + 1, 1000 + scenes + 1, "/data/videos/a/dup_scene.mp4"),
        make_plex_item(scenes + 2, 1000 + scenes + 2, "/data/videos/b/dup_scene.mp4"),
    ]
    stash_file, plex_file = workdir / "stash.json", workdir / "plex.json"
    stash_file.write_text(json.dumps({"scenes": data.scenes + [ambiguous, missing, no_file]}))
    plex_file.write_text(json.dumps({"items": plex_items}))
    library = Library(titles={s["id"]: s["title"] for s in data.scenes},
                      rating_keys={s["id"]: 1000 + int(s["id"]) for s in data.scenes},  # make_dataset's numbering
                      ambiguous=ambiguous["id"], not_in_plex=missing["id"], no_file=no_file["id"])
    return library, stash_file, plex_file


# --- processes --------------------------------------------------------------------------------------
def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields and fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree += children
        frontier = children
    return [pid for pid in tree if pid in parents]


def pid_alive(pid: int) -> bool:
    from actors.exporter import pid_alive as alive

    return alive(pid)


class SupervisedWorkers:
    """`dramatiq actors -p P -t T`, started again whenever it exits (as compose `restart:` does)."""

    def __init__(self, env: dict[str, str], processes: int, threads: int, log: Path, prom_dir: Path) -> None:
        self.env, self.processes, self.threads, self.log, self.prom_dir = env, processes, threads, log, prom_dir
        self.restarts = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.proc = self._start()
        self._thread = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self._thread.start()

    def _start(self) -> subprocess.Popen:
        return dramatiq_workers("actors", self.env, self.processes, self.threads, self.log)

    def _supervise(self) -> None:
        while not self._stopping.wait(0.2):
            with self._lock:
                if self.proc.poll() is not None and not self._stopping.is_set():
                    self.restarts += 1
                    self.proc = self._start()

    def worker_pids(self) -> list[int]:
        """The worker processes of the current run (they, and only they, write metric files)."""
        run = self.prom_dir / f"run-{self.proc.pid}"
        pids = {int(m.group(1)) for f in (run.iterdir() if run.is_dir() else []) if (m := PID_IN_FILE.search(f.name))}
        return sorted(pid for pid in pids if pid_alive(pid))

    def kill_one_worker(self) -> int | None:
        """SIGKILL one worker process (the CLI then stops its siblings and exits; the supervisor restarts it)."""
        pids = self.worker_pids()
        if not pids:
            return None
        os.kill(pids[0], signal.SIGKILL)
        return pids[0]

    def rss_mb(self) -> float:
        return sum(rss_mb(pid) for pid in process_tree(self.proc.pid) if Path(f"/proc/{pid}").exists())

    def live_pids(self) -> set[int]:
        return set(process_tree(self.proc.pid))

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        with self._lock:
            stop(self.proc)


class Emulator:
    """An emulator process; SIGUSR1 takes it down or brings it back (its state is kept)."""

    def __init__(self, kind: str, fixture: Path) -> None:
        self.proc, self.url = start_emulator(kind, 0, fixture=fixture)
        self.up = True

    def set_up(self, up: bool) -> None:
        """Toggle, and wait for the emulator's `<kind> emulator down|up` line: it has then happened."""
        if up != self.up:
            os.kill(self.proc.pid, signal.SIGUSR1)
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline().decode().strip()
            if not line.endswith("up" if up else "down"):
                raise RuntimeError(f"emulator did not go {'up' if up else 'down'}: {line!r}")
            self.up = up

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


# --- what the harness reads --------------------------------------------------------------------------
def all_queue_names(prefix: str) -> list[str]:
    """Every queue this run's workers can make: stages and maintenance with `.DQ`/`.XQ`."""
    names = []
    for actor in (*(stage.actor_name for stage in STAGES), MAINTENANCE_QUEUE):
        queue = queue_name(prefix, actor)
        names += [queue, delay_queue(queue), dead_queue(queue)]
    return names


def ready_messages(settings: Settings) -> int:
    """Ready messages over every queue of the prefix but the DLQ (AMQP passive declares: real time)."""
    from pipeline import rabbit

    with rabbit.connection(settings) as opened:
        methods = [rabbit.passive_declare(opened, name) for name in all_queue_names(settings.queue_prefix)]
    return sum(m.message_count for m in methods if m is not None)


def management_queues(prefix: str) -> dict[str, int]:
    """ready + unacked of every `<prefix>.*` queue, from the management API (refreshed every 5 s)."""
    address = parse_broker_url(BROKER_URL)
    response = requests.get(f"{MANAGEMENT_URL}/api/queues/{quote(address.vhost, safe='')}",
                            params={"columns": "name,messages_ready,messages_unacknowledged"},
                            auth=(address.username, address.password), timeout=5)
    response.raise_for_status()
    return {q["name"]: int(q.get("messages_ready") or 0) + int(q.get("messages_unacknowledged") or 0)
            for q in response.json() if q["name"].startswith(prefix + ".")}


def worker_activity(metrics: str) -> tuple[float, float] | None:
    """(messages running now, messages processed so far) from the workers' exporter; None when not scraped.

    dramatiq's `dramatiq_delayed_messages_inprogress` is not used: it stays at 1 in the process that
    held a delayed message when another process runs it, so it never returns to 0.
    """
    if not metrics:
        return None
    return metric_sum(metrics, "dramatiq_messages_inprogress"), metric_sum(metrics, "dramatiq_messages_total")


def dead_series_pids(metrics: str) -> set[int]:
    return {int(pid) for pid in PID_LABEL.findall(metrics) if not pid_alive(int(pid))}


def dead_metric_files(prom_dir: Path) -> list[str]:
    """Metric files (or run folders) in the multiprocess folder that belong to processes that are gone."""
    dead = []
    for path in prom_dir.rglob("*"):
        if path.is_dir() and path.name.startswith("run-") and not pid_alive(int(path.name[4:])):
            dead.append(path.name)
        elif (m := PID_IN_FILE.search(path.name)) and not pid_alive(int(m.group(1))):
            dead.append(f"{path.parent.name}/{path.name}")
    return dead


def dlq_scene_ids(settings: Settings) -> Counter[str]:
    """Scene id -> number of DLQ entries (read without removing anything)."""
    from pipeline.dlq import make_dlq

    dlq = make_dlq(settings)
    try:
        return Counter(entry.scene_id for entry in dlq.entries())
    finally:
        dlq.close()


def dlq_depth(settings: Settings) -> int:
    from pipeline.rabbit import queue_depth

    return queue_depth(settings, settings.dlq_name)


def last_outcome(data_dir: Path, scene_id: str) -> str:
    """The newest outcome state.db recorded for the scene ('' when none)."""
    import sqlite3

    with sqlite3.connect(data_dir / "state.db", timeout=30) as db:
        row = db.execute("SELECT outcome FROM outcomes WHERE scene_id=? ORDER BY ts DESC LIMIT 1", (scene_id,)).fetchone()
    return str(row[0]) if row else ""


def state_db_kb(data_dir: Path) -> float:
    return sum(p.stat().st_size for p in (data_dir / "state.db", data_dir / "state.db-wal") if p.exists()) / 1024


# --- one run ----------------------------------------------------------------------------------------
@dataclass
class DayReport:
    day: int
    faults: list[str]
    edits: int                      # edits published
    edited_scenes: int              # distinct scenes edited
    edits_synced: int               # of those, how many show their latest edit in Plex
    lost: list[str]
    dlq_size: int                   # messages in <prefix>.dlq
    dlq_unexpected: dict[str, int]  # scene -> entries beyond (or, negative, missing from) one per unsyncable scene
    no_file_outcome: str            # the last recorded outcome of the scene without a file
    rss_mb: float
    state_db_kb: float
    drained: bool
    queues_left: dict[str, int]
    dead_series: list[int]
    dead_files: list[str]
    restarts: int
    seconds: float
    flat: bool | None = None
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


class Soak:
    """The emulators, the supervised workers, and the compressed days."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.rng = random.Random(args.seed)
        self.prefix = f"soak{uuid.uuid4().hex[:6]}"
        self.library, stash_fixture, plex_fixture = write_fixtures(args.scenes, workdir)
        self.data_dir = workdir / "data"
        self.prom_dir = workdir / "prom"
        self.prom_dir.mkdir()
        self.metrics_port = free_port()
        self.plex = Emulator("plex", plex_fixture)
        self.stash = Emulator("stash", stash_fixture)
        compressed_days = args.day_seconds / SECONDS_PER_DAY
        self.settings = explicit_settings(broker_url=BROKER_URL, queue_prefix=self.prefix, data_dir=self.data_dir,
                                          plex_url=self.plex.url, stash_url=self.stash.url)
        env = emulator_env(self.plex.url, self.stash.url, self.data_dir, queue_prefix=self.prefix,
                           broker_url=BROKER_URL, breaker_reset_seconds=args.breaker_reset, retry_base_seconds=0.25,
                           max_retries=3, not_found_retries=2, not_found_base_seconds=0.25,
                           max_defer_days=f"{7 * compressed_days:.6f}", outcome_retention_days=f"{7 * compressed_days:.6f}",
                           metrics_port=self.metrics_port, log_level=args.log_level)
        env["dramatiq_prom_db"] = str(self.prom_dir)
        os.environ["dramatiq_prom_db"] = str(self.prom_dir)  # this process writes none, but keep dramatiq's folder here
        self.workers = SupervisedWorkers(env, args.processes, args.threads, workdir / "workers.log", self.prom_dir)
        from actors.runtime import build_runtime

        self.runtime = build_runtime(self.settings)  # sends as the CLI does (`sync --all`, `reconcile`)
        from plugin.hook import HookSettings

        self.hook = HookSettings(broker_url=BROKER_URL, queue_prefix=self.prefix, data_dir=self.data_dir)
        self.rabbit_down = False
        self.edits_today: set[str] = set()
        self.edit_counter = 0
        self.edits_before = 0
        self.reports: list[DayReport] = []

    # --- actions --------------------------------------------------------------------------------
    def sync_all(self) -> None:
        from ops.broker import send_scene_batches

        send_scene_batches(self.runtime, self.library.all_ids, event="cli")

    def send_maintenance(self, name: str, *args: Any) -> None:
        if not self.rabbit_down:
            self.runtime.maintenance_actors[name].send(*args)

    def edit_scene(self) -> None:
        """A user edits a scene's title in Stash; the hook publishes it (or spools it when RabbitMQ is down)."""
        from plugin.hook import StashLog, deliver

        scene_id = self.rng.choice(self.library.syncable)
        self.edit_counter += 1
        title = f"Soak edit {self.edit_counter} of scene {scene_id}"
        stash_update_title(self.stash.url, scene_id, title, self.http)
        self.library.titles[scene_id] = title
        self.edits_today.add(scene_id)
        delivery = deliver((scene_id,), "Scene.Update.Post", self.hook, StashLog(io.StringIO()))
        if delivery.spool_error:
            raise RuntimeError(f"the hook could not spool scene {scene_id}: {delivery.spool_error}")

    def restart_rabbitmq(self) -> None:
        """`stop_app`, three edits the hook spools meanwhile, `start_app` (a few seconds in all)."""
        self.rabbit_down = True
        started = time.monotonic()
        rabbitmqctl("stop_app")
        try:
            for _ in range(3):
                self.edit_scene()
            time.sleep(max(0.0, RABBIT_DOWN_SECONDS - (time.monotonic() - started)))
        finally:
            rabbitmqctl("start_app")
            rabbitmqctl("await_startup")
            self.rabbit_down = False

    # --- the day's script -----------------------------------------------------------------------
    def day_events(self, faults: list[str]) -> list[tuple[float, str, Callable[[], Any]]]:
        """(fraction of the day, name, action), in time order."""
        seconds = self.args.day_seconds
        events: list[tuple[float, str, Callable[[], Any]]] = [(0.0, "sync_all", self.sync_all)]
        for n in range(self.args.edits):
            events.append((0.02 + 0.48 * n / max(1, self.args.edits), "edit", self.edit_scene))
        for second in range(1, int(seconds)):  # the every-minute schedules, once a wall second
            events.append((second / seconds, "flush", lambda: self.send_maintenance("flush_hook_spool")))
            events.append((second / seconds, "tidy", lambda: self.send_maintenance("tidy_dlq")))
        events.append((0.45, "reconcile", lambda: self.send_maintenance("reconcile_library", "all", False)))
        events.append((0.95, "rebuild_index", lambda: self.send_maintenance("rebuild_path_index")))
        if "kill" in faults:
            events.append((0.04, "kill", self.workers.kill_one_worker))
        if "plex" in faults:
            events += [(0.08, "plex_down", lambda: self.plex.set_up(False)), (0.33, "plex_up", lambda: self.plex.set_up(True))]
        if "stash" in faults:
            events += [(0.55, "stash_down", lambda: self.stash.set_up(False)), (0.551, "sync_all", self.sync_all),
                       (0.85, "stash_up", lambda: self.stash.set_up(True))]
        if "rabbit" in faults:
            events = [e for e in events if not (e[1] in ("flush", "tidy") and 0.84 <= e[0] < 0.88)]
            events.append((0.88, "rabbit_restart", self.restart_rabbitmq))
        return sorted(events, key=lambda e: e[0])

    def run_day(self, day: int, faults: list[str]) -> DayReport:
        self.edits_today = set()
        self.edits_before = self.edit_counter
        restarts_before = self.workers.restarts
        started = time.monotonic()
        for fraction, _name, action in self.day_events(faults):
            delay = started + fraction * self.args.day_seconds - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            action()
        drained = self.wait_drained()
        return self.check_day(day, faults, drained, self.workers.restarts - restarts_before, time.monotonic() - started)

    def wait_drained(self) -> bool:
        """Until the workers are idle for a quiet window, and the management API then shows no message (bounded).

        Quiet: nothing ready (AMQP, real time), nothing running and no message processed (exporter) for
        QUIET_SECONDS, longer than the management API's 5 s refresh. A message held unacked for the whole
        window (a delayed retry) is in the API's counts; one held shorter is run inside the window, which
        the processed count shows, and the window starts again.
        """
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        quiet_since: float | None = None
        last_processed = -1.0
        while time.monotonic() < deadline:
            activity = worker_activity(scrape_metrics(self.metrics_port))
            quiet = (activity is not None and activity[0] == 0 and activity[1] == last_processed
                     and ready_messages(self.settings) == 0)
            last_processed = activity[1] if activity is not None else -1.0
            now = time.monotonic()
            quiet_since = (quiet_since or now) if quiet else None
            if quiet_since is not None and now - quiet_since >= QUIET_SECONDS and not self.queues_left():
                return True
            time.sleep(0.5)
        return False

    # --- invariants -----------------------------------------------------------------------------
    def check_day(self, day: int, faults: list[str], drained: bool, restarts: int, seconds: float) -> DayReport:
        dlq = dlq_scene_ids(self.settings)
        dlq_messages = dlq_depth(self.settings)
        titles = plex_titles(self.plex.url, list(self.library.rating_keys.values()))
        out_of_sync = [s for s, title in self.library.titles.items() if titles.get(self.library.rating_keys[s]) != title]
        lost = [s for s in out_of_sync if s not in dlq]
        unexpected = {s: n for s, n in (dlq - self.library.expected_dlq).items()}
        if dlq_messages != sum(dlq.values()):  # the listing merges per scene; the queue itself must too
            unexpected["(messages in the queue)"] = dlq_messages - sum(dlq.values())
        missing = {s: n for s, n in (self.library.expected_dlq - dlq).items()}
        queues_left = self.queues_left()
        metrics = scrape_metrics(self.metrics_port)
        report = DayReport(
            day=day, faults=faults, edits=self.edit_counter - self.edits_before, edited_scenes=len(self.edits_today),
            edits_synced=sum(1 for s in self.edits_today if s not in out_of_sync), lost=lost,
            dlq_size=dlq_messages, dlq_unexpected={**unexpected, **{s: -n for s, n in missing.items()}},
            no_file_outcome=last_outcome(self.data_dir, self.library.no_file),
            rss_mb=self.workers.rss_mb(), state_db_kb=state_db_kb(self.data_dir), drained=drained,
            queues_left=queues_left, dead_series=sorted(dead_series_pids(metrics)) if metrics else [],
            dead_files=dead_metric_files(self.prom_dir), restarts=restarts, seconds=seconds)
        report.flat = self.flat(report)
        report.failed = failed_invariants(report)
        return report

    def queues_left(self) -> dict[str, int]:
        """Queues of the prefix holding messages, but the DLQ itself (and its lock, empty by design)."""
        dlq = self.settings.dlq_name
        return {name: n for name, n in management_queues(self.prefix).items() if n and name not in (dlq, f"{dlq}.lock")}

    def flat(self, report: DayReport) -> bool | None:
        """RSS within the growth bound of its day-3 value, state.db (+ -wal) of its day-8 value (None before)."""
        bound = 1 + self.args.growth_bound
        checks = []
        for baseline_day, value in ((RSS_BASELINE_DAY, lambda r: r.rss_mb), (STATE_BASELINE_DAY, lambda r: r.state_db_kb)):
            baseline = next((r for r in self.reports if r.day == baseline_day), None)
            if baseline is not None and report.day > baseline_day:
                checks.append(value(report) <= value(baseline) * bound)
        return all(checks) if checks else None

    # --- the run --------------------------------------------------------------------------------
    def run(self) -> list[DayReport]:
        self.http = requests.Session()
        if not wait_until(lambda: worker_activity(scrape_metrics(self.metrics_port)) is not None, timeout=60, interval=0.2):
            raise RuntimeError("the workers' exporter did not answer within 60 s")
        for day in range(1, self.args.days + 1):
            faults = [kind for kind in FAULT_KINDS if day in self.args.fault_days[kind]]
            report = self.run_day(day, faults)
            self.reports.append(report)
            print(day_row(report), flush=True)
            if self.args.json:
                write_json(self.args.json, self.reports, ok=None)
        return self.reports

    def close(self) -> None:
        from pipeline import rabbit

        if self.rabbit_down:
            subprocess.run(["rabbitmqctl", "start_app"], capture_output=True, timeout=120)
        self.workers.stop()
        self.runtime.close()
        for emulator in (self.plex, self.stash):
            emulator.stop()
        rabbit.delete_queues(self.settings)
        with rabbit.connection(self.settings) as opened:  # anything else of the prefix
            channel = opened.channel()
            for name in management_queues(self.prefix):
                channel.queue_delete(name)


def failed_invariants(report: DayReport) -> list[str]:
    failed = []
    if report.lost:
        failed.append("a")
    if report.dlq_unexpected or report.no_file_outcome != "skipped":
        failed.append("b")
    if report.flat is False:
        failed.append("c")
    if not report.drained or report.queues_left or report.dead_series or report.dead_files:
        failed.append("d")
    return failed


# --- output -----------------------------------------------------------------------------------------
TABLE_HEADER = ("| day | faults | edits | synced | lost | DLQ size | RSS MB | state.db KB | queues empty | invariants | wall s |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|")


def day_row(r: DayReport) -> str:
    invariants = "OK" if r.ok else "FAIL " + ",".join(r.failed)
    return (f"| {r.day} | {'+'.join(r.faults) or '-'} | {r.edits} | {r.edits_synced}/{r.edited_scenes} | {len(r.lost)} | "
            f"{r.dlq_size} | {r.rss_mb:.0f} | {r.state_db_kb:.0f} | {'yes' if not r.queues_left and r.drained else 'NO'} | "
            f"{invariants} | {r.seconds:.0f} |")


def summary(reports: list[DayReport], args: argparse.Namespace, elapsed: float) -> list[tuple[str, str]]:
    def failing(letter: str) -> str:
        days = [str(r.day) for r in reports if letter in r.failed]
        return "held every day" if not days else f"FAILED on days {', '.join(days)}"

    rows = [
        ("compressed days / scenes / workers", f"{len(reports)} x {args.day_seconds:g} s / {args.scenes} + 3 unsyncable / "
                                               f"-p {args.processes} -t {args.threads}"),
        ("edits published (hook deliver)", str(sum(r.edits for r in reports))),
        ("worker restarts by the supervisor", str(sum(r.restarts for r in reports))),
        ("(a) 0 lost", failing("a") + f" (lost at most {max((len(r.lost) for r in reports), default=0)})"),
        ("(b) DLQ == the unsyncable scenes, one entry each",
         failing("b") + f" (DLQ size {reports[-1].dlq_size if reports else 0} at the end, 2 expected)"),
        ("(d) queues empty, no dead series or files", failing("d")),
    ]
    rows += [growth_row("worker RSS", reports, RSS_BASELINE_DAY, lambda r: r.rss_mb, args.growth_bound),
             growth_row("state.db + -wal", reports, STATE_BASELINE_DAY, lambda r: r.state_db_kb, args.growth_bound)]
    if any("c" in r.failed for r in reports):
        rows.append(("(c) flat resources", failing("c")))
    rows.append(("wall time", f"{elapsed:.0f} s"))
    return rows


def growth_row(label: str, reports: list[DayReport], baseline_day: int, value: Callable[[DayReport], float],
               bound: float) -> tuple[str, str]:
    """`(c) <label>`: the largest value after `baseline_day` against it (n/a when the run is shorter)."""
    baseline = next((r for r in reports if r.day == baseline_day), None)
    later = [value(r) for r in reports if r.day > baseline_day]
    if baseline is None or not later:
        return (f"(c) {label} growth after day {baseline_day}", f"n/a (run of {len(reports)} days)")
    growth = max(later) / value(baseline) - 1
    verdict = "held" if growth <= bound else "FAILED"
    return (f"(c) {label} growth after day {baseline_day} (bound {bound:.0%})",
            f"{growth:+.1%}, {value(baseline):.0f} -> max {max(later):.0f}: {verdict}")


def parse_faults(values: list[str], days: int) -> dict[str, list[int]]:
    """`--fault kind=1,5` replaces the default days of that kind (`kind=` for none)."""
    plan = {kind: [d for d in DEFAULT_FAULT_DAYS[kind] if d <= days] for kind in FAULT_KINDS}
    for value in values:
        kind, _, listed = value.partition("=")
        if kind not in FAULT_KINDS:
            raise SystemExit(f"--fault: unknown kind {kind!r} (one of {', '.join(FAULT_KINDS)})")
        plan[kind] = [int(d) for d in listed.split(",") if d.strip()]
    return plan


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--day-seconds", type=float, default=20.0, help="wall-clock seconds of one compressed day")
    parser.add_argument("--scenes", type=int, default=500, help="syncable scenes (3 unsyncable ones are added)")
    parser.add_argument("--edits", type=int, default=30, help="Stash edits per day")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--breaker-reset", type=float, default=2.0, help="breaker_reset_seconds (shorter than outages)")
    parser.add_argument("--growth-bound", type=float, default=0.10, help="allowed RSS/state.db growth after day 3")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND=DAYS",
                        help="days of a fault kind (kill, plex, stash, rabbit), e.g. rabbit=2; default: "
                             + "; ".join(f"{k}={','.join(map(str, v))}" for k, v in DEFAULT_FAULT_DAYS.items()))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-level", default="WARNING", help="the workers' log level")
    parser.add_argument("--json", type=Path, help="write the day reports and the result here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, state.db)")
    args = parser.parse_args(argv)
    args.fault_days = parse_faults(args.fault, args.days)
    return args


def write_json(path: Path, reports: list[DayReport], ok: bool | None) -> None:
    """The day reports (after every day, so an interrupted run leaves them) and the result (None: running)."""
    path.write_text(json.dumps({"ok": ok, "days": [asdict(r) | {"ok": r.ok} for r in reports]}, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="s2p-soak-"))
    started = time.monotonic()
    print(f"soak: {args.days} days x {args.day_seconds:g} s, {args.scenes} scenes, faults "
          + "; ".join(f"{k}={','.join(map(str, v)) or '-'}" for k, v in args.fault_days.items()), flush=True)
    print(TABLE_HEADER, flush=True)
    soak = None
    try:
        soak = Soak(args, workdir)
        reports = soak.run()
    finally:
        if soak is not None:
            soak.close()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    ok = all(r.ok for r in reports) and len(reports) == args.days
    print_table("soak summary", summary(reports, args, time.monotonic() - started))
    if args.json:
        write_json(args.json, reports, ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
