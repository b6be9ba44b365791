"""Helpers shared by the benchmarks: emulator processes, tables, the project root on sys.path."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PLEX_TOKEN = "bench-plex-token-0123456789"
STASH_KEY = "bench-stash-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_emulator(kind: str, count: int, extra: list[str] | None = None,
                   fixture: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Run `python -m tests.emulators.<kind>` with a generated library of `count` (or `fixture`, a JSON
    file in the emulator's `--fixture` shape); returns (process, url). SIGUSR1 toggles it down/up."""
    port = free_port()
    size_flag = "--items" if kind == "plex" else "--scenes"
    data = ["--fixture", str(fixture)] if fixture is not None else [size_flag, str(count)]
    auth = ["--token", PLEX_TOKEN] if kind == "plex" else ["--api-key", STASH_KEY]
    proc = subprocess.Popen([sys.executable, "-m", f"tests.emulators.{kind}", "--port", str(port), *data,
                             *auth, *(extra or [])], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if "listening" not in line:
        raise RuntimeError(f"{kind} emulator did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}"


def emulator_env(plex_url: str, stash_url: str, data_dir: Path, **extra: object) -> dict[str, str]:
    env = {
        "STASH2PLEX_PLEX_URL": plex_url, "STASH2PLEX_PLEX_TOKEN": PLEX_TOKEN,
        "STASH2PLEX_STASH_URL": stash_url, "STASH2PLEX_STASH_API_KEY": STASH_KEY,
        "STASH2PLEX_DATA_DIR": str(data_dir),
    }
    env.update({f"STASH2PLEX_{k.upper()}": str(v) for k, v in extra.items()})
    return env


def scrape_metrics(port: int) -> str:
    """The workers' Prometheus exporter page on `port` ("" when it does not answer)."""
    import requests

    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return ""


def metric_sum(metrics: str, name: str, *labels: str) -> float:
    """The sum of a metric's samples whose labels include every one of `labels` (0 when absent)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith((name + "{", name + " ")) and all(label in line for label in labels))


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_until(condition, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def env_with(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **extra, "PYTHONPATH": str(ROOT)}
