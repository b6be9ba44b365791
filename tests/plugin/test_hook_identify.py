"""`hook_events=identify`: only stash-box identify / scrape edits (inputFields with stash_ids) are queued."""

from __future__ import annotations

import pytest

from tests.plugin.conftest import PluginFolder
from tests.plugin.helpers import drain_queue, hook_payload, run_entry, scene_args, update_context

pytestmark = pytest.mark.rabbitmq


def test_identify_mode_queues_a_stash_box_identify_edit(plugin_folder: PluginFolder) -> None:
    plugin_folder.configure(hook_events="identify")
    context = update_context(45, inputFields=["id", "title", "date", "studio_id", "stash_ids", "performer_ids"])
    run = run_entry(hook_payload(plugin_folder.path, context))

    assert run.output["queued"] == ["45"]
    assert scene_args(drain_queue(plugin_folder.queue)) == [["45", "Scene.Update.Post"]]


def test_identify_mode_skips_a_plain_edit(plugin_folder: PluginFolder) -> None:
    plugin_folder.configure(hook_events="identify")
    run = run_entry(hook_payload(plugin_folder.path, update_context(45, inputFields=["id", "title"])))

    assert run.returncode == 0 and run.error is None and run.output["queued"] == []
    assert "hook_events=identify" in run.output["skipped"]
    assert any("skipped scene 45" in m for m in run.messages("i"))
    assert drain_queue(plugin_folder.queue) == []


def test_identify_mode_skips_a_create(plugin_folder: PluginFolder) -> None:
    plugin_folder.configure(hook_events="identify")
    run = run_entry(hook_payload(plugin_folder.path, {"id": 8, "type": "Scene.Create.Post", "input": None}))

    assert run.returncode == 0 and run.output["queued"] == []
    assert drain_queue(plugin_folder.queue) == []


def test_default_all_mode_queues_a_plain_edit(plugin_folder: PluginFolder) -> None:
    run = run_entry(hook_payload(plugin_folder.path, update_context(45, inputFields=["id", "title"])))

    assert run.output["queued"] == ["45"]


def test_unknown_hook_events_value_falls_back_to_all_with_a_warning(plugin_folder: PluginFolder) -> None:
    plugin_folder.configure(hook_events="sometimes")
    run = run_entry(hook_payload(plugin_folder.path, update_context(45)))

    assert run.output["queued"] == ["45"]
    assert any("unknown hook_events" in m for m in run.messages("w"))
