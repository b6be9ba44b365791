"""Bad input: one clear error line, `{"output": null, "error": "<one line>"}`, exit code 1, under 2 s,
never a traceback (run_entry fails on any stderr line without the Stash log prefix)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.plugin.helpers import EntryRun, hook_payload, run_entry


def _assert_clear_error(run: EntryRun, fragment: str, level: str = "e") -> None:
    assert run.returncode == 1
    assert run.output is None
    assert isinstance(run.error, str) and "\n" not in run.error and fragment in run.error
    assert any(fragment in message for message in run.messages(level)), run.logs
    assert "Traceback" not in run.stderr
    assert run.elapsed < 2.0


def test_empty_stdin_is_a_clear_error() -> None:
    _assert_clear_error(run_entry(b""), "empty input")


def test_whitespace_only_stdin_is_a_clear_error() -> None:
    _assert_clear_error(run_entry(b"  \n\t "), "empty input")


def test_malformed_json_is_a_clear_error() -> None:
    _assert_clear_error(run_entry(b'{"args": {"mode": "hook", '), "malformed JSON input")


def test_json_that_is_not_an_object_is_a_clear_error() -> None:
    _assert_clear_error(run_entry(b"[1, 2, 3]"), "must be a JSON object")


def test_deeply_nested_json_is_a_clear_error() -> None:
    _assert_clear_error(run_entry(b"[" * 200000 + b"]" * 200000), "nested too deeply")


def test_missing_mode_is_a_clear_error() -> None:
    _assert_clear_error(run_entry({"server_connection": {}, "args": {}}), "missing args.mode")


def test_missing_hook_context_is_a_clear_error(offline_plugin_dir: Path) -> None:
    _assert_clear_error(run_entry(hook_payload(offline_plugin_dir, None)), "without args.hookContext")


def test_missing_hook_type_is_a_clear_error(offline_plugin_dir: Path) -> None:
    _assert_clear_error(run_entry(hook_payload(offline_plugin_dir, {"id": 3, "input": None})), "hookContext.type")


def test_non_scene_hook_is_ignored_with_an_info_line(offline_plugin_dir: Path) -> None:
    context = {"id": 3, "type": "Gallery.Update.Post", "input": {"id": "3"}, "inputFields": ["title"]}
    _assert_clear_error(run_entry(hook_payload(offline_plugin_dir, context)), "not a scene hook", level="i")


def test_scene_id_zero_is_a_clear_error(offline_plugin_dir: Path) -> None:
    context = {"id": 0, "type": "Scene.Update.Post", "input": {"id": "0"}, "inputFields": ["id"]}
    _assert_clear_error(run_entry(hook_payload(offline_plugin_dir, context)), "no valid scene id")


def test_absent_scene_id_is_a_clear_error(offline_plugin_dir: Path) -> None:
    context = {"type": "Scene.Create.Post", "input": None}
    run = run_entry(hook_payload(offline_plugin_dir, context))
    _assert_clear_error(run, "no valid scene id")
    assert "hookContext.id absent" in run.error


def test_ten_megabyte_input_is_rejected_fast(offline_plugin_dir: Path) -> None:
    payload = hook_payload(offline_plugin_dir, {"id": 5, "type": "Scene.Update.Post",
                                      "input": {"id": "5", "details": "x" * (10 * 1024 * 1024)}})
    _assert_clear_error(run_entry(json.dumps(payload).encode()), "input too large")


def test_bad_input_publishes_and_spools_nothing(offline_plugin_dir: Path) -> None:
    context = {"id": 0, "type": "Scene.Update.Post", "input": None}
    run_entry(hook_payload(offline_plugin_dir, context))
    assert not (offline_plugin_dir.parent / "data").exists()
