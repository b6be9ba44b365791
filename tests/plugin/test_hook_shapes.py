"""The hook run as Stash runs it, for every hook input shape: the right fetch_scene messages arrive."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from tests.plugin.conftest import PluginFolder
from tests.plugin.helpers import (
    drain_queue,
    hook_payload,
    run_entry,
    scene_args,
    update_context,
)

pytestmark = pytest.mark.rabbitmq


def test_scene_update_publishes_one_message_for_the_scene(plugin_folder: PluginFolder) -> None:
    run = run_entry(hook_payload(plugin_folder.path, update_context(45)))

    assert run.returncode == 0 and run.error is None
    assert run.output["queued"] == ["45"]
    assert scene_args(drain_queue(plugin_folder.queue)) == [["45", "Scene.Update.Post"]]


def test_message_body_has_every_dramatiq_field(plugin_folder: PluginFolder) -> None:
    before_ms = int(time.time() * 1000)
    run_entry(hook_payload(plugin_folder.path, update_context(45)))

    [(properties, body)] = drain_queue(plugin_folder.queue)
    message = json.loads(body)
    assert set(message) == {"queue_name", "actor_name", "args", "kwargs", "options", "message_id",
                            "message_timestamp"}
    assert message["queue_name"] == plugin_folder.queue
    assert message["actor_name"] == "fetch_scene"
    assert message["kwargs"] == {} and message["options"] == {}
    assert uuid.UUID(message["message_id"]).version == 4
    assert isinstance(message["message_timestamp"], int)
    assert before_ms - 1000 <= message["message_timestamp"] <= int(time.time() * 1000) + 1000
    assert properties.delivery_mode == 2


def test_message_is_decodable_by_dramatiq(plugin_folder: PluginFolder) -> None:
    import dramatiq

    run_entry(hook_payload(plugin_folder.path, update_context(45)))

    [(_, body)] = drain_queue(plugin_folder.queue)
    message = dramatiq.Message.decode(body)
    assert message.actor_name == "fetch_scene"
    assert message.queue_name == plugin_folder.queue
    assert message.args == ("45", "Scene.Update.Post")


def test_scene_create_with_null_input_uses_hook_context_id(plugin_folder: PluginFolder) -> None:
    context = {"id": 7, "type": "Scene.Create.Post", "input": None, "inputFields": None}
    run = run_entry(hook_payload(plugin_folder.path, context))

    assert run.returncode == 0 and run.output["queued"] == ["7"]
    assert scene_args(drain_queue(plugin_folder.queue)) == [["7", "Scene.Create.Post"]]


def test_integer_and_string_ids_become_one_string_id(plugin_folder: PluginFolder) -> None:
    context = {"id": 12, "type": "Scene.Update.Post", "input": {"id": "12"}, "inputFields": ["id"]}
    run_entry(hook_payload(plugin_folder.path, context))

    assert scene_args(drain_queue(plugin_folder.queue)) == [["12", "Scene.Update.Post"]]


def test_scene_update_with_only_input_id_is_published(plugin_folder: PluginFolder) -> None:
    context = {"type": "Scene.Update.Post", "input": {"id": "31", "rating100": 80}, "inputFields": ["rating100"]}
    run_entry(hook_payload(plugin_folder.path, context))

    assert scene_args(drain_queue(plugin_folder.queue)) == [["31", "Scene.Update.Post"]]


def test_bulk_update_without_context_id_publishes_every_id_once(plugin_folder: PluginFolder) -> None:
    context = {"type": "Scene.Update.Post", "input": {"ids": ["1", "2", 3, "2"], "organized": True},
               "inputFields": ["ids", "organized"]}
    run = run_entry(hook_payload(plugin_folder.path, context))

    assert run.output["queued"] == ["1", "2", "3"]
    assert sorted(args[0] for args in scene_args(drain_queue(plugin_folder.queue))) == ["1", "2", "3"]


def test_bulk_update_lead_run_publishes_the_whole_batch(plugin_folder: PluginFolder) -> None:
    context = {"id": 1, "type": "Scene.Update.Post", "input": {"ids": ["1", "2", "3"], "organized": True},
               "inputFields": ["ids", "organized"]}
    run_entry(hook_payload(plugin_folder.path, context))

    assert sorted(args[0] for args in scene_args(drain_queue(plugin_folder.queue))) == ["1", "2", "3"]


def test_bulk_update_follower_run_publishes_nothing(plugin_folder: PluginFolder) -> None:
    context = {"id": 2, "type": "Scene.Update.Post", "input": {"ids": ["1", "2", "3"], "organized": True},
               "inputFields": ["ids", "organized"]}
    run = run_entry(hook_payload(plugin_folder.path, context))

    assert run.returncode == 0 and run.error is None
    assert run.output["queued"] == [] and "scene 1" in run.output["skipped"]
    assert drain_queue(plugin_folder.queue) == []


def test_bulk_edit_run_as_stash_runs_it_queues_each_scene_once(plugin_folder: PluginFolder) -> None:
    ids = ["11", "12", "13", "14"]
    bulk_input = {"ids": ids, "tag_ids": {"ids": ["5"], "mode": "ADD"}}
    for scene_id in ids:  # Stash: one hook process per updated scene, each with the whole input
        context = {"id": int(scene_id), "type": "Scene.Update.Post", "input": bulk_input,
                   "inputFields": ["ids", "tag_ids"]}
        assert run_entry(hook_payload(plugin_folder.path, context)).returncode == 0

    assert sorted(args[0] for args in scene_args(drain_queue(plugin_folder.queue))) == ids


def test_scenes_update_list_publishes_each_object_id(plugin_folder: PluginFolder) -> None:
    context = {"type": "Scene.Update.Post", "input": [{"id": "4", "title": "a"}, {"id": 5, "title": "b"}],
               "inputFields": ["id", "title"]}
    run_entry(hook_payload(plugin_folder.path, context))

    assert sorted(args[0] for args in scene_args(drain_queue(plugin_folder.queue))) == ["4", "5"]


def test_invalid_id_among_valid_ones_is_ignored_with_a_warning(plugin_folder: PluginFolder) -> None:
    context = {"type": "Scene.Update.Post", "input": {"ids": ["8", "abc", "0"]}, "inputFields": ["ids"]}
    run = run_entry(hook_payload(plugin_folder.path, context))

    assert run.returncode == 0 and run.output["queued"] == ["8"]
    assert any("invalid scene id" in message and "'abc'" in message for message in run.messages("w"))
    assert scene_args(drain_queue(plugin_folder.queue)) == [["8", "Scene.Update.Post"]]


def test_log_line_names_the_scene_and_the_time_taken(plugin_folder: PluginFolder) -> None:
    run = run_entry(hook_payload(plugin_folder.path, update_context(45)))

    [line] = run.messages("i")
    assert re.fullmatch(r"\[stash2plex hook\] queued scene 45 \(Scene\.Update\.Post\) on \S+ in [\d.]+ ms", line)
    assert isinstance(run.output["handler_ms"], float)


def test_env_variable_overrides_the_hook_json(plugin_folder: PluginFolder, closed_port: int) -> None:
    from tests.plugin.helpers import RABBIT_URL, clean_env

    plugin_folder.configure(broker_url=f"amqp://guest:guest@127.0.0.1:{closed_port}/")
    run = run_entry(hook_payload(plugin_folder.path, update_context(9)),
                    env=clean_env(STASH2PLEX_BROKER_URL=RABBIT_URL))

    assert run.output["queued"] == ["9"]
    assert scene_args(drain_queue(plugin_folder.queue)) == [["9", "Scene.Update.Post"]]
