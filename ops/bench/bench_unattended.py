"""Running unattended: DLQ hygiene over repeated full syncs, a long Stash outage mid-bulk, two worker hosts.

    python -m ops.bench.bench_unattended [--scenes 300] [--stash-outage 180] [--processes 2 --threads 4]

Emulators run in this process (so the bench can take Stash down and count Plex writes); the workers
are plain `dramatiq actors` processes on the real RabbitMQ. The library holds one scene whose file
name two Plex items share (ambiguous under strict matching: it truly cannot sync) and one scene
without a file (a skip, not an error). Three runs:

1. three full syncs (batches of 50, as `sync --all`): DLQ size (messages, after the workers' tidy)
   after each, and its entries;
2. a fresh library, Stash down `--stash-outage` seconds as soon as `--down-after` scenes of the bulk
   are synced: how many scenes reach Plex, DLQ entries, deferrals, and retries spent;
3. two worker hosts (own data_dir each) on one RabbitMQ: Plex writes of the first sync and of an
   unchanged rerun.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


from ops.bench.bench_chain import BROKER_URL, dramatiq_workers, stop
from ops.bench.common import (
    PLEX_TOKEN,
    STASH_KEY,
    emulator_env,
    free_port,
    metric_sum,
    print_table,
    scrape_metrics,
    wait_until,
)
from ops.sync import enqueue, read_outcomes
from pipeline.rabbit import delete_queues as delete_prefix_queues
from pipeline.config import explicit_settings
from pipeline.dlq import RabbitDeadLetterQueue
from pipeline.rabbit import queue_depth
from tests.emulators.plex import PlexEmulator
from tests.emulators.sample_data import Dataset, make_dataset, make_plex_item
from tests.emulators.stash import StashEmulator

STAGES = ("fetch_scene", "match_plex", "push_metadata", "sync_performers")
AMBIGUOUS, NO_FILE = "7", "3"


class Library:
    """The emulators with the bench's library: one ambiguous scene, one scene without a file."""

    def __init__(self, scenes: int) -> None:
        self.data: Dataset = make_dataset(scenes)
        self.plex = PlexEmulator(items=self.data.plex_items, token=PLEX_TOKEN).start()
        self.stash = StashEmulator(scenes=self.data.scenes, api_key=STASH_KEY).start()
        ambiguous = next(s for s in self.data.scenes if s["id"] == AMBIGUOUS)["files"][0]["basename"]
        self.plex.add_item(make_plex_item(90_000, 900_000, f"/data/other/{ambiguous}"))
        self.stash.update_scene(AMBIGUOUS, files=[f"/elsewhere/{ambiguous}"])
        self.stash.update_scene(NO_FILE, files=[])
        self.ids = [s["id"] for s in self.data.scenes]

    def writes(self) -> int:
        return len(self.plex.edit_requests()) + len(self.plex.poster_uploads())

    def close(self) -> None:
        self.plex.stop()
        self.stash.stop()


class Hosts:
    """Worker groups (`dramatiq actors`), each a "host" with its own data_dir, on one queue prefix."""

    def __init__(self, library: Library, workdir: Path, processes: int, threads: int, **settings: object) -> None:
        self.library, self.workdir = library, workdir
        self.processes, self.threads, self.settings = processes, threads, settings
        self.prefix = f"unatt{uuid.uuid4().hex[:6]}"
        self.metrics_ports: list[int] = []
        self.data_dirs: list[Path] = []
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str) -> None:
        data_dir = self.workdir / f"{self.prefix}-{name}"
        port = free_port()
        env = emulator_env(self.library.plex.url, self.library.stash.url, data_dir, queue_prefix=self.prefix,
                           broker_url=BROKER_URL, **self.settings)
        env.update({"dramatiq_prom_db": str(self.workdir / f"prom-{self.prefix}-{name}"), "STASH2PLEX_METRICS_PORT": str(port)})
        self.procs.append(dramatiq_workers("actors", env, self.processes, self.threads, self.workdir / f"{self.prefix}-{name}.log"))
        self.data_dirs.append(data_dir)
        self.metrics_ports.append(port)

    def sync_all(self, ids: list[str]) -> float:
        """Enqueue as `sync --all` does; returns the wall-clock time it was sent (for outcome lookups)."""
        since = time.time()
        enqueue(explicit_settings(broker_url=BROKER_URL, queue_prefix=self.prefix, batch_size=50), ids)
        return since

    def outcomes(self, since: float) -> dict[str, str]:
        seen: dict[str, str] = {}
        for data_dir in self.data_dirs:
            seen.update({scene: outcome for scene, (outcome, _detail) in read_outcomes(data_dir, since).items()})
        return seen

    def idle(self) -> bool:
        settings = explicit_settings(broker_url=BROKER_URL)
        return all(queue_depth(settings, f"{self.prefix}.{q}{s}") == 0 for q in STAGES for s in ("", ".DQ"))

    def settle(self, ids: list[str], since: float, timeout: float = 900) -> bool:
        return wait_until(lambda: set(ids) <= set(self.outcomes(since)) and self.idle(), timeout=timeout, interval=0.5)

    def dlq(self) -> RabbitDeadLetterQueue:
        return RabbitDeadLetterQueue(explicit_settings(broker_url=BROKER_URL, queue_prefix=self.prefix))

    def tidied_dlq_size(self, timeout: float = 60) -> int:
        """The DLQ's message count once the workers' tidy has merged it (one message per scene)."""
        dlq = self.dlq()
        wait_until(lambda: dlq.count() == len(dlq.entries()), timeout=timeout, interval=0.5)
        return dlq.count()

    def metric(self, name: str, *labels: str) -> float:
        """A counter summed over every host's exporter (its samples whose labels include every one of `labels`)."""
        return sum(metric_sum(scrape_metrics(port), name, *labels) for port in self.metrics_ports)

    def close(self) -> None:
        for proc in self.procs:
            stop(proc)
        delete_prefix_queues(explicit_settings(broker_url=BROKER_URL, queue_prefix=self.prefix))


@contextmanager
def library_and_hosts(args: argparse.Namespace, workdir: Path, processes: int | None = None,
                      **settings: object) -> Iterator[tuple[Library, Hosts]]:
    """A fresh library and (not yet started) worker hosts for one run; everything stopped afterwards."""
    library = Library(args.scenes)
    hosts = Hosts(library, workdir, processes or args.processes, args.threads, **settings)
    try:
        yield library, hosts
    finally:
        hosts.close()
        library.close()


def three_full_syncs(args: argparse.Namespace, workdir: Path) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with library_and_hosts(args, workdir) as (library, hosts):
        hosts.start("a")
        for run in range(1, 4):
            since = hosts.sync_all(library.ids)
            settled = hosts.settle(library.ids, since)
            ended = hosts.outcomes(since)
            rows.append((f"full sync {run}: DLQ size / outcome of the no-file scene" + ("" if settled else " (NOT SETTLED)"),
                         f"{hosts.tidied_dlq_size()} / {ended.get(NO_FILE)}"))
        entries = hosts.dlq().entries()
        rows.append(("DLQ entries after 3 full syncs (scene: error class x times)",
                     ", ".join(f"{e.scene_id}: {e.error_class} x{e.count}" for e in entries) or "none"))
        skipped = hosts.metric("stash2plex_skipped_total", 'reason="no_file"')
        rows.append(("stash2plex_skipped_total{reason=no_file}", f"{skipped:.0f}"))
    return rows


def stash_outage(args: argparse.Namespace, workdir: Path) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with library_and_hosts(args, workdir, breaker_reset_seconds=args.breaker_reset) as (library, hosts):
        hosts.start("a")
        since = hosts.sync_all(library.ids)
        wait_until(lambda: len(hosts.outcomes(since)) >= args.down_after, timeout=300, interval=0.005)
        library.stash.go_down()
        down_at = len(hosts.outcomes(since))
        time.sleep(args.stash_outage)
        library.stash.come_up()
        settled = hosts.settle(library.ids, since)
        ended = hosts.outcomes(since)
        updated = sum(1 for outcome in ended.values() if outcome == "updated")
        deferred = hosts.metric("stash2plex_failures_total", 'error_class="stash_down"', 'action="defer"')
        retried = hosts.metric("stash2plex_failures_total", 'error_class="transient"', 'action="retry"')
        rows += [
            (f"Stash down {args.stash_outage:g} s at {down_at} of {args.scenes} scenes: updated in Plex" + ("" if settled else " (NOT SETTLED)"),
             f"{updated} (+ {sum(1 for o in ended.values() if o == 'skipped')} skipped, "
             f"{sum(1 for o in ended.values() if o == 'dead_letter')} dead-lettered)"),
            ("DLQ entries after the outage", ", ".join(f"{e.scene_id}: {e.error_class}" for e in hosts.dlq().entries()) or "none"),
            ("failed attempts deferred as stash_down / retried as transient", f"{deferred:.0f} / {retried:.0f}"),
            ("Stash breaker openings", f"{hosts.metric('stash2plex_stash_breaker_opened_total'):.0f}"),
        ]
    return rows


def two_hosts(args: argparse.Namespace, workdir: Path) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with library_and_hosts(args, workdir, processes=1) as (library, hosts):
        hosts.start("a")
        hosts.start("b")
        since = hosts.sync_all(library.ids)
        hosts.settle(library.ids, since)
        first = library.writes()
        rows.append(("two hosts, first sync: Plex writes (edits + posters)", f"{first}"))
        for rerun in (1, 2):
            since = hosts.sync_all(library.ids)
            hosts.settle(library.ids, since)
            rows.append((f"two hosts, unchanged rerun {rerun}: Plex writes", f"{library.writes() - first}"))
            first = library.writes()
        shares = []
        for data_dir in hosts.data_dirs:
            with sqlite3.connect(data_dir / "state.db", timeout=30) as conn:
                shares.append(int(conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]))
        rows.append(("outcomes recorded per host (all runs)", " / ".join(map(str, shares))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--stash-outage", type=float, default=180.0, help="seconds Stash stays down")
    parser.add_argument("--down-after", type=int, default=1, help="scenes synced before Stash goes down")
    parser.add_argument("--breaker-reset", type=float, default=60.0, help="breaker_reset_seconds of the workers")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--run", action="append", choices=["dlq", "stash-outage", "two-hosts"],
                        help="runs to make (repeatable); default: all three")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="s2p-unattended-"))
    runs = {"dlq": three_full_syncs, "stash-outage": stash_outage, "two-hosts": two_hosts}
    rows: list[tuple[str, str]] = []
    try:
        for name in args.run or list(runs):
            rows += runs[name](args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(f"bench_unattended: {args.scenes} scenes (1 ambiguous, 1 without a file), "
                f"dramatiq actors -p {args.processes} -t {args.threads}", rows)


if __name__ == "__main__":
    main()
