"""No loss through a RabbitMQ outage: N hook runs (as Stash runs them) with RabbitMQ stopped for the middle third.

    python -m ops.bench.bench_hook_outage [--runs 1000]

The hook spools to disk while RabbitMQ is down; the next runs flush the spool. The workers
(`dramatiq actors -p 2 -t 4`) sync every scene into the Plex emulator. Prints a table: spooled events,
hook time while up and while down, and how many of the N scenes reached Plex.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

from ops.bench.bench_chain import BROKER_URL, _depth, dramatiq_workers, stop
from ops.bench.common import PLEX_TOKEN, emulator_env, percentile, print_table, start_emulator, wait_until
from pipeline.config import explicit_settings
from pipeline.rabbit import delete_queues as delete_prefix_queues
from plugin.install import install_plugin
from plugin.spool import pending_count
from tests.emulators.sample_data import make_dataset


def hook_payload(plugin_dir: Path, scene_id: int) -> bytes:
    return json.dumps({
        "server_connection": {"Scheme": "http", "Host": "0.0.0.0", "Port": 9999, "PluginDir": str(plugin_dir)},
        "args": {"mode": "hook", "hookContext": {"id": scene_id, "type": "Scene.Update.Post",
                                                  "input": {"id": str(scene_id), "title": "edited"},
                                                  "inputFields": ["id", "title"]}},
    }).encode()


def plex_titles(plex_url: str, rating_keys: list[int]) -> dict[int, str]:
    """Titles of many items, 100 per request, parsed from the emulator's XML."""
    import xml.etree.ElementTree as ET

    titles: dict[int, str] = {}
    for start in range(0, len(rating_keys), 100):
        keys = ",".join(map(str, rating_keys[start:start + 100]))
        root = ET.fromstring(requests.get(f"{plex_url}/library/metadata/{keys}", headers={"X-Plex-Token": PLEX_TOKEN}).content)
        titles.update({int(v.get("ratingKey")): v.get("title", "") for v in root})
    return titles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="s2p-hook-outage-"))
    prefix = f"hookout{uuid.uuid4().hex[:6]}"
    data = make_dataset(args.runs)
    expected = {1000 + int(s["id"]): s["title"] for s in data.scenes}
    plex_proc, plex_url = start_emulator("plex", args.runs)
    stash_proc, stash_url = start_emulator("stash", args.runs)
    env = emulator_env(plex_url, stash_url, workdir / "worker-data", queue_prefix=prefix, broker_url=BROKER_URL)
    env.update({"dramatiq_prom_db": str(workdir / "prom"), "dramatiq_prom_port": "0"})
    worker = dramatiq_workers("actors", env, 2, 4, workdir / "worker.log")
    hook_data = workdir / "hook-data"
    plugin_dir = install_plugin(workdir / "plugins", python=Path(sys.executable), broker_url=BROKER_URL,
                                queue_prefix=prefix, data_dir=hook_data)
    entry = plugin_dir / "stash2plex_entry.py"
    down_from, down_to = args.runs // 3, 2 * args.runs // 3
    times_up: list[float] = []
    times_down: list[float] = []
    errors = 0
    max_spooled = 0
    try:
        for n in range(1, args.runs + 1):
            if n == down_from + 1:
                subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True)
            if n == down_to + 1:
                subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True)
                subprocess.run(["rabbitmqctl", "await_startup"], capture_output=True)
            started = time.perf_counter()
            run = subprocess.run([sys.executable, str(entry)], input=hook_payload(plugin_dir, n), capture_output=True)
            elapsed = (time.perf_counter() - started) * 1000
            (times_down if down_from < n <= down_to else times_up).append(elapsed)
            result = json.loads(run.stdout or b"{}")
            errors += 1 if result.get("error") else 0
            max_spooled = max(max_spooled, pending_count(hook_data))
        spooled_left = pending_count(hook_data)
        all_synced = wait_until(lambda: plex_titles(plex_url, list(expected)) == expected, timeout=300, interval=1.0)
        titles = plex_titles(plex_url, list(expected))
        synced = sum(1 for key, title in expected.items() if titles.get(key) == title)
        rows = [
            ("hook runs (RabbitMQ stopped for runs %d-%d)" % (down_from + 1, down_to), f"{args.runs}"),
            ("hook runs answering an error", str(errors)),
            ("most events in the spool at once", str(max_spooled)),
            ("events left in the spool at the end", str(spooled_left)),
            ("hook whole process p50 / p95 with RabbitMQ up", f"{percentile(times_up, 50):.0f} / {percentile(times_up, 95):.0f} ms"),
            ("hook whole process p50 / p95 with RabbitMQ down (spooling)", f"{percentile(times_down, 50):.0f} / {percentile(times_down, 95):.0f} ms"),
            ("scenes that reached Plex", f"{synced} of {args.runs}{'' if all_synced else ' (NOT ALL)'}"),
            ("DLQ entries", str(_depth(f"{prefix}.dlq"))),
        ]
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], capture_output=True)
        stop(worker)
        for proc in (plex_proc, stash_proc):
            proc.terminate()
            proc.wait(timeout=10)
        delete_prefix_queues(explicit_settings(broker_url=BROKER_URL, queue_prefix=prefix))
    print_table("bench_hook_outage: the Stash hook through a RabbitMQ outage", rows)


if __name__ == "__main__":
    main()
