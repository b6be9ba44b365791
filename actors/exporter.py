"""`WorkerMetrics`: the workers' Prometheus exporter, on `metrics_host`:`metrics_port` from the settings.

dramatiq's own `Prometheus` middleware forks an exporter from `dramatiq actors`' main process, which
never reads our settings (only `dramatiq_prom_port`, and a busy port kills it silently). This
subclass keeps dramatiq's `dramatiq_*` series and changes three things:

* the exporter is `serve_metrics` below: dramatiq imports it by name in its fork process, so it
  imports `actors` and binds where the settings say; a busy port is logged as an error;
* metric files go to a folder of this run, `<dramatiq_prom_db>/run-<main pid>`, and only dramatiq
  worker processes write them: a process becomes multiprocess-aware in `after_process_boot`, which
  only dramatiq's worker processes run (the CLI, the plugin tasks and the tests keep their metrics in
  memory and leave no file, so no `{pid}` series);
* dead processes disappear: folders of runs whose main process is gone are removed when a run
  starts, and at every scrape the files of worker processes that died (SIGKILL included) are dropped
  (`mark_process_dead`), so a restarted worker shows its true breaker state.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Any

import dramatiq
import dramatiq.middleware.prometheus as dramatiq_prometheus
from dramatiq.middleware.prometheus import Prometheus

from pipeline.logs import log_event, setup_logging

if TYPE_CHECKING:
    from pipeline.config import Settings

logger = logging.getLogger("stash2plex.metrics")
RUN_PREFIX = "run-"
PID_IN_FILE = re.compile(r"_(\d+)\.db$")


def base_dir() -> str:
    """The multiprocess metrics folder (env `dramatiq_prom_db`); each run has its own folder inside it."""
    from actors.broker import prometheus_db

    return prometheus_db()


def run_dir(main_pid: int) -> str:
    return os.path.join(base_dir(), f"{RUN_PREFIX}{main_pid}")


def pid_alive(pid: int) -> bool:
    """True while process `pid` runs (a zombie, killed but not yet reaped, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return os.path.exists(f"/proc/{pid}") or not os.path.isdir("/proc")


def remove_dead_runs(base: str) -> list[str]:
    """Delete the folders of runs whose main process is gone (and files of the old, single-folder layout)."""
    removed = []
    for entry in glob.glob(os.path.join(base, "*")):
        name = os.path.basename(entry)
        if name.startswith(RUN_PREFIX) and name[len(RUN_PREFIX):].isdigit():
            if not pid_alive(int(name[len(RUN_PREFIX):])):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        elif name.endswith(".db"):
            with contextlib.suppress(FileNotFoundError):  # another worker of this run may remove it first
                os.remove(entry)
                removed.append(entry)
    return removed


def mark_dead_processes(path: str) -> list[int]:
    """`mark_process_dead` for every process with metric files in `path` that no longer runs."""
    from prometheus_client import multiprocess

    pids = {int(m.group(1)) for f in os.listdir(path) if (m := PID_IN_FILE.search(f))}
    dead = sorted(pid for pid in pids if not pid_alive(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)
    return dead


def use_run_dir(main_pid: int) -> str:
    """Make this process write its metrics to the run's folder; must run before prometheus_client is imported."""
    path = run_dir(main_pid)
    os.makedirs(path, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.environ["prometheus_multiproc_dir"] = path
    dramatiq_prometheus.DB_PATH = path  # dramatiq's middleware reads and marks its files there
    return path


class WorkerMetrics(Prometheus):
    """dramatiq's `dramatiq_*` metrics and ours, exported by `serve_metrics` (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    @property
    def forks(self) -> list[Any]:
        return [serve_metrics] if self.settings.metrics_port else []

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        main_pid = os.getppid()  # dramatiq's main process: the same for every worker and the exporter of a run
        remove_dead_runs(base_dir())
        use_run_dir(main_pid)
        super().after_process_boot(broker)
        from actors import metrics

        metrics.initialise()


class MetricsHandler(BaseHTTPRequestHandler):
    path_of_run = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        import prometheus_client
        from prometheus_client import multiprocess

        mark_dead_processes(self.path_of_run)
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.path_of_run)
        body = prometheus_client.generate_latest(registry)
        self.send_response(200)
        self.send_header("Content-Type", prometheus_client.CONTENT_TYPE_LATEST)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        logger.debug(format, *args)


def serve_metrics() -> int:
    """dramatiq's fork process: serve this run's metrics on `metrics_host`:`metrics_port` until stopped."""
    from actors import runtime  # the settings of `dramatiq actors` (environment and TOML file)

    settings = runtime.settings
    setup_logging("DEBUG" if settings.debug_logging else settings.log_level)  # like the workers (actors/boot.py)
    MetricsHandler.path_of_run = use_run_dir(os.getppid())
    try:
        server = HTTPServer((settings.metrics_host, settings.metrics_port), MetricsHandler)
    except OSError as exc:
        log_event(logger, "metrics_exporter_failed", level=logging.ERROR, host=settings.metrics_host,
                  port=settings.metrics_port, error=f"{type(exc).__name__}: {exc.strerror or exc}",
                  fix="free the port or set STASH2PLEX_METRICS_PORT to another one (the workers keep running)")
        return 1
    log_event(logger, "metrics_exporter_started", host=settings.metrics_host, port=settings.metrics_port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
