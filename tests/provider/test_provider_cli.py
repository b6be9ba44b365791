"""`stash2plex provider --host H --port P` as an operator (or compose) starts it, and its healthcheck."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import ROOT, STASH_KEY, wait_for
from tests.emulators.http_base import free_port

CLI = str(Path(sys.executable).with_name("stash2plex"))


def clean_env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("STASH2PLEX_")}
    return {**base, "PYTHONPATH": str(ROOT), **extra}


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_provider_command_serves_plex_and_stops_cleanly_on_sigterm(stash, tmp_path):
    port = free_port()
    env = clean_env(STASH2PLEX_STASH_URL=stash.url, STASH2PLEX_STASH_API_KEY=STASH_KEY, STASH2PLEX_DATA_DIR=str(tmp_path))
    proc = subprocess.Popen([CLI, "provider", "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/"), timeout=30, message="the provider to answer")
        root = requests.get(f"http://127.0.0.1:{port}/", headers={"Accept": "application/json"}, timeout=5).json()
        assert root["MediaProvider"]["identifier"] == "tv.plex.agents.custom.stash2plex"
        health = subprocess.run([sys.executable, "-m", "ops.healthcheck", "provider"], cwd=ROOT, capture_output=True,
                                text=True, timeout=60, env=clean_env(STASH2PLEX_PROVIDER_PORT=str(port)))
        assert health.returncode == 0 and "healthy" in health.stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert f"http://127.0.0.1:{port}" in out + err
    assert STASH_KEY not in out + err
    assert (tmp_path / "provider.db").exists()


def test_provider_healthcheck_fails_when_nothing_answers():
    result = subprocess.run([sys.executable, "-m", "ops.healthcheck", "provider"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env=clean_env(STASH2PLEX_PROVIDER_PORT=str(free_port())))
    assert result.returncode == 1 and "provider" in result.stdout


def test_a_busy_port_is_one_error_line_with_a_fix_and_exit_code_2(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([CLI, "provider", "--port", str(port)], cwd=ROOT, capture_output=True, text=True,
                                timeout=60, env=clean_env(STASH2PLEX_DATA_DIR=str(tmp_path),
                                                          STASH2PLEX_STASH_URL="http://127.0.0.1:9"))
    assert result.returncode == 2
    assert f"error: cannot listen on 127.0.0.1:{port}" in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.stderr
