"""The installed plugin folder: manifest exec, entry script, hook settings, and task dispatch."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from plugin.install import install_plugin, read_manifest_exec
from tests.plugin.helpers import (
    PROJECT_ROOT,
    PYTHON,
    RABBIT_URL,
    clean_env,
    drain_queue,
    hook_payload,
    run_entry,
    scene_args,
    update_context,
    write_hook_json,
)


def _stash_argv(plugin_dir: Path) -> list[str]:
    """The command Stash runs: the manifest's exec with {pluginDir} substituted."""
    return [word.replace("{pluginDir}", str(plugin_dir)) for word in read_manifest_exec(plugin_dir / "stash2plex.yml")]


def _fake_project(tmp_path: Path, tasks_source: str | None) -> Path:
    """A project root holding only the hook's modules (plus an optional plugin/tasks.py)."""
    root = tmp_path / "project"
    (root / "plugin").mkdir(parents=True)
    for name in ("__init__.py", "amqp.py", "spool.py", "hook.py", "stash2plex_entry.py", "stash2plex.yml"):
        shutil.copy(PROJECT_ROOT / "plugin" / name, root / "plugin" / name)
    if tasks_source is not None:
        (root / "plugin" / "tasks.py").write_text(tasks_source)
    return root


def _task_payload(plugin_dir: Path, mode: str) -> dict:
    return {"server_connection": {"PluginDir": str(plugin_dir)}, "args": {"mode": mode}}


def test_installed_manifest_exec_points_at_the_interpreter(tmp_path: Path) -> None:
    plugin_dir = install_plugin(tmp_path / "plugins")

    assert plugin_dir == tmp_path / "plugins" / "stash2plex"
    assert read_manifest_exec(plugin_dir / "stash2plex.yml") == [PYTHON, "{pluginDir}/stash2plex_entry.py"]
    assert os.path.isabs(PYTHON)


def test_installed_manifest_keeps_hooks_settings_and_tasks(tmp_path: Path) -> None:
    plugin_dir = install_plugin(tmp_path / "plugins")
    installed = (plugin_dir / "stash2plex.yml").read_text()
    source = (PROJECT_ROOT / "plugin" / "stash2plex.yml").read_text()

    assert installed.replace(json.dumps(PYTHON), "python3") == source


@pytest.mark.rabbitmq
def test_installed_plugin_runs_as_stash_runs_it(tmp_path: Path, hook_prefix: str) -> None:
    plugin_dir = install_plugin(tmp_path / "plugins", broker_url=RABBIT_URL, queue_prefix=hook_prefix,
                                data_dir=tmp_path / "data")
    run = run_entry(hook_payload(plugin_dir, update_context(45)), argv=_stash_argv(plugin_dir))

    assert run.returncode == 0 and run.output["queued"] == ["45"]
    assert scene_args(drain_queue(f"{hook_prefix}.fetch_scene")) == [["45", "Scene.Update.Post"]]


@pytest.mark.rabbitmq
def test_installed_entry_without_plugin_dir_reads_its_own_folder(tmp_path: Path, hook_prefix: str) -> None:
    plugin_dir = install_plugin(tmp_path / "plugins", broker_url=RABBIT_URL, queue_prefix=hook_prefix,
                                data_dir=tmp_path / "data")
    run = run_entry(hook_payload(None, update_context(46)), argv=_stash_argv(plugin_dir))

    assert run.output["queued"] == ["46"]
    assert scene_args(drain_queue(f"{hook_prefix}.fetch_scene")) == [["46", "Scene.Update.Post"]]


def test_installed_entry_puts_the_project_root_on_sys_path(tmp_path: Path) -> None:
    root = _fake_project(tmp_path, 'def run(mode, payload):\n    import plugin\n    return {"from": plugin.__file__}\n')
    plugin_dir = install_plugin(tmp_path / "plugins", project_root=root)
    run = run_entry(_task_payload(plugin_dir, "status"), argv=_stash_argv(plugin_dir))

    assert run.output == {"from": str(root / "plugin" / "__init__.py")}


def test_hook_settings_file_is_complete_and_private(tmp_path: Path) -> None:
    plugin_dir = install_plugin(tmp_path / "plugins", broker_url="amqp://u:p@rabbit:5672/v", queue_prefix="sp",
                                data_dir=tmp_path / "spool", hook_events="identify")
    path = plugin_dir / "stash2plex.hook.json"

    assert json.loads(path.read_text()) == {"broker_url": "amqp://u:p@rabbit:5672/v", "queue_prefix": "sp",
                                            "data_dir": str(tmp_path / "spool"), "hook_events": "identify"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_hook_settings_default_to_local_rabbitmq_and_plugin_data(tmp_path: Path) -> None:
    plugin_dir = install_plugin(tmp_path / "plugins")

    assert json.loads((plugin_dir / "stash2plex.hook.json").read_text()) == {
        "broker_url": "amqp://guest:guest@127.0.0.1:5672/", "queue_prefix": "stash2plex",
        "data_dir": str(plugin_dir / "data"), "hook_events": "all"}


def test_reinstall_keeps_earlier_settings(tmp_path: Path) -> None:
    install_plugin(tmp_path / "plugins", queue_prefix="first")
    plugin_dir = install_plugin(tmp_path / "plugins")

    assert json.loads((plugin_dir / "stash2plex.hook.json").read_text())["queue_prefix"] == "first"


def test_install_rejects_a_missing_interpreter(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        install_plugin(tmp_path / "plugins", python=tmp_path / "no-python")


def test_install_rejects_an_invalid_queue_prefix(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        install_plugin(tmp_path / "plugins", queue_prefix="has space")


def test_install_module_cli_prints_the_next_steps(tmp_path: Path) -> None:
    proc = subprocess.run([PYTHON, "-m", "plugin.install", "--stash-plugins-dir", str(tmp_path / "plugins"),
                           "--broker-url", "amqp://guest:hunter2@127.0.0.1:5672/"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, env=clean_env(), timeout=60)

    assert proc.returncode == 0, proc.stderr
    assert "Reload plugins" in proc.stdout and "plex_url" in proc.stdout and "plex_token" in proc.stdout
    assert "hunter2" not in proc.stdout
    assert (tmp_path / "plugins" / "stash2plex" / "stash2plex_entry.py").exists()


def test_task_mode_without_tasks_module_is_not_available(tmp_path: Path) -> None:
    # A tasks module that cannot be imported (its dependencies are missing from this install).
    broken = "raise ImportError('No module named typer')\n"
    plugin_dir = install_plugin(tmp_path / "plugins", project_root=_fake_project(tmp_path, broken))
    run = run_entry(_task_payload(plugin_dir, "status"), argv=_stash_argv(plugin_dir))

    assert run.returncode == 1
    assert run.result == {"output": None, "error": "task status is not available in this install"}


def test_task_mode_returns_what_tasks_run_returns(tmp_path: Path) -> None:
    root = _fake_project(tmp_path, "def run(mode, payload):\n    return {'mode': mode, 'args': payload['args']}\n")
    plugin_dir = install_plugin(tmp_path / "plugins", project_root=root)
    run = run_entry(_task_payload(plugin_dir, "sync_all"), argv=_stash_argv(plugin_dir))

    assert run.returncode == 0
    assert run.result == {"output": {"mode": "sync_all", "args": {"mode": "sync_all"}}, "error": None}


def test_task_exception_is_one_error_line_without_traceback_dump(tmp_path: Path) -> None:
    root = _fake_project(tmp_path, "def run(mode, payload):\n    raise RuntimeError('plex is down')\n")
    plugin_dir = install_plugin(tmp_path / "plugins", project_root=root)
    run = run_entry(_task_payload(plugin_dir, "health_check"), argv=_stash_argv(plugin_dir))

    assert run.returncode == 1
    assert run.error == "task health_check failed: RuntimeError: plex is down"
    assert run.messages("e") == ["[stash2plex] task health_check failed: RuntimeError: plex is down"]


def test_hook_fast_path_imports_no_heavy_module(tmp_path: Path, closed_port: int) -> None:
    """`-X importtime` lists every module the hook process imports (here down to the spool path)."""
    write_hook_json(tmp_path, broker_url=f"amqp://guest:guest@127.0.0.1:{closed_port}/",
                    data_dir=str(tmp_path / "data"))
    proc = subprocess.run([PYTHON, "-X", "importtime", str(PROJECT_ROOT / "plugin" / "stash2plex_entry.py")],
                          input=json.dumps(hook_payload(tmp_path, update_context(45))).encode(),
                          capture_output=True, env=clean_env(), timeout=30)
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines() if "import time:" in line}

    assert json.loads(proc.stdout)["output"]["spooled"] == ["45"]
    assert {"plugin.hook", "plugin.amqp", "plugin.spool"} <= imported
    heavy = {"pika", "dramatiq", "pydantic", "requests", "plexapi", "asyncio", "ssl", "logging", "plugin.tasks",
             "actors", "typing", "dataclasses", "uuid"}
    assert not imported & heavy, imported & heavy
    # the shared broker-address and stage definitions, nothing else of pipeline/
    assert {m for m in imported if m.startswith("pipeline")} == {"pipeline", "pipeline.broker_address", "pipeline.stages"}
