"""Helpers for the plugin tests: run the entry script exactly as Stash does, read RabbitMQ with pika.

Stash runs `exec` as a subprocess (here: the venv interpreter by absolute path, `sys.executable`),
writes one JSON document on stdin, reads `{"output", "error"}` from stdout and parses stderr lines
`\\x01<level>\\x02message`. `run_entry` does the same and fails the test on any stderr line without
that prefix (a traceback would be one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENTRY = PROJECT_ROOT / "plugin" / "stash2plex_entry.py"
PYTHON = os.path.abspath(sys.executable)
from tests.conftest import RABBIT_URL, drain_queue  # noqa: E402,F401 - shared with every suite
LEVELS = set("tdiwep")


@dataclass
class EntryRun:
    """One finished plugin process: exit code, parsed stdout document, parsed stderr lines, wall time."""

    returncode: int
    result: dict[str, Any]
    logs: list[tuple[str, str]]
    stdout: str
    stderr: str
    elapsed: float

    @property
    def output(self) -> Any:
        return self.result["output"]

    @property
    def error(self) -> str | None:
        return self.result["error"]

    def messages(self, level: str) -> list[str]:
        return [message for lvl, message in self.logs if lvl == level]


def hook_payload(plugin_dir: Path | None, hook_context: dict[str, Any] | None, **args: Any) -> dict[str, Any]:
    """The JSON Stash writes on stdin for a hook run."""
    connection: dict[str, Any] = {
        "Scheme": "http", "Host": "0.0.0.0", "Port": 9999,
        "SessionCookie": {"Name": "session", "Value": "MTcw-test"}, "Dir": "/root/.stash",
    }
    if plugin_dir is not None:
        connection["PluginDir"] = str(plugin_dir)
    payload_args: dict[str, Any] = {"mode": "hook", **args}
    if hook_context is not None:
        payload_args["hookContext"] = hook_context
    return {"server_connection": connection, "args": payload_args}


def update_context(scene_id: int | str, **extra: Any) -> dict[str, Any]:
    """hookContext of a single `sceneUpdate`."""
    context: dict[str, Any] = {
        "id": int(scene_id), "type": "Scene.Update.Post",
        "input": {"id": str(scene_id), "title": "New title"}, "inputFields": ["title", "id"],
    }
    context.update(extra)
    return context


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment of a Stash child process: ours without STASH2PLEX_* settings, plus overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STASH2PLEX_")}
    env.update(overrides)
    return env


def run_entry(
    stdin: dict[str, Any] | bytes | str,
    *,
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> EntryRun:
    """Run the plugin like Stash: `argv` (default: venv python + source entry), JSON on stdin."""
    if isinstance(stdin, dict):
        data = json.dumps(stdin).encode()
    elif isinstance(stdin, str):
        data = stdin.encode()
    else:
        data = stdin
    command = argv or [PYTHON, str(ENTRY)]
    started = time.perf_counter()
    proc = subprocess.run(command, input=data, capture_output=True, env=env if env is not None else clean_env(),
                          cwd=tempfile.gettempdir(), timeout=timeout)
    elapsed = time.perf_counter() - started
    stdout = proc.stdout.decode()
    stderr = proc.stderr.decode()
    documents = [line for line in stdout.splitlines() if line.strip()]
    assert len(documents) == 1, f"expected one JSON document on stdout, got {stdout!r} (stderr {stderr!r})"
    result = json.loads(documents[0])
    assert set(result) == {"output", "error"}, result
    logs: list[tuple[str, str]] = []
    for line in stderr.splitlines():
        if not line:
            continue
        assert len(line) >= 2 and line[0] == "\x01" and line[1] in LEVELS and line[2:3] == "\x02", \
            f"stderr line without the Stash log prefix (a traceback?): {line!r}"
        logs.append((line[1], line[3:]))
    return EntryRun(proc.returncode, result, logs, stdout, stderr, elapsed)


def write_hook_json(plugin_dir: Path, **values: str) -> None:
    plugin_dir.mkdir(parents=True, exist_ok=True)
    (plugin_dir / "stash2plex.hook.json").write_text(json.dumps(values))


def delete_queues(prefix: str) -> None:
    """Delete the fetch_scene queues of a test prefix (main, delay and dead-letter)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(RABBIT_URL))
    try:
        channel = connection.channel()
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(f"{prefix}.fetch_scene{suffix}")
    finally:
        connection.close()


def scene_args(messages: list[tuple[Any, bytes]]) -> list[list[str]]:
    """The `args` of each message body."""
    return [json.loads(body)["args"] for _, body in messages]


def spool_lines(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "hook-spool.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
