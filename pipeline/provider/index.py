"""Every Stash scene the provider knows, in memory, by id, by file path and by file name.

Readers (the HTTP event loop) never take a lock: each update builds its entries first and then
swaps them in with single dict operations, so a reader sees a scene either before or after an
update. One writer at a time (the refresher thread, or a bounded look-up on a miss) holds `_lock`.

A snapshot in SQLite (`data_dir/provider.db`) lets a restarted provider answer at once, before
Stash is asked (and while Stash is down).
"""

from __future__ import annotations

import json
import posixpath
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pipeline.models import StashScene

SNAPSHOT_SCHEMA = """
CREATE TABLE IF NOT EXISTS scenes (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def normal_path(path: str) -> str:
    """Forward slashes (a Windows Plex sends `D:\\Media\\a.mp4`)."""
    return path.replace("\\", "/")


def basename_key(path: str) -> str:
    return posixpath.basename(normal_path(path)).casefold()


def stash_time(value: str | None) -> float:
    """Epoch seconds of a Stash `updated_at` (any ISO-8601 form; naive means UTC); 0 when unreadable."""
    if not value:
        return 0.0
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        return 0.0
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()


@dataclass(frozen=True)
class FileEntry:
    path: str
    scene_id: str


class SceneIndex:
    def __init__(self) -> None:
        self.scenes: dict[str, StashScene] = {}
        self.by_path: dict[str, str] = {}
        self.by_basename: dict[str, tuple[FileEntry, ...]] = {}
        self.performer_images: dict[str, str] = {}
        self.watermark = 0.0  # newest updated_at seen, epoch seconds
        self.built_at = 0.0  # when the last full listing finished (0: never)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.scenes)

    def get(self, scene_id: str) -> StashScene | None:
        return self.scenes.get(scene_id)

    def scene_for_path(self, path: str) -> str | None:
        return self.by_path.get(path)

    def files_named(self, name: str) -> tuple[FileEntry, ...]:
        return self.by_basename.get(name.casefold(), ())

    # --- writes ------------------------------------------------------------------------------
    def upsert(self, scenes: Iterable[StashScene]) -> list[StashScene]:
        """Add or replace scenes; returns those that were new or changed."""
        changed: list[StashScene] = []
        with self._lock:
            for scene in scenes:
                old = self.scenes.get(scene.id)
                self.watermark = max(self.watermark, stash_time(scene.updated_at))
                if old is not None and old == scene:
                    continue
                changed.append(scene)
                self._put(scene, old)
        return changed

    def replace_all(self, scenes: Iterable[StashScene], built_at: float | None = None) -> int:
        """Make the index exactly `scenes` (a full listing): scenes Stash no longer has are dropped.
        Returns how many scenes were added, changed or dropped."""
        listed = {scene.id: scene for scene in scenes}
        changed = len(self.upsert(listed.values()))
        with self._lock:
            for scene_id in [sid for sid in self.scenes if sid not in listed]:
                self._drop(scene_id)
                changed += 1
            self.built_at = time.time() if built_at is None else built_at
        return changed

    def _put(self, scene: StashScene, old: StashScene | None) -> None:
        new_paths = {normal_path(f.path) for f in scene.files}
        self.scenes[scene.id] = scene
        if old is not None:
            for path in {normal_path(f.path) for f in old.files} - new_paths:
                self._unlink(path, scene.id)
        for path in new_paths:
            self.by_path[path] = scene.id
            key = basename_key(path)
            entries = tuple(e for e in self.by_basename.get(key, ()) if e.path != path)
            self.by_basename[key] = (*entries, FileEntry(path, scene.id))
        for performer in scene.performers:
            if performer.image_path:
                self.performer_images[performer.id] = performer.image_path

    def _unlink(self, path: str, scene_id: str) -> None:
        if self.by_path.get(path) == scene_id:
            del self.by_path[path]
        key = basename_key(path)
        remaining = tuple(e for e in self.by_basename.get(key, ()) if e.path != path)
        if remaining:
            self.by_basename[key] = remaining
        else:
            self.by_basename.pop(key, None)

    def _drop(self, scene_id: str) -> None:
        scene = self.scenes.pop(scene_id, None)
        if scene is not None:
            for path in {normal_path(f.path) for f in scene.files}:
                self._unlink(path, scene_id)


class Snapshot:
    """The index on disk: one JSON row per scene, the watermark and when it was last built in full."""

    def __init__(self, data_dir: Path) -> None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(data_dir) / "provider.db"
        self._lock = threading.Lock()
        with self._connect() as db:
            db.executescript(SNAPSHOT_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection that commits on success, rolls back on error, and is closed either way."""
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                yield db
        finally:
            db.close()

    def load(self, index: SceneIndex) -> int:
        """Fill `index` from the snapshot; returns how many scenes it held."""
        with self._lock, self._connect() as db:
            rows = db.execute("SELECT data FROM scenes").fetchall()
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        index.upsert(StashScene.model_validate_json(row[0]) for row in rows)
        index.watermark = max(index.watermark, float(meta.get("watermark", 0)))
        index.built_at = float(meta.get("built_at", 0))
        return len(rows)

    def save(self, index: SceneIndex, scenes: Iterable[StashScene], full: bool = False) -> None:
        """Write `scenes` (all of them when `full`: the snapshot then holds exactly the index)."""
        rows = [(scene.id, scene.model_dump_json()) for scene in scenes]
        with self._lock, self._connect() as db:
            if full:
                db.execute("DELETE FROM scenes")
            db.executemany("INSERT OR REPLACE INTO scenes (id, data) VALUES (?, ?)", rows)
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                           [("watermark", json.dumps(index.watermark)), ("built_at", json.dumps(index.built_at))])
