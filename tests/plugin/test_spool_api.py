"""`plugin.spool` called in-process, as the flush_spool task will call it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plugin.amqp import AmqpPublisher, dramatiq_queue_arguments
from plugin.spool import FlushResult, append_events, flush_spool, flush_with_publisher, has_pending, pending_count
from tests.plugin.conftest import PluginFolder
from tests.plugin.helpers import RABBIT_URL, drain_queue, scene_args, spool_lines


def _collect() -> tuple[list[tuple[str, str]], object]:
    lines: list[tuple[str, str]] = []
    return lines, lambda level, message: lines.append((level, message))


def test_append_writes_one_json_line_per_event(tmp_path: Path) -> None:
    assert append_events(tmp_path, [("1", "Scene.Update.Post"), ("2", "Scene.Create.Post")]) == 2

    assert [(line["scene_id"], line["event"]) for line in spool_lines(tmp_path)] == [
        ("1", "Scene.Update.Post"), ("2", "Scene.Create.Post")]
    assert has_pending(tmp_path) and pending_count(tmp_path) == 2


def test_empty_data_dir_has_nothing_pending(tmp_path: Path) -> None:
    assert not has_pending(tmp_path / "missing")
    assert flush_spool(RABBIT_URL, "unused", tmp_path / "missing") == FlushResult(0, 0, 0)


@pytest.mark.rabbitmq
def test_flush_spool_publishes_everything_and_empties_the_spool(plugin_folder: PluginFolder) -> None:
    append_events(plugin_folder.data_dir, [("1", "Scene.Update.Post"), ("2", "Scene.Create.Post")])
    result = flush_spool(RABBIT_URL, plugin_folder.prefix, plugin_folder.data_dir)

    assert result == FlushResult(published=2, skipped_corrupt=0, remaining=0)
    assert sorted(scene_args(drain_queue(plugin_folder.queue))) == [["1", "Scene.Update.Post"],
                                                                    ["2", "Scene.Create.Post"]]
    assert not has_pending(plugin_folder.data_dir)


def test_flush_spool_with_the_broker_down_keeps_every_line(tmp_path: Path, closed_port: int) -> None:
    append_events(tmp_path, [("1", "Scene.Update.Post"), ("2", "Scene.Update.Post")])
    lines, log = _collect()
    result = flush_spool(f"amqp://guest:guest@127.0.0.1:{closed_port}/", "p", tmp_path, log=log)  # type: ignore[arg-type]

    assert result == FlushResult(0, 0, 2)
    assert [line["scene_id"] for line in spool_lines(tmp_path)] == ["1", "2"]
    assert lines and lines[0][0] == "w"


@pytest.mark.rabbitmq
def test_flush_skips_and_logs_each_corrupt_line(plugin_folder: PluginFolder) -> None:
    plugin_folder.data_dir.mkdir(parents=True)
    (plugin_folder.data_dir / "hook-spool.jsonl").write_text(
        'garbage\n{"scene_id": "5", "event": "Scene.Update.Post", "ts": 2.5}\n{"scene_id": "x", "event": "e"}\n')
    lines, log = _collect()
    result = flush_spool(RABBIT_URL, plugin_folder.prefix, plugin_folder.data_dir, log=log)  # type: ignore[arg-type]

    assert result == FlushResult(published=1, skipped_corrupt=2, remaining=0)
    assert [level for level, _ in lines] == ["w", "w"]
    assert all("corrupt spool line" in message for _, message in lines)


@pytest.mark.rabbitmq
def test_leftover_aside_file_from_a_crash_is_flushed(plugin_folder: PluginFolder) -> None:
    plugin_folder.data_dir.mkdir(parents=True)
    (plugin_folder.data_dir / "hook-spool.jsonl.flushing").write_text(
        json.dumps({"scene_id": "3", "event": "Scene.Update.Post", "ts": 1.0}) + "\n")
    append_events(plugin_folder.data_dir, [("4", "Scene.Update.Post")])
    result = flush_spool(RABBIT_URL, plugin_folder.prefix, plugin_folder.data_dir)

    assert result.published == 2
    assert not (plugin_folder.data_dir / "hook-spool.jsonl.flushing").exists()


@pytest.mark.rabbitmq
def test_flush_with_max_lines_leaves_the_rest_spooled(plugin_folder: PluginFolder) -> None:
    append_events(plugin_folder.data_dir, [(str(i), "Scene.Update.Post") for i in range(1, 6)])
    with AmqpPublisher(RABBIT_URL) as publisher:
        publisher.declare_queue(plugin_folder.queue, arguments=dramatiq_queue_arguments(plugin_folder.queue))
        result = flush_with_publisher(publisher, plugin_folder.prefix, plugin_folder.data_dir, max_lines=2)

    assert result == FlushResult(published=2, skipped_corrupt=0, remaining=3)
    assert [line["scene_id"] for line in spool_lines(plugin_folder.data_dir)] == ["3", "4", "5"]
