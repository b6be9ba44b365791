"""`stash2plex worker` (wraps `dramatiq actors`) and `stash2plex plugin install`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.cli.conftest import CLI, plex_item_for, run_cli
from tests.conftest import ROOT, stop_process_group, wait_for


@pytest.fixture
def worker_command(env, tmp_path):
    """Start `stash2plex worker -p 1 -t 2` in its own process group; stopped at the end."""
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        full = {**{k: v for k, v in os.environ.items() if not k.startswith("STASH2PLEX_")}, **env,
                "PYTHONPATH": str(ROOT)}
        with open(tmp_path / "worker-cli.log", "wb") as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen([*CLI, "worker", "--processes", "1", "--threads", "2"], env=full, cwd=ROOT,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_process_group(proc)


@pytest.mark.rabbitmq
def test_worker_clears_the_metrics_dir_and_runs_the_actors(worker_command, cli, env, plex, dataset, tmp_path):
    stale = tmp_path / "prom" / "counter_12345.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over by a dead worker")
    worker_command()
    wait_for(lambda: not stale.exists(), timeout=20, message="the stale metrics file removed")
    result = cli("sync", "--scene", "3", "--wait", "--timeout", "60")
    assert result.returncode == 0, result.output + (tmp_path / "worker-cli.log").read_text()
    assert plex_item_for(plex, dataset.scenes[2])["title"] == dataset.scenes[2]["title"]


def test_worker_refuses_the_stub_broker_naming_broker_url(cli):
    result = cli("worker", STASH2PLEX_BROKER_URL="stub://")
    assert result.returncode == 2 and "broker_url" in result.stderr


def test_plugin_install_writes_the_plugin_folder_for_stash(tmp_path):
    pytest.importorskip("plugin.install", reason="plugin/install.py is written by another engineer")
    target = tmp_path / "stash-plugins"
    result = run_cli(["plugin", "install", "--stash-plugins-dir", str(target), "--queue-prefix", "tplugin",
                      "--broker-url", "amqp://guest:guest@127.0.0.1:5672/"], {})
    assert result.returncode == 0, result.output
    folder = target / "stash2plex"
    assert (folder / "stash2plex.yml").is_file() and (folder / "stash2plex_entry.py").is_file()
    hook = json.loads((folder / "stash2plex.hook.json").read_text())
    assert hook["queue_prefix"] == "tplugin"
    assert sys.executable in (folder / "stash2plex.yml").read_text() or os.path.abspath(sys.executable) in (folder / "stash2plex.yml").read_text()
    assert "Installed the stash2plex plugin" in result.stdout
