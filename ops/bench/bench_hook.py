"""Benchmark the Stash hook as Stash runs it: a whole process per scene edit, RabbitMQ up.

Installs the plugin into a temporary Stash plugins folder (unique queue prefix), then runs the
manifest's `exec` (the venv interpreter by absolute path + the installed entry script) with a hook
payload on stdin, and prints:

- whole process p50 / p95 / max (wall time of the subprocess, as Stash waits for it);
- handler p50 / p95: the hook's own time from reading stdin to its answer (`output.handler_ms`);
- import time: the hook's imports in-process (`output.import_ms`) and a `-X importtime` summary;
- interpreter startup (`python -c pass`) for reference;
- a 100-run bulk edit (Stash runs one process per scene, each with the whole input) and
  100 single edits, total seconds.

Every published message is counted on the queue and the queues are deleted at the end.
Usage: `.venv/bin/python ops/bench/bench_hook.py [--runs 50] [--bulk 100]`. Exit 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from plugin.install import install_plugin, read_manifest_exec  # noqa: E402

BROKER_URL = os.environ.get("STASH2PLEX_BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
TARGETS = {"whole_p50": 100.0, "whole_p95": 150.0, "handler_p50": 15.0, "bulk_s": 10.0}


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def payload(plugin_dir: Path, context: dict[str, Any]) -> bytes:
    return json.dumps({
        "server_connection": {"Scheme": "http", "Host": "0.0.0.0", "Port": 9999, "Dir": "/root/.stash",
                              "SessionCookie": {"Name": "session", "Value": "bench"},
                              "PluginDir": str(plugin_dir)},
        "args": {"mode": "hook", "hookContext": context},
    }).encode()


def single_edit(scene_id: int) -> dict[str, Any]:
    return {"id": scene_id, "type": "Scene.Update.Post",
            "input": {"id": str(scene_id), "title": f"Scene {scene_id}", "tag_ids": ["3", "9"]},
            "inputFields": ["id", "title", "tag_ids"]}


def stash_env() -> dict[str, str]:
    """Stash's child environment: ours without STASH2PLEX_* overrides (the hook reads its hook.json)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STASH2PLEX_")}


def run_hook(argv: list[str], stdin: bytes, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """One hook process; returns (wall ms, output). Raises if the hook reported an error."""
    started = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=env, cwd=tempfile.gettempdir(), timeout=30)
    wall_ms = (time.perf_counter() - started) * 1000
    result = json.loads(proc.stdout)
    if proc.returncode != 0 or result["error"] is not None or result["output"]["spooled"]:
        raise RuntimeError(f"hook run failed: rc={proc.returncode} {result} {proc.stderr.decode()!r}")
    return wall_ms, result["output"]


def importtime_summary(argv: list[str], stdin: bytes, env: dict[str, str], repeats: int = 5) -> tuple[float, str]:
    """Median cumulative ms of the modules the entry script imports itself.

    `-X importtime` rows are `import time: <self us> | <cumulative us> | <indent><module>`; top-level
    rows (one space of indent) after `site` are the entry's own imports, their cumulative time
    includes everything they pulled in.
    """
    totals: list[float] = []
    names: list[str] = []
    for _ in range(repeats):
        proc = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], input=stdin, capture_output=True,
                              env=env, cwd=tempfile.gettempdir(), timeout=30)
        top: list[tuple[str, int]] = []
        for line in proc.stderr.decode().splitlines():
            parts = line.split("|")
            if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
                continue
            column = parts[2]
            if len(column) - len(column.lstrip()) == 1:
                top.append((column.strip(), int(parts[1])))
        module_names = [name for name, _ in top]
        own = top[module_names.index("site") + 1:] if "site" in module_names else top
        totals.append(sum(us for _, us in own) / 1000)
        names = [name for name, _ in own]
    return statistics.median(totals), ", ".join(names)


def count_and_delete(prefix: str) -> int:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    try:
        channel = connection.channel()
        queue = f"{prefix}.fetch_scene"
        count = channel.queue_declare(queue, passive=True).method.message_count
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(f"{queue}{suffix}")
        return int(count)
    finally:
        connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--bulk", type=int, default=100)
    args = parser.parse_args(argv)

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    env = stash_env()
    with tempfile.TemporaryDirectory(prefix="stash2plex-bench-") as tmp:
        plugin_dir = install_plugin(Path(tmp) / "plugins", Path(sys.executable), BROKER_URL, prefix, Path(tmp) / "data")
        hook_argv = [word.replace("{pluginDir}", str(plugin_dir)) for word in read_manifest_exec(plugin_dir / "stash2plex.yml")]
        expected = 0
        try:
            for warmup in range(3):
                run_hook(hook_argv, payload(plugin_dir, single_edit(900000 + warmup)), env)
                expected += 1

            wall: list[float] = []
            handler: list[float] = []
            imports: list[float] = []
            for i in range(args.runs):
                ms, output = run_hook(hook_argv, payload(plugin_dir, single_edit(1 + i)), env)
                wall.append(ms)
                handler.append(output["handler_ms"])
                imports.append(output["import_ms"])
                expected += 1

            startup = []
            for _ in range(10):
                started = time.perf_counter()
                subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
                startup.append((time.perf_counter() - started) * 1000)
            importtime_ms, imported = importtime_summary(hook_argv, payload(plugin_dir, single_edit(800000)), env)
            expected += 5

            bulk_ids = [str(10000 + i) for i in range(args.bulk)]
            bulk_input = {"ids": bulk_ids, "tag_ids": {"ids": ["5"], "mode": "ADD"}}
            started = time.perf_counter()
            for scene_id in bulk_ids:  # what Stash does for a bulk edit: one process per scene
                run_hook(hook_argv, payload(plugin_dir, {"id": int(scene_id), "type": "Scene.Update.Post",
                                                         "input": bulk_input, "inputFields": ["ids", "tag_ids"]}), env)
            bulk_s = time.perf_counter() - started
            expected += args.bulk

            started = time.perf_counter()
            for i in range(args.bulk):
                run_hook(hook_argv, payload(plugin_dir, single_edit(20000 + i)), env)
            singles_s = time.perf_counter() - started
            expected += args.bulk
        finally:
            delivered = count_and_delete(prefix)

    rows = [
        ("whole process p50", f"{percentile(wall, 50):.1f} ms", f"<= {TARGETS['whole_p50']:.0f} ms",
         percentile(wall, 50) <= TARGETS["whole_p50"]),
        ("whole process p95", f"{percentile(wall, 95):.1f} ms", f"<= {TARGETS['whole_p95']:.0f} ms",
         percentile(wall, 95) <= TARGETS["whole_p95"]),
        ("whole process max", f"{max(wall):.1f} ms", "", None),
        ("handler p50 (stdin -> answer, in-process)", f"{percentile(handler, 50):.2f} ms",
         f"<= {TARGETS['handler_p50']:.0f} ms", percentile(handler, 50) <= TARGETS["handler_p50"]),
        ("handler p95", f"{percentile(handler, 95):.2f} ms", "", None),
        ("hook imports p50 (in-process, entry start -> plugin.hook loaded)", f"{percentile(imports, 50):.2f} ms", "", None),
        ("hook imports (-X importtime, cumulative, median of 5)", f"{importtime_ms:.2f} ms", "", None),
        ("interpreter startup (python -c pass) p50", f"{percentile(startup, 50):.1f} ms", "", None),
        (f"bulk edit: {args.bulk} runs as Stash runs them (lead run publishes the batch)", f"{bulk_s:.2f} s",
         f"<= {TARGETS['bulk_s']:.0f} s", bulk_s <= TARGETS["bulk_s"]),
        (f"{args.bulk} single edits (each run publishes)", f"{singles_s:.2f} s",
         f"<= {TARGETS['bulk_s']:.0f} s", singles_s <= TARGETS["bulk_s"]),
        ("messages delivered / expected", f"{delivered} / {expected}", "equal", delivered == expected),
    ]
    width = max(len(name) for name, *_ in rows)
    print(f"stash2plex hook benchmark: {args.runs} runs, {sys.executable}, RabbitMQ {BROKER_URL.split('@')[-1]}")
    print(f"{'measure':<{width}}  {'value':>12}  {'target':<10}  ok")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 10}  --")
    for name, value, target, ok in rows:
        print(f"{name:<{width}}  {value:>12}  {target:<10}  {'' if ok is None else ('yes' if ok else 'NO')}")
    print(f"modules the entry imports itself: {imported}")
    return 0 if all(ok is not False for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
