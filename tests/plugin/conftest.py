"""Fixtures for the plugin tests: a unique queue prefix per test and a Stash-like plugin folder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.plugin.helpers import RABBIT_URL, delete_queues, write_hook_json


@dataclass
class PluginFolder:
    """A plugin folder as Stash would pass it in `server_connection.PluginDir`, with its hook settings."""

    path: Path
    data_dir: Path
    prefix: str

    @property
    def queue(self) -> str:
        return f"{self.prefix}.fetch_scene"

    def configure(self, **values: str) -> None:
        settings = {"broker_url": RABBIT_URL, "queue_prefix": self.prefix, "data_dir": str(self.data_dir)}
        settings.update(values)
        write_hook_json(self.path, **settings)


@pytest.fixture
def hook_prefix() -> Iterator[str]:
    """A queue prefix of this test's own (`t<hex>`); its queues are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    yield prefix
    delete_queues(prefix)


@pytest.fixture
def plugin_folder(tmp_path: Path, hook_prefix: str) -> PluginFolder:
    """`<tmp>/plugins/stash2plex` with a stash2plex.hook.json pointing at RabbitMQ and a tmp spool."""
    folder = PluginFolder(tmp_path / "plugins" / "stash2plex", tmp_path / "data", hook_prefix)
    folder.configure()
    return folder


@pytest.fixture
def offline_plugin_dir(tmp_path: Path, closed_port: int) -> Path:
    """A plugin folder whose hook.json points at a closed port: a run here can never reach a real queue."""
    folder = tmp_path / "offline-plugin"
    write_hook_json(folder, broker_url=f"amqp://guest:guest@127.0.0.1:{closed_port}/",
                    queue_prefix="offline", data_dir=str(tmp_path / "data"))
    return folder
