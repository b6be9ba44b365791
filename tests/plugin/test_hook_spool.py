"""No loss: when RabbitMQ cannot take the event, the hook spools it and the next run publishes it."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugin.conftest import PluginFolder
from tests.plugin.helpers import (
    ENTRY,
    PYTHON,
    RABBIT_URL,
    clean_env,
    drain_queue,
    hook_payload,
    run_entry,
    scene_args,
    spool_lines,
    update_context,
)

pytestmark = pytest.mark.rabbitmq


def _down(folder: PluginFolder, port: int) -> None:
    folder.configure(broker_url=f"amqp://guest:guest@127.0.0.1:{port}/")


def test_unreachable_broker_spools_the_event_and_succeeds(plugin_folder: PluginFolder, closed_port: int) -> None:
    _down(plugin_folder, closed_port)
    run = run_entry(hook_payload(plugin_folder.path, update_context(45)))

    assert run.returncode == 0 and run.error is None
    assert run.output["spooled"] == ["45"] and run.output["queued"] == []
    [warning] = run.messages("w")
    assert warning.startswith("[stash2plex hook]") and "spooled scene 45" in warning and " ms" in warning
    [line] = spool_lines(plugin_folder.data_dir)
    assert line["scene_id"] == "45" and line["event"] == "Scene.Update.Post" and isinstance(line["ts"], float)


def test_next_run_with_the_broker_up_flushes_the_spool(plugin_folder: PluginFolder, closed_port: int) -> None:
    _down(plugin_folder, closed_port)
    run_entry(hook_payload(plugin_folder.path, update_context(45)))
    plugin_folder.configure()  # broker back
    run = run_entry(hook_payload(plugin_folder.path, update_context(46)))

    assert run.returncode == 0 and run.output["flushed"] == 1 and run.output["queued"] == ["46"]
    assert sorted(scene_args(drain_queue(plugin_folder.queue))) == [["45", "Scene.Update.Post"],
                                                                    ["46", "Scene.Update.Post"]]
    assert spool_lines(plugin_folder.data_dir) == []


def test_corrupt_spool_line_is_skipped_with_one_log_line(plugin_folder: PluginFolder) -> None:
    plugin_folder.data_dir.mkdir(parents=True)
    (plugin_folder.data_dir / "hook-spool.jsonl").write_text(
        '{"scene_id": "21", "event": "Scene.Update.Post", "ts": 1.0}\n'
        '{not json at all\n'
        '{"scene_id": 0, "event": "Scene.Update.Post", "ts": 1.0}\n')
    run = run_entry(hook_payload(plugin_folder.path, update_context(22)))

    assert run.returncode == 0 and run.error is None
    corrupt = [m for m in run.messages("w") if "corrupt spool line" in m]
    assert len(corrupt) == 2 and "line 2" in corrupt[0] and "line 3" in corrupt[1]
    assert all(m.startswith("[stash2plex hook] skipped corrupt spool line") for m in corrupt)
    assert sorted(args[0] for args in scene_args(drain_queue(plugin_folder.queue))) == ["21", "22"]
    assert spool_lines(plugin_folder.data_dir) == []
    assert len((plugin_folder.data_dir / "hook-spool.rejected.jsonl").read_text().splitlines()) == 2


def test_concurrent_spooling_hooks_write_whole_lines(plugin_folder: PluginFolder, closed_port: int) -> None:
    _down(plugin_folder, closed_port)
    batches = [[str(1000 * (n + 1) + i) for i in range(150)] for n in range(4)]
    procs = []
    for ids in batches:  # bulk inputs without hookContext.id: each process spools 150 lines
        context = {"type": "Scene.Update.Post", "input": {"ids": ids}, "inputFields": ["ids"]}
        proc = subprocess.Popen([PYTHON, str(ENTRY)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=clean_env())
        procs.append((proc, json.dumps(hook_payload(plugin_folder.path, context)).encode()))
    for proc, data in procs:
        proc.stdin.write(data)  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
    for proc, _ in procs:
        proc.wait(timeout=30)
        assert proc.returncode == 0
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]

    raw = (plugin_folder.data_dir / "hook-spool.jsonl").read_text().splitlines()
    lines = [json.loads(line) for line in raw]  # every line is a whole JSON document
    assert sorted(line["scene_id"] for line in lines) == sorted(i for ids in batches for i in ids)


@pytest.fixture
def silent_broker() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a hung broker)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_silent_broker_times_out_within_the_deadline_and_spools(plugin_folder: PluginFolder,
                                                                 silent_broker: int) -> None:
    _down(plugin_folder, silent_broker)
    run = run_entry(hook_payload(plugin_folder.path, update_context(45)))

    assert run.returncode == 0 and run.output["spooled"] == ["45"]
    assert 1.9 <= run.elapsed < 3.5
    assert any("within 2 s" in m for m in run.messages("w"))


def test_auth_failure_spools_without_logging_the_password(plugin_folder: PluginFolder) -> None:
    plugin_folder.configure(broker_url="amqp://guest:S3cret-Pw%21@127.0.0.1:5672/")
    run = run_entry(hook_payload(plugin_folder.path, update_context(45)))

    assert run.returncode == 0 and run.output["spooled"] == ["45"]
    assert any("403" in m and "ACCESS_REFUSED" in m for m in run.messages("w"))
    assert "S3cret" not in run.stderr and "S3cret" not in run.stdout


def test_unwritable_spool_is_an_error(plugin_folder: PluginFolder, closed_port: int, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    plugin_folder.configure(broker_url=f"amqp://guest:guest@127.0.0.1:{closed_port}/", data_dir=str(not_a_dir))
    run = run_entry(hook_payload(plugin_folder.path, update_context(45)))

    assert run.returncode == 1 and run.output is None
    assert "nor write the spool" in run.error and "\n" not in run.error
    assert len(run.messages("e")) == 1


def test_spooled_event_keeps_its_hook_type(plugin_folder: PluginFolder, closed_port: int) -> None:
    """The event spooled during an outage is published with its original hook type."""
    _down(plugin_folder, closed_port)
    context = {"id": 77, "type": "Scene.Create.Post", "input": None}
    run_entry(hook_payload(plugin_folder.path, context))
    plugin_folder.configure(broker_url=RABBIT_URL)
    run_entry(hook_payload(plugin_folder.path, update_context(78)))

    assert ["77", "Scene.Create.Post"] in scene_args(drain_queue(plugin_folder.queue))
