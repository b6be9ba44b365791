"""The Plex metadata provider under a Plex-like load, every answer checked against Stash.

    python -m ops.bench.bench_provider [--scenes 20000] [--clients 8] [--requests 20000]

A Stash emulator (its own process) holds the scenes; `stash2plex provider` runs in its own process
with `path_map` set, builds its index, then 8 client threads with keep-alive connections send, as
Plex does (JSON, `Accept: application/json`, `X-Plex-Token`, `X-Plex-Language`):

    match (path)      POST /library/metadata/matches with the Plex-side path of a scene's file
    match (name)      the same, with a path under a folder Stash does not have (file-name step)
    metadata (cold)   GET /library/metadata/{id} of every scene once (documents built on first ask)
    metadata (warm)   GET /library/metadata/{id} again, random ids
    during a listing  the provider restarted from a snapshot whose full listing is 6 h old: it answers
                      from the snapshot while it lists every scene again in the background

Every match must name the right scene and every metadata answer must equal, field by field, what
the chain's mapping makes of the scene Stash serves; the Stash key must appear in no answer and in
no line the provider logged.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.bench.common import PLEX_TOKEN, ROOT, STASH_KEY, env_with, free_port, percentile, rss_mb, start_emulator, wait_until
from pipeline.config import explicit_settings
from pipeline.provider.documents import provider_view, scene_metadata
from pipeline.stash import StashClient

PLEX_ROOT = "/plex/Movies"
HEADERS = {"Accept": "application/json", "X-Plex-Token": PLEX_TOKEN, "X-Plex-Language": "en",
           "X-Plex-Client-Identifier": "bench-plex", "Content-Type": "application/json"}

Request = tuple[str, str, bytes | None, str]  # method, path, body, expected ratingKey


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    bodies: dict[str, bytes] = field(default_factory=dict)

    def row(self) -> str:
        ms = [v * 1000 for v in self.latencies]
        rate = len(ms) / self.seconds if self.seconds else 0.0
        return (f"| {self.name} | {len(ms):,} | {rate:,.0f} | {percentile(ms, 50):.1f} | {percentile(ms, 95):.1f} | "
                f"{percentile(ms, 99):.1f} | {self.errors} |")


def run_phase(name: str, port: int, requests: list[Request], clients: int, keep_bodies: bool = False) -> Phase:
    phase = Phase(name)
    lock = threading.Lock()
    shares = [requests[i::clients] for i in range(clients)]
    start_line = threading.Barrier(clients + 1)

    def client(share: list[Request]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies: list[float] = []
        errors = 0
        bodies: dict[str, bytes] = {}
        start_line.wait()
        for method, path, body, expected in share:
            started = time.perf_counter()
            try:
                connection.request(method, path, body=body, headers=HEADERS)
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            latencies.append(time.perf_counter() - started)
            items = json.loads(payload)["MediaContainer"]["Metadata"] if response.status == 200 else []
            if response.status != 200 or [item["ratingKey"] for item in items] != [expected]:
                errors += 1
            elif keep_bodies:
                bodies[expected] = payload
        connection.close()
        with lock:
            phase.latencies.extend(latencies)
            phase.errors += errors
            phase.bodies.update(bodies)

    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    start_line.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    phase.seconds = time.perf_counter() - started
    return phase


def match_request(filename: str, expected: str) -> Request:
    body = json.dumps({"type": 1, "title": "", "filename": filename, "includeAdult": 1}).encode()
    return ("POST", "/library/metadata/matches", body, expected)


def fields_differing(bodies: dict[str, bytes], stash_url: str, base: str) -> int:
    """How many scenes' answers differ from what the chain's mapping makes of Stash's scene."""
    settings = explicit_settings(stash_url=stash_url, stash_api_key=STASH_KEY)
    view = provider_view(settings)
    differ = 0
    for _total, page in StashClient(settings).iter_scene_pages(per_page=1000):
        for scene in page:
            answer = json.loads(bodies[scene.id])["MediaContainer"]["Metadata"][0] if scene.id in bodies else None
            if answer != scene_metadata(scene, view, base):
                differ += 1
    return differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per match / warm phase")
    args = parser.parse_args(argv)
    rng = random.Random(13)

    stash, stash_url = start_emulator("stash", args.scenes)
    work = Path(tempfile.mkdtemp(prefix="bench-provider-"))
    port = free_port()
    log_path = work / "provider.log"
    env = env_with({"STASH2PLEX_STASH_URL": stash_url, "STASH2PLEX_STASH_API_KEY": STASH_KEY,
                    "STASH2PLEX_DATA_DIR": str(work), "STASH2PLEX_PATH_MAP": f"/data/videos={PLEX_ROOT}",
                    "STASH2PLEX_LOG_LEVEL": "DEBUG"})
    provider = start_provider(env, port, log_path)
    try:
        started = time.perf_counter()
        if not wait_until(lambda: _health(port).get("built") is True, timeout=600, interval=0.2):
            raise RuntimeError(f"the provider did not build its index; see {log_path}")
        build_seconds = time.perf_counter() - started
        ids = [str(i) for i in range(1, args.scenes + 1)]
        picks = [rng.choice(ids) for _ in range(args.requests)]
        phases = [
            run_phase("match (Plex path, path_map reversed)", port,
                      [match_request(f"{PLEX_ROOT}/scene_{int(i):06d}.mp4", i) for i in picks], args.clients),
            run_phase("match (file name, unknown folders)", port,
                      [match_request(f"/elsewhere/disk2/scene_{int(i):06d}.mp4", i) for i in picks], args.clients),
            run_phase("metadata (cold: every scene once)", port,
                      [("GET", f"/library/metadata/{i}", None, i) for i in rng.sample(ids, len(ids))], args.clients,
                      keep_bodies=True),
            run_phase("metadata (warm, random ids)", port,
                      [("GET", f"/library/metadata/{i}", None, i) for i in picks], args.clients),
        ]
        provider_rss = rss_mb(provider.pid)
        differ = fields_differing(phases[2].bodies, stash_url, f"http://127.0.0.1:{port}")
        leaked_answers = sum(STASH_KEY.encode() in body for body in phases[2].bodies.values())

        # Restart from a snapshot whose full listing is 6 h old: answers come from the snapshot at once
        # while the full listing runs in the background (and every document is cold again).
        stop_provider(provider)
        with sqlite3.connect(work / "provider.db") as db:
            db.execute("UPDATE meta SET value = '1' WHERE key = 'built_at'")
        restarted = time.perf_counter()
        provider = start_provider(env, port, log_path)
        if not wait_until(lambda: _health(port).get("status") == "ok", timeout=120, interval=0.05):
            raise RuntimeError(f"the provider did not restart; see {log_path}")
        first_answer = time.perf_counter() - restarted
        phase_started = time.perf_counter()
        during = run_phase("metadata during a full listing (restart, cold)", port,
                           [("GET", f"/library/metadata/{i}", None, i) for i in picks], args.clients)
        phases.append(during)
        age = _health(port).get("last_refresh_age_seconds")
        rebuild_done = None if age is None else time.perf_counter() - float(age) - restarted
        overlap = (during.seconds if rebuild_done is None
                   else max(0.0, min(rebuild_done + restarted - phase_started, during.seconds)))
    finally:
        stop_provider(provider)
        stash.terminate()
        stash.wait(timeout=30)
    logged = log_path.read_text(errors="replace")

    print(f"\nprovider over {args.scenes:,} Stash scenes, {args.clients} concurrent keep-alive clients "
          f"(client threads, provider and Stash emulator share this machine's cores)")
    print("| phase | requests | req/s | p50 ms | p95 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for phase in phases:
        print(phase.row())
    print(f"\nindex build (full listing of {args.scenes:,} scenes from the emulator): {build_seconds:.1f} s; "
          f"provider RSS after the run: {provider_rss:.0f} MB")
    print(f"restart from the snapshot: first answer {first_answer:.1f} s after start; the background full listing "
          f"{'was still running at the end' if rebuild_done is None else f'finished {rebuild_done:.1f} s after start'}, "
          f"overlapping {overlap:.1f} of the {during.seconds:.1f} s of the last phase")
    print(f"metadata answers differing from Stash (chain mapping): {differ} of {args.scenes:,}")
    print(f"answers holding the Stash key: {leaked_answers}; provider log lines holding it: "
          f"{sum(STASH_KEY in line for line in logged.splitlines())}")
    failed = differ or leaked_answers or STASH_KEY in logged or any(p.errors for p in phases)
    return 1 if failed else 0


def start_provider(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """`stash2plex provider` in its own process, logging to `log_path` (appended)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([str(Path(sys.executable).with_name("stash2plex")), "provider", "--host", "127.0.0.1",
                                 "--port", str(port)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_provider(provider: subprocess.Popen[bytes]) -> None:
    if provider.poll() is None:
        provider.send_signal(signal.SIGTERM)
        provider.wait(timeout=30)


def _health(port: int) -> dict[str, Any]:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/healthz")
        payload: dict[str, Any] = json.loads(connection.getresponse().read())
        connection.close()
        return payload
    except (OSError, ValueError, http.client.HTTPException):
        return {}


if __name__ == "__main__":
    sys.exit(main())
