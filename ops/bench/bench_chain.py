"""The actor chain on RabbitMQ under load, against emulator processes.

    python -m ops.bench.bench_chain [--scenes 10000] [--index-items 50000] [--processes 2 --threads 4]
    python -m ops.bench.bench_chain --scenario fresh-scan --scenes 3000 --library 50000 --library 100000

Measures, in one run: the no-op four-actor chain ceiling with the same broker settings; the real
chain draining N scenes enqueued as `sync --all` does (batches of `batch_size` ids); the idle latency
of one scene edit from the hook's publish to the Plex write (p50/p95 over 30 edits); and the RSS of
each worker process holding the path index.

`fresh-scan`: per library size, a freshly scanned Plex library (every item added within the same
minute, an hour ago) of which every 30th of the synced scenes' items appears only after the path
index was built (a section scan reveals them: their first lookups miss and refresh the index). It
prints scenes/s, the ratio to the no-op chain measured just before in the same run, Plex requests
per scene during the bulk (and with the one-time index build), and the worker tree's peak RSS
(the `dramatiq` process and all its descendants, sampled every 0.2 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pika
import requests
from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from ops.bench.common import (
    PLEX_TOKEN,
    ROOT,
    STASH_KEY,
    emulator_env,
    env_with,
    free_port,
    percentile,
    print_table,
    rss_mb,
    scrape_metrics,
    start_emulator,
    wait_until,
)
from pipeline.rabbit import delete_queues as delete_prefix_queues
from pipeline.rabbit import queue_depth
from pipeline.config import explicit_settings

BROKER_URL = os.environ.get("STASH2PLEX_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")


def dramatiq_workers(module: str, env: dict[str, str], processes: int, threads: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dramatiq", module, "-p", str(processes), "-t", str(threads)],
                            cwd=ROOT, env=env_with(env), stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def delete_queues(names: list[str]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    channel = connection.channel()
    for name in names:
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(name + suffix)
    connection.close()


def tear_down(broker: RabbitmqBroker, worker: subprocess.Popen, emulators: list[subprocess.Popen], prefix: str,
              prom: Path) -> None:
    """Stop a run's workers and emulator processes, delete its queues and its metrics folder."""
    broker.close()
    stop(worker)
    for proc in emulators:
        proc.terminate()
        proc.wait(timeout=10)
    delete_prefix_queues(explicit_settings(broker_url=BROKER_URL, queue_prefix=prefix))  # every queue, .dlq.synced too
    shutil.rmtree(prom, ignore_errors=True)


def bench_noop(count: int, processes: int, threads: int, workdir: Path) -> float:
    prefix = f"noop{uuid.uuid4().hex[:6]}"
    done_file = workdir / f"{prefix}-done"
    env = {"NOOP_PREFIX": prefix, "NOOP_DONE_FILE": str(done_file), "NOOP_BROKER_URL": BROKER_URL}
    broker = RabbitmqBroker(url=BROKER_URL, confirm_delivery=True)
    for n in range(count):
        broker.enqueue(Message(queue_name=f"{prefix}.a", actor_name="a", args=(n,), kwargs={}, options={}))
    broker.close()
    proc = dramatiq_workers("ops.bench.noop_chain", env, processes, threads, workdir / "noop.log")
    started = time.perf_counter()
    wait_until(lambda: done_file.exists() and done_file.stat().st_size >= count, timeout=300, interval=0.02)
    seconds = time.perf_counter() - started
    stop(proc)
    delete_queues([f"{prefix}.{q}" for q in "abcd"])
    return count / seconds


def updated_count(data_dir: Path) -> int:
    db = data_dir / "state.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return int(conn.execute("SELECT COUNT(DISTINCT scene_id) FROM outcomes WHERE outcome='updated'").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def plex_requests_metric(port: int) -> dict[str, float]:
    """stash2plex_plex_requests_total summed by status, from the workers' Prometheus exporter."""
    totals: dict[str, float] = {}
    for line in scrape_metrics(port).splitlines():
        if line.startswith("stash2plex_plex_requests_total{"):
            status = line.split('status="', 1)[1].split('"', 1)[0]
            totals[status] = totals.get(status, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def worker_rss(proc: subprocess.Popen) -> list[float]:
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    return [rss_mb(int(pid)) for pid in children]


def plex_title(plex_url: str, rating_key: int, session: requests.Session) -> str:
    response = session.get(f"{plex_url}/library/metadata/{rating_key}", headers={"X-Plex-Token": PLEX_TOKEN})
    start = response.text.find(' title="')
    return response.text[start + 8: response.text.find('"', start + 8)]


def stash_update_title(stash_url: str, scene_id: str, title: str, session: requests.Session) -> None:
    query = "mutation Edit($id: ID!, $title: String) { sceneUpdate(input: {id: $id, title: $title}) { id } }"
    session.post(f"{stash_url}/graphql", json={"query": query, "variables": {"id": scene_id, "title": title}},
                 headers={"ApiKey": STASH_KEY}).raise_for_status()


def enqueue_bulk(broker: RabbitmqBroker, prefix: str, ids: list[str]) -> None:
    """As `stash2plex sync --all` does: batches of 50 scene ids per fetch_scene message."""
    for start in range(0, len(ids), 50):
        jobs = [{"scene_id": i, "event": "cli"} for i in ids[start:start + 50]]
        broker.enqueue(Message(queue_name=f"{prefix}.fetch_scene", actor_name="fetch_scene", args=(),
                               kwargs={"jobs": jobs}, options={}))


def measure_latency(broker: RabbitmqBroker, prefix: str, plex_url: str, stash_url: str, samples: int) -> list[float]:
    """Edit a scene in Stash, publish as the hook does, and time until Plex shows the edit."""
    session = requests.Session()
    latencies = []
    for n in range(samples):
        scene_id = str(1 + n)
        title = f"Latency probe {n} {uuid.uuid4().hex[:6]}"
        stash_update_title(stash_url, scene_id, title, session)
        time.sleep(0.05)
        published = time.perf_counter()
        broker.enqueue(Message(queue_name=f"{prefix}.fetch_scene", actor_name="fetch_scene",
                               args=(scene_id, "Scene.Update.Post"), kwargs={}, options={}))
        if wait_until(lambda: plex_title(plex_url, 1000 + int(scene_id), session) == title, timeout=10, interval=0.002):
            latencies.append((time.perf_counter() - published) * 1000)
    return latencies


def run_chain(args: argparse.Namespace, workdir: Path, scenario: str) -> tuple[list[tuple[str, str]], float]:
    """One bulk run of the real chain; `scenario` is normal, outage (Plex down) or rabbit-restart."""
    rows: list[tuple[str, str]] = []
    rate = 0.0
    prom = Path(tempfile.mkdtemp(prefix="s2p-prom-"))
    metrics_port = free_port()
    plex_proc, plex_url = start_emulator("plex", max(args.index_items, args.scenes))
    stash_proc, stash_url = start_emulator("stash", args.scenes)
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    data_dir = workdir / f"data-{scenario}"
    env = emulator_env(plex_url, stash_url, data_dir, queue_prefix=prefix, broker_url=BROKER_URL,
                       breaker_reset_seconds=args.breaker_reset)
    env.update({"dramatiq_prom_db": str(prom), "STASH2PLEX_METRICS_PORT": str(metrics_port)})
    worker = dramatiq_workers("actors", env, args.processes, args.threads, workdir / f"worker-{scenario}.log")
    broker = RabbitmqBroker(url=BROKER_URL, confirm_delivery=True)
    try:
        # Warm-up: one scene builds the path index (one paged listing, persisted) before the clock starts.
        started_index = time.perf_counter()
        broker.enqueue(Message(queue_name=f"{prefix}.fetch_scene", actor_name="fetch_scene", args=("1", "bench"), kwargs={}, options={}))
        wait_until(lambda: updated_count(data_dir) >= 1, timeout=300)
        if scenario == "normal":
            rows.append((f"path index build ({max(args.index_items, args.scenes):,} Plex items) + first scene",
                         f"{time.perf_counter() - started_index:.1f} s"))
        ids = [str(i) for i in range(2, args.scenes + 1)]
        started = time.perf_counter()
        enqueue_bulk(broker, prefix, ids)
        enqueued = time.perf_counter() - started
        fault_note = ""
        if scenario == "outage":
            wait_until(lambda: updated_count(data_dir) >= args.scenes // 5, timeout=300)
            before = plex_requests_metric(metrics_port)
            os.kill(plex_proc.pid, signal.SIGUSR1)  # Plex down: connection refused, state kept
            time.sleep(args.outage)
            during = plex_requests_metric(metrics_port)
            os.kill(plex_proc.pid, signal.SIGUSR1)  # Plex back
            refused = during.get("error", 0) - before.get("error", 0)
            fault_note = f"Plex down {args.outage:g} s at {args.scenes // 5:,} synced"
            rows.append((f"Plex requests attempted during the {args.outage:g} s outage", f"{refused:.0f}"))
        elif scenario == "rabbit-restart":
            wait_until(lambda: updated_count(data_dir) >= args.scenes // 5, timeout=300)
            subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True)
            time.sleep(3)
            subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True)
            fault_note = f"RabbitMQ app restarted at {args.scenes // 5:,} synced"
        finished = wait_until(lambda: updated_count(data_dir) >= args.scenes, timeout=1800, interval=0.2)
        seconds = time.perf_counter() - started
        done = updated_count(data_dir)
        rate = (done - 1) / seconds
        label = f"{scenario}: {len(ids):,} scenes in batches of 50" + (f" ({fault_note})" if fault_note else f" (enqueue {enqueued:.1f} s)")
        rows += [
            (label, f"{rate:,.0f} scenes/s ({seconds:.1f} s){'' if finished else ' NOT FINISHED'}"),
            (f"{scenario}: scenes updated in Plex (distinct)", f"{done:,} of {args.scenes:,}"),
            (f"{scenario}: DLQ entries", str(_depth(f"{prefix}.dlq"))),
        ]
        if scenario == "normal":
            rows.append(("RSS of dramatiq's child processes (MB): 2 workers and the metrics exporter", ", ".join(f"{mb:.0f}" for mb in worker_rss(worker))))
            latencies = measure_latency(broker, prefix, plex_url, stash_url, args.latency_samples)
            rows.append((f"idle latency publish -> Plex write, {len(latencies)} edits",
                         f"p50 {percentile(latencies, 50):.1f} ms, p95 {percentile(latencies, 95):.1f} ms"))
        rows.append((f"{scenario}: Plex requests by status (workers' metrics)",
                     ", ".join(f"{k}={v:.0f}" for k, v in sorted(plex_requests_metric(metrics_port).items()))))
    finally:
        tear_down(broker, worker, [plex_proc, stash_proc], prefix, prom)
    return rows, rate


class TreeRss:
    """Samples the summed RSS of a process and all its descendants; `peak` is the highest sum seen."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "TreeRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, sum(rss_mb(pid) for pid in self.tree()))

    def tree(self) -> list[int]:
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            todo.extend(int(child) for child in children)
        return found


def plex_requests_total(port: int) -> float:
    return sum(plex_requests_metric(port).values())


def run_fresh_scan(args: argparse.Namespace, workdir: Path, library: int) -> list[str]:
    """One freshly scanned library of `library` items, `args.scenes` scenes through the workers; one table row."""
    noop_rate = bench_noop(args.scenes, args.processes, args.threads, workdir)
    prom = Path(tempfile.mkdtemp(prefix="s2p-prom-"))
    metrics_port = free_port()
    scanned_at = int(time.time()) - 3600
    plex_proc, plex_url = start_emulator("plex", library, ["--scanned-at", str(scanned_at), "--scan-seconds", "60",
                                                           "--pending-every", "30", "--pending-limit", str(args.scenes)])
    stash_proc, stash_url = start_emulator("stash", args.scenes)
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    data_dir = workdir / f"data-fresh-{library}-{prefix}"
    env = emulator_env(plex_url, stash_url, data_dir, queue_prefix=prefix, broker_url=BROKER_URL)
    env.update({"dramatiq_prom_db": str(prom), "STASH2PLEX_METRICS_PORT": str(metrics_port)})
    worker = dramatiq_workers("actors", env, args.processes, args.threads, workdir / f"worker-fresh-{library}-{prefix}.log")
    broker = RabbitmqBroker(url=BROKER_URL, confirm_delivery=True)
    try:
        with TreeRss(worker.pid) as rss:
            started_index = time.perf_counter()
            broker.enqueue(Message(queue_name=f"{prefix}.fetch_scene", actor_name="fetch_scene", args=("1", "bench"), kwargs={}, options={}))
            wait_until(lambda: updated_count(data_dir) >= 1, timeout=600)
            build_seconds = time.perf_counter() - started_index
            wait_until(lambda: plex_requests_total(metrics_port) > 0, timeout=30)
            before = plex_requests_total(metrics_port)
            requests.get(f"{plex_url}/library/sections/1/refresh", headers={"X-Plex-Token": PLEX_TOKEN}, timeout=30).raise_for_status()
            ids = [str(i) for i in range(2, args.scenes + 1)]
            started = time.perf_counter()
            enqueue_bulk(broker, prefix, ids)
            finished = wait_until(lambda: updated_count(data_dir) >= args.scenes, timeout=1800, interval=0.1)
            seconds = time.perf_counter() - started
            time.sleep(1.0)  # the exporter reads the metric files at each scrape
            after = plex_requests_total(metrics_port)
        done = updated_count(data_dir) - 1
        rate = done / seconds
        bulk_requests = (after - before) / max(done, 1)
        with_build = after / max(done + 1, 1)
        return [f"{library:,}", f"{args.scenes:,}", f"{rate:,.0f}{'' if finished else ' (NOT FINISHED)'}",
                f"{noop_rate:,.0f}", f"{rate / noop_rate:.3f}", f"{bulk_requests:.3f}", f"{with_build:.3f}",
                f"{build_seconds:.1f} s", f"{rss.peak:.0f} MB", str(_depth(f"{prefix}.dlq"))]
    finally:
        tear_down(broker, worker, [plex_proc, stash_proc], prefix, prom)


FRESH_SCAN_COLUMNS = ["Plex library", "scenes", "scenes/s", "no-op chains/s", "ratio", "Plex req/scene (bulk)",
                      "Plex req/scene (with build)", "index build + 1st scene", "worker tree peak RSS", "DLQ"]


def print_columns(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=10_000)
    parser.add_argument("--index-items", type=int, default=50_000, help="Plex items (>= scenes): the index size")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--latency-samples", type=int, default=30)
    parser.add_argument("--scenario", action="append", choices=["normal", "outage", "rabbit-restart", "fresh-scan"],
                        help="runs to make (repeatable); default: normal")
    parser.add_argument("--library", type=int, action="append",
                        help="fresh-scan: Plex library sizes (repeatable); default 50000 and 100000")
    parser.add_argument("--outage", type=float, default=120.0, help="seconds Plex stays down in the outage run")
    parser.add_argument("--breaker-reset", type=float, default=60.0, help="breaker_reset_seconds for the workers")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="s2p-chain-"))
    scenarios = args.scenario or ["normal"]
    if "fresh-scan" in scenarios:
        table = [run_fresh_scan(args, workdir, library) for library in args.library or [50_000, 100_000]]
        print_columns(f"bench_chain fresh-scan: dramatiq actors -p {args.processes} -t {args.threads}, "
                      "RabbitMQ with publisher confirms", FRESH_SCAN_COLUMNS, table)
        scenarios = [name for name in scenarios if name != "fresh-scan"]
        if not scenarios:
            return
    rows: list[tuple[str, str]] = []
    if "normal" in scenarios:
        noop_rate = bench_noop(args.scenes, args.processes, args.threads, workdir)
        rows.append((f"no-op 4-actor chain, {args.scenes} chains, confirms on", f"{noop_rate:,.0f} chains/s"))
    for scenario in scenarios:
        scenario_rows, rate = run_chain(args, workdir, scenario)
        rows += scenario_rows
        if scenario == "normal":
            rows.append(("normal chain / no-op chain", f"{rate / noop_rate:.0%}"))
    print_table(f"bench_chain: dramatiq actors -p {args.processes} -t {args.threads}, RabbitMQ with publisher confirms", rows)


def _depth(name: str) -> int:
    return queue_depth(explicit_settings(broker_url=BROKER_URL), name)


if __name__ == "__main__":
    main()
