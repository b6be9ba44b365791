"""In-process checks of the hook's pure parts: settings precedence and scene id selection."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from plugin.hook import HookInputError, is_identify_edit, load_hook_settings, read_payload, select_scene_ids


def test_settings_default_to_local_rabbitmq_and_plugin_data(tmp_path: Path) -> None:
    settings = load_hook_settings(tmp_path, environ={})

    assert settings.broker_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.queue_prefix == "stash2plex"
    assert settings.data_dir == tmp_path / "data"
    assert settings.hook_events == "all" and settings.warnings == ()


def test_env_overrides_win_over_the_hook_json(tmp_path: Path) -> None:
    (tmp_path / "stash2plex.hook.json").write_text(json.dumps({"queue_prefix": "file", "hook_events": "identify"}))
    settings = load_hook_settings(tmp_path, environ={"STASH2PLEX_QUEUE_PREFIX": "env"})

    assert settings.queue_prefix == "env" and settings.hook_events == "identify"


def test_relative_data_dir_is_relative_to_the_plugin_folder(tmp_path: Path) -> None:
    (tmp_path / "stash2plex.hook.json").write_text(json.dumps({"data_dir": "spool"}))

    assert load_hook_settings(tmp_path, environ={}).data_dir == tmp_path / "spool"


def test_malformed_hook_json_falls_back_to_defaults_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "stash2plex.hook.json").write_text("{broken")
    settings = load_hook_settings(tmp_path, environ={})

    assert settings.queue_prefix == "stash2plex" and len(settings.warnings) == 1


def test_settings_repr_hides_the_broker_password(tmp_path: Path) -> None:
    settings = load_hook_settings(tmp_path, environ={"STASH2PLEX_BROKER_URL": "amqp://u:topsecret@h:5672/"})

    assert "topsecret" not in repr(settings)


@pytest.mark.parametrize("bad", [-3, True, 1.5, "12a", "", None, "０１"])
def test_junk_ids_are_not_scene_ids(bad: object) -> None:
    with pytest.raises(HookInputError):
        select_scene_ids({"type": "Scene.Update.Post", "input": {"id": bad}})


def test_null_bulk_ids_fall_back_to_the_context_id() -> None:
    selection = select_scene_ids({"id": 4, "type": "Scene.Update.Post", "input": {"ids": None}})

    assert selection.scene_ids == ("4",) and selection.invalid == ()


def test_context_id_outside_the_batch_is_published_alone() -> None:
    selection = select_scene_ids({"id": 9, "type": "Scene.Update.Post", "input": {"ids": ["1", "2"]}})

    assert selection.scene_ids == ("9",) and selection.batch_lead is None


def test_identify_rule_needs_stash_ids_on_an_update() -> None:
    assert is_identify_edit({"type": "Scene.Update.Post", "inputFields": ["title", "stash_ids"]})
    assert not is_identify_edit({"type": "Scene.Update.Post", "inputFields": ["title"]})
    assert not is_identify_edit({"type": "Scene.Update.Post", "input": None})
    assert not is_identify_edit({"type": "Scene.Create.Post", "inputFields": ["stash_ids"]})


def test_read_payload_accepts_a_utf8_bom() -> None:
    assert read_payload(io.BytesIO(b'\xef\xbb\xbf{"args": {}}')) == {"args": {}}
