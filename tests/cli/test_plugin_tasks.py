"""The Stash plugin tasks (`plugin/tasks.py`), run through the entry script exactly as Stash runs them.

Settings come from Stash's saved plugin settings, read with the session cookie and the Stash address
of the payload's `server_connection`; every stderr line must carry Stash's log prefix (checked by
`run_entry`), and every task returns in seconds by enqueuing.
"""

from __future__ import annotations

import pytest

from tests.cli.conftest import RABBIT_URL, dlq_ids, drain, publish_dead_letter, queued_jobs
from tests.conftest import PLEX_TOKEN
from tests.plugin.helpers import clean_env, run_entry, write_hook_json

COOKIE = "MTcw-task-session"


@pytest.fixture
def saved_settings(stash, plex, queue_prefix, data_dir):
    """Save the plugin settings in Stash (as its settings page does) and accept the task's session cookie."""

    def save(**extra) -> None:
        values = {"plex_url": plex.url, "plex_token": PLEX_TOKEN, "broker_url": RABBIT_URL,
                  "queue_prefix": queue_prefix, "data_dir": str(data_dir), "plex_connect_timeout": 2}
        stash.set_plugin_settings("stash2plex", {**values, **extra})
        stash.session_cookies.add(COOKIE)

    save()
    return save


@pytest.fixture
def task(stash, tmp_path):
    """Run one task mode like Stash: JSON on stdin, Host 0.0.0.0, the session cookie, no STASH2PLEX_* env."""

    def run(mode: str, **args):
        payload = {
            "server_connection": {"Scheme": "http", "Host": "0.0.0.0", "Port": stash.port,
                                  "SessionCookie": {"Name": "session", "Value": COOKIE},
                                  "Dir": str(tmp_path), "PluginDir": str(tmp_path / "plugin")},
            "args": {"mode": mode, **args},
        }
        return run_entry(payload, env=clean_env(STASH2PLEX_METRICS_PORT="0"), timeout=60)

    return run


def summary(run) -> str:
    assert run.error is None, (run.error, run.logs)
    return run.output


@pytest.mark.rabbitmq
def test_sync_all_task_queues_every_scene_in_seconds_with_progress(task, saved_settings, queue_prefix, dataset):
    run = task("sync_all")
    assert f"queued {len(dataset.scenes)} scene(s)" in summary(run)
    assert run.elapsed < 10
    progress = [float(value) for value in run.messages("p")]
    assert progress[0] == 0.0 and progress[-1] == 1.0
    jobs = [j for batch in queued_jobs(f"{queue_prefix}.fetch_scene") for j in batch]
    assert len(jobs) == len(dataset.scenes) and all(j["event"] == "task" for j in jobs)


@pytest.mark.rabbitmq
def test_sync_recent_task_queues_only_scenes_of_the_last_day(task, saved_settings, queue_prefix, stash):
    stash.update_scene("9", title="Edited today")
    assert "queued 1 scene(s)" in summary(task("sync_recent"))
    assert [[j["scene_id"] for j in b] for b in queued_jobs(f"{queue_prefix}.fetch_scene")] == [["9"]]


@pytest.mark.rabbitmq
def test_reconcile_tasks_hand_the_comparison_to_the_workers(task, saved_settings, queue_prefix):
    line = summary(task("reconcile_missing"))
    assert line.startswith("reconcile missing: queued to") and f"{queue_prefix}.maintenance" in line
    [message] = drain(f"{queue_prefix}.maintenance")
    assert message["actor_name"] == "reconcile_library" and message["args"] == ["all", True]


@pytest.mark.rabbitmq
def test_status_task_answers_in_one_line(task, saved_settings, queue_prefix):
    publish_dead_letter(queue_prefix, "2")
    line = summary(task("status"))
    assert line.startswith("status:") and "DLQ 1" in line and "\n" not in line


@pytest.mark.rabbitmq
def test_dlq_replay_task_sends_every_entry_back(task, saved_settings, queue_prefix):
    publish_dead_letter(queue_prefix, "3")
    assert "1 dead-lettered scene(s)" in summary(task("dlq_replay"))
    assert dlq_ids(queue_prefix) == []
    assert [[j["scene_id"] for j in b] for b in queued_jobs(f"{queue_prefix}.fetch_scene")] == [["3"]]


@pytest.mark.rabbitmq
def test_dlq_purge_task_empties_the_dlq(task, saved_settings, queue_prefix):
    publish_dead_letter(queue_prefix, "3")
    publish_dead_letter(queue_prefix, "4")
    assert "2 entries" in summary(task("dlq_purge"))
    assert dlq_ids(queue_prefix) == []


@pytest.mark.rabbitmq
def test_health_check_task_passes_against_the_emulators(task, saved_settings):
    assert summary(task("health_check")).startswith("health check: 7 ok")


@pytest.mark.rabbitmq
def test_health_check_task_fails_with_the_fix_when_the_plex_token_is_wrong(task, saved_settings):
    saved_settings(plex_token="wrong-plex-token-42")
    run = task("health_check")
    assert run.error and "refused the token" in run.error
    assert any("fix: set plex_token" in line for line in run.messages("e"))
    assert "wrong-plex-token-42" not in run.stdout + run.stderr


@pytest.mark.rabbitmq
def test_flush_spool_task_publishes_what_the_hook_spooled(task, saved_settings, queue_prefix, tmp_path):
    from plugin.spool import append_events

    spool_dir = tmp_path / "spool"
    write_hook_json(tmp_path / "plugin", broker_url=RABBIT_URL, queue_prefix=queue_prefix, data_dir=str(spool_dir))
    append_events(spool_dir, [("5", "Scene.Update.Post")])
    assert "1 event(s) published" in summary(task("flush_spool"))

    assert [body["args"][0] for body in drain(f"{queue_prefix}.fetch_scene")] == ["5"]


def test_a_bad_saved_setting_fails_the_task_in_one_line_naming_the_key(task, saved_settings):
    saved_settings(batch_size=0)
    run = task("sync_all")
    assert run.returncode == 1 and "batch_size" in run.error
    assert not any("Traceback" in line for line in run.messages("e") + run.messages("i"))  # the entry logs frames at debug


def test_an_unreachable_broker_fails_the_task_naming_its_url_without_the_password(task, saved_settings, closed_port):
    saved_settings(broker_url=f"amqp://ops:task-secret-9@127.0.0.1:{closed_port}/")
    run = task("sync_all")
    assert run.returncode == 1 and f"amqp://ops:***@127.0.0.1:{closed_port}/" in run.error
    assert "task-secret-9" not in run.stdout + run.stderr


@pytest.mark.rabbitmq
def test_a_task_copies_the_broker_settings_saved_in_stash_to_the_hook(task, saved_settings, queue_prefix, tmp_path):
    import json

    saved_settings(hook_events="identify")
    (tmp_path / "plugin").mkdir()
    summary(task("status"))
    hook = json.loads((tmp_path / "plugin" / "stash2plex.hook.json").read_text())
    assert hook["broker_url"] == RABBIT_URL and hook["queue_prefix"] == queue_prefix
    assert hook["hook_events"] == "identify"
