"""Expected failures: one clear line, the documented exit code, never a traceback, never a secret."""

from __future__ import annotations

import json

import pytest

from tests.conftest import PLEX_TOKEN, STASH_KEY


def test_a_bad_setting_exits_2_naming_the_key(cli):
    result = cli("status", STASH2PLEX_MAX_RETRIES="lots")
    assert result.returncode == 2
    assert "max_retries" in result.stderr and "STASH2PLEX_MAX_RETRIES" in result.stderr
    assert "Traceback" not in result.output


def test_a_bad_setting_in_the_config_file_exits_2_naming_the_key_without_its_value(cli, tmp_path):
    config = tmp_path / "s2p.toml"
    config.write_text('[stash2plex]\nplex_token = "tiny9"\n')
    result = cli("--config", str(config), "doctor", STASH2PLEX_PLEX_TOKEN=None)
    assert result.returncode == 2
    assert "plex_token" in result.output and "tiny9" not in result.output


def test_a_missing_config_file_exits_2(cli, tmp_path):
    result = cli("--config", str(tmp_path / "nope.toml"), "status")
    assert result.returncode == 2
    assert "nope.toml" in result.stderr and "Traceback" not in result.output


def test_unreachable_plex_names_its_url_without_the_token_and_exits_3(cli, closed_port):
    result = cli("sync", "--scene", "1", "--inline", STASH2PLEX_PLEX_URL=f"http://127.0.0.1:{closed_port}")
    assert result.returncode == 3
    assert f"http://127.0.0.1:{closed_port}" in result.stderr
    assert PLEX_TOKEN not in result.output and "Traceback" not in result.output


def test_unreachable_stash_names_its_url_and_exits_3(cli, closed_port):
    result = cli("sync", "--all", "--inline", STASH2PLEX_STASH_URL=f"http://127.0.0.1:{closed_port}")
    assert result.returncode == 3
    assert f"Stash at http://127.0.0.1:{closed_port}" in result.stderr
    assert STASH_KEY not in result.output


def test_unreachable_broker_shows_the_url_without_its_password_and_exits_3(cli, closed_port):
    result = cli("sync", "--all", STASH2PLEX_BROKER_URL=f"amqp://ops:hunter2secret@127.0.0.1:{closed_port}/")
    assert result.returncode == 3
    assert f"amqp://ops:***@127.0.0.1:{closed_port}/" in result.stderr
    assert "hunter2secret" not in result.output
    assert "fix:" in result.stderr


@pytest.mark.rabbitmq
def test_refused_broker_credentials_exit_1_without_the_password(cli):
    result = cli("dlq", "list", STASH2PLEX_BROKER_URL="amqp://nobody:wrong-pass-123@127.0.0.1:5672/")
    assert result.returncode == 1
    assert "refused the user or password" in result.stderr and "wrong-pass-123" not in result.output


def test_log_json_writes_one_json_object_per_stderr_line_without_secrets(cli):
    result = cli("--log-json", "--verbose", "sync", "--scene", "1", "--inline")
    assert result.returncode == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]
    assert events and all({"ts", "level", "logger", "event"} <= set(e) for e in events)
    assert any(e["event"] == "updated" and e.get("scene_id") == "1" for e in events)
    assert PLEX_TOKEN not in result.output and STASH_KEY not in result.output


@pytest.mark.rabbitmq
@pytest.mark.parametrize("command", [["status", "--json"], ["dlq", "list", "--json"], ["dlq", "show", "0123"],
                                     ["dlq", "purge", "--yes"]])
def test_commands_that_need_only_rabbitmq_never_wait_on_a_hung_stash(cli, hanging_url, command):
    """Stash accepts connections and never answers, with a 300 s timeout: these commands do not ask it."""
    result = cli(*command, STASH2PLEX_STASH_URL=hanging_url, STASH2PLEX_STASH_TIMEOUT="300")  # the run's bound: 90 s
    assert result.returncode in (0, 1), result.output
    assert "Traceback" not in result.output
