"""The provider in-process on a real port (uvicorn in a thread), called over HTTP the way Plex calls it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn

from ops.provider import create_app, uvicorn_config
from pipeline.config import Settings, explicit_settings
from pipeline.provider.service import ProviderService
from tests.conftest import PLEX_TOKEN, STASH_KEY, wait_for
from tests.emulators.http_base import free_port
from tests.emulators.stash import StashEmulator

PLEX_HEADERS = {"Accept": "application/json", "X-Plex-Token": PLEX_TOKEN, "X-Plex-Language": "en",
                "X-Plex-Country": "US", "X-Plex-Client-Identifier": "plex-media-server-test"}


@dataclass
class RunningProvider:
    url: str
    service: ProviderService
    server: uvicorn.Server
    thread: threading.Thread
    session: requests.Session

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url + path, timeout=kwargs.pop("timeout", 10), **kwargs)

    def match(self, body: Any, **kwargs: Any) -> requests.Response:
        if isinstance(body, (dict, list)):
            kwargs["json"] = body
        else:
            kwargs["data"] = body
            kwargs.setdefault("headers", {"Content-Type": "application/json"})
        return self.session.post(self.url + "/library/metadata/matches", timeout=kwargs.pop("timeout", 10), **kwargs)

    def matched_ids(self, body: dict[str, Any]) -> list[str]:
        response = self.match(body)
        assert response.status_code == 200, response.text
        return [item["ratingKey"] for item in response.json()["MediaContainer"]["Metadata"]]

    def metadata(self, rating_key: str) -> dict[str, Any]:
        response = self.get(f"/library/metadata/{rating_key}")
        assert response.status_code == 200, response.text
        items = response.json()["MediaContainer"]["Metadata"]
        assert len(items) == 1
        return dict(items[0])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.session.close()


def provider_settings(stash: StashEmulator, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"stash_url": stash.url, "stash_api_key": STASH_KEY, "data_dir": data_dir,
                              "provider_refresh_seconds": 0.2, "provider_stash_timeout": 1.0}
    values.update(overrides)
    return explicit_settings(**values)


def run_provider(settings: Settings, *, wait_built: bool = True) -> RunningProvider:
    service = ProviderService(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn_config(create_app(service), "127.0.0.1", port))
    thread = threading.Thread(target=server.run, name="provider-under-test", daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=20, message="the provider to listen")
    session = requests.Session()
    session.headers.update(PLEX_HEADERS)
    running = RunningProvider(f"http://127.0.0.1:{port}", service, server, thread, session)
    if wait_built:
        wait_for(lambda: running.get("/healthz").json()["built"], timeout=20, message="the index to be built")
    return running


@pytest.fixture
def start_provider(stash: StashEmulator, tmp_path: Path) -> Iterator[Callable[..., RunningProvider]]:
    """start_provider(**settings) -> a provider against the `stash` emulator; stopped after the test."""
    started: list[RunningProvider] = []

    def start(*, wait_built: bool = True, data_dir: Path | None = None, **overrides: Any) -> RunningProvider:
        running = run_provider(provider_settings(stash, data_dir or tmp_path / "provider-data", **overrides),
                               wait_built=wait_built)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def provider(start_provider: Callable[..., RunningProvider]) -> RunningProvider:
    return start_provider()


class RawLogs(logging.Handler):
    """Every log line of every logger, unscrubbed: the message, its fields and any exception text."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name} {record.getMessage()} {getattr(record, 's2p_fields', {})}"
        if record.exc_info:
            text += " " + repr(record.exc_info[1])
        self.lines.append(text)


@pytest.fixture
def raw_logs() -> Iterator[RawLogs]:
    handler = RawLogs()
    loggers = [logging.getLogger(), logging.getLogger("stash2plex"), logging.getLogger("uvicorn"),
               logging.getLogger("uvicorn.error")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield handler
    for logger, level in zip(loggers, levels):
        logger.removeHandler(handler)
        logger.setLevel(level)
