"""Local state in one SQLite file under `data_dir`, shared by every worker process of a host.

Holds: the Plex path index (file path -> ratingKey, a cache of Plex's listings), the persistent Plex
client identifier, breaker state per process, and a short outcome log for `status`. Nothing here
decides whether Plex is written to: those decisions come from Plex itself (pipeline/metadata.py), so
several hosts, each with its own state file, decide alike. WAL mode lets threads and processes read
while one writes; each thread gets its own connection.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plex_paths (
    path TEXT PRIMARY KEY,
    basename TEXT NOT NULL,
    rating_key INTEGER NOT NULL,
    section_id INTEGER NOT NULL,
    added_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS plex_paths_basename ON plex_paths (basename);
CREATE INDEX IF NOT EXISTS plex_paths_rating_key ON plex_paths (rating_key);
CREATE TABLE IF NOT EXISTS plex_sections (
    section_id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    watermark INTEGER NOT NULL DEFAULT 0,
    built_at REAL NOT NULL DEFAULT 0,
    refreshed_at REAL NOT NULL DEFAULT 0
);
DROP TABLE IF EXISTS written;
DROP TABLE IF EXISTS breaker;
CREATE TABLE IF NOT EXISTS breakers (
    owner TEXT NOT NULL,
    service TEXT NOT NULL,
    state TEXT NOT NULL,
    failures INTEGER NOT NULL,
    opened_at REAL,
    last_error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (owner, service)
);
CREATE TABLE IF NOT EXISTS outcomes (
    ts REAL NOT NULL,
    scene_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS outcomes_ts ON outcomes (ts);
"""

OUTCOME_RETENTION_SECONDS = 7 * 86400
ERROR_OUTCOMES = ("failed", "dead_letter", "not_found")


@dataclass(frozen=True)
class IndexedPath:
    path: str
    rating_key: int
    section_id: int
    added_at: int = 0  # the item's addedAt in Plex (epoch seconds)


class StateStore:
    """Thread-safe access to the state file; cheap to create, one connection per thread."""

    def __init__(self, data_dir: Path, outcome_retention_seconds: float = OUTCOME_RETENTION_SECONDS) -> None:
        self.data_dir = Path(data_dir)
        self.outcome_retention_seconds = outcome_retention_seconds
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / "state.db"
        self._local = threading.local()
        self._connection().executescript(SCHEMA)  # executescript commits by itself

    # --- plumbing ----------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None or getattr(self._local, "pid", None) != os.getpid():
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
            self._local.pid = os.getpid()
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        return self._connection().execute(sql, tuple(params)).fetchall()

    # --- identity ----------------------------------------------------------------------------
    def client_identifier(self) -> str:
        """One UUID per installation, made once and kept (a new one makes Plex notify its owner)."""
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key='client_identifier'").fetchone()
            if row:
                return str(row[0])
            value = f"stash2plex-{uuid.uuid4()}"
            db.execute("INSERT INTO meta (key, value) VALUES ('client_identifier', ?)", (value,))
            return value

    # --- path index --------------------------------------------------------------------------
    def replace_section_paths(self, section_id: int, title: str, rows: list[IndexedPath], watermark: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM plex_paths WHERE section_id=?", (section_id,))
            self._insert_paths(db, rows)
            now = time.time()
            db.execute(
                "INSERT INTO plex_sections (section_id, title, watermark, built_at, refreshed_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(section_id) DO UPDATE SET title=excluded.title, watermark=excluded.watermark, "
                "built_at=excluded.built_at, refreshed_at=excluded.refreshed_at",
                (section_id, title, watermark, now, now),
            )

    def add_section_paths(self, section_id: int, rows: list[IndexedPath], watermark: int) -> None:
        with self.transaction() as db:
            self._insert_paths(db, rows)
            db.execute(
                "UPDATE plex_sections SET watermark=MAX(watermark, ?), refreshed_at=? WHERE section_id=?",
                (watermark, time.time(), section_id),
            )

    @staticmethod
    def _insert_paths(db: sqlite3.Connection, rows: list[IndexedPath]) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO plex_paths (path, basename, rating_key, section_id, added_at) VALUES (?,?,?,?,?)",
            [(r.path, os.path.basename(r.path).casefold(), r.rating_key, r.section_id, r.added_at) for r in rows],
        )

    def items_added_since(self, section_id: int, floor: int) -> int:
        """How many indexed items of the section Plex added at or after `floor` (epoch seconds)."""
        rows = self._query("SELECT COUNT(DISTINCT rating_key) FROM plex_paths WHERE section_id=? AND added_at>=?",
                           (section_id, floor))
        return int(rows[0][0])

    def known_rating_keys(self, rating_keys: list[int]) -> set[int]:
        """The given ratingKeys that the path index holds."""
        if not rating_keys:
            return set()
        marks = ",".join("?" * len(rating_keys))
        return {int(r[0]) for r in self._query(f"SELECT DISTINCT rating_key FROM plex_paths WHERE rating_key IN ({marks})", rating_keys)}

    # --- the index refresh, one per cooldown for every process of the host ---------------------
    def claim_index_refresh(self, cooldown: float, force: bool = False) -> bool:
        """True when this caller may refresh the index now: no process of this host has claimed a
        refresh in the last `cooldown` seconds (checked and claimed in one transaction)."""
        now = time.time()
        if not force and abs(now - self._meta_float("index_refresh_claimed")) < cooldown:
            return False  # the common case, answered without taking the write lock
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key='index_refresh_claimed'").fetchone()
            if not force and row and abs(now - float(row[0])) < cooldown:
                return False
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('index_refresh_claimed', ?)", (repr(now),))
            return True

    def finish_index_refresh(self) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('index_refresh_finished', ?)", (repr(time.time()),))

    def index_refresh_running(self) -> bool:
        """A refresh was claimed and has not finished yet (by this or another process)."""
        return self._meta_float("index_refresh_finished") < self._meta_float("index_refresh_claimed")

    def release_index_refresh(self) -> None:
        """Let the next claim succeed at once, whatever the cooldown (a Plex scan was just asked for)."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('index_refresh_claimed', '0')")

    def _meta_float(self, key: str) -> float:
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return float(rows[0][0]) if rows else 0.0

    def forget_rating_key(self, rating_key: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM plex_paths WHERE rating_key=?", (rating_key,))

    def sections(self) -> dict[int, dict[str, Any]]:
        rows = self._query("SELECT section_id, title, watermark, built_at, refreshed_at FROM plex_sections")
        return {r[0]: {"title": r[1], "watermark": r[2], "built_at": r[3], "refreshed_at": r[4]} for r in rows}

    def find_path(self, path: str) -> IndexedPath | None:
        rows = self._query("SELECT path, rating_key, section_id FROM plex_paths WHERE path=?", (path,))
        return IndexedPath(*rows[0]) if rows else None

    def find_basename(self, basename: str) -> list[IndexedPath]:
        rows = self._query(
            "SELECT path, rating_key, section_id FROM plex_paths WHERE basename=? ORDER BY path", (basename.casefold(),)
        )
        return [IndexedPath(*row) for row in rows]

    def path_count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM plex_paths")[0][0])

    # --- breaker and outcomes ----------------------------------------------------------------
    def save_breaker(self, owner: str, state: str, failures: int, opened_at: float | None, last_error: str | None,
                     service: str = "plex") -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO breakers (owner, service, state, failures, opened_at, last_error, updated_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (owner, service, state, failures, opened_at, last_error, time.time()),
            )

    def forget_breakers(self, owners: list[str]) -> None:
        """Drop the breaker rows of these owners (worker processes that are gone)."""
        with self.transaction() as db:
            db.executemany("DELETE FROM breakers WHERE owner = ?", [(owner,) for owner in owners])

    def breakers(self) -> list[dict[str, Any]]:
        """Every process's Plex and Stash breaker, newest change first."""
        rows = self._query("SELECT owner, service, state, failures, opened_at, last_error, updated_at FROM breakers "
                           "ORDER BY updated_at DESC")
        keys = ("owner", "service", "state", "failures", "opened_at", "last_error", "updated_at")
        return [dict(zip(keys, row)) for row in rows]

    def record_outcomes(self, rows: list[tuple[str, str, str | None]]) -> None:
        if not rows:
            return
        now = time.time()
        with self.transaction() as db:
            db.executemany("INSERT INTO outcomes (ts, scene_id, outcome, detail) VALUES (?,?,?,?)", [(now, *r) for r in rows])
            db.execute("DELETE FROM outcomes WHERE ts < ?", (now - self.outcome_retention_seconds,))

    def outcome_counts(self, since: float) -> dict[str, int]:
        rows = self._query("SELECT outcome, COUNT(*) FROM outcomes WHERE ts >= ? GROUP BY outcome", (since,))
        return {r[0]: int(r[1]) for r in rows}

    def outcomes_since(self, since: float) -> dict[str, tuple[str, str]]:
        """scene id -> (latest outcome, detail) recorded at or after `since`."""
        rows = self._query("SELECT scene_id, outcome, COALESCE(detail, '') FROM outcomes WHERE ts >= ? ORDER BY ts", (since,))
        return {str(scene_id): (outcome, detail) for scene_id, outcome, detail in rows}

    def last_error(self) -> dict[str, Any] | None:
        """The newest outcome that is a failure an operator may need to act on."""
        marks = ",".join("?" * len(ERROR_OUTCOMES))
        rows = self._query(f"SELECT ts, scene_id, outcome, detail FROM outcomes WHERE outcome IN ({marks}) "
                           "ORDER BY ts DESC LIMIT 1", ERROR_OUTCOMES)
        return dict(zip(("ts", "scene_id", "outcome", "detail"), rows[0])) if rows else None
