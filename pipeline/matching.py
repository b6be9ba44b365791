"""Finding the Plex item that holds a scene's file.

Order: the exact path after `path_map` (Stash's mount point -> Plex's), then the case-insensitive
file name. No candidate -> `NotInPlexYet`; several -> `AmbiguousMatch` with strict matching (a
permanent error: guessing would write one scene's metadata onto another), else the candidate whose
path shares the longest tail with the scene's path, with a warning.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from pipeline.config import Settings
from pipeline.errors import AmbiguousMatch, NoFiles, NotInPlexYet
from pipeline.logs import log_event, show_path
from pipeline.plex import ListedItem, PlexClient
from pipeline.state import IndexedPath, StateStore

logger = logging.getLogger("stash2plex.matching")

REFRESH_COOLDOWN_SECONDS = 30.0  # at most one refresh per this many seconds, for all processes of a host
REFRESH_WAIT_SECONDS = 10.0  # how long a miss waits for a refresh another process is running
BUILD_WAIT_SECONDS = 300.0  # how long a process waits for the build another process is running
REFRESH_PAGE = 100
WATERMARK_SLACK_SECONDS = 120  # items Plex shows late with an older addedAt (scan commits) are still found


@dataclass(frozen=True)
class Match:
    rating_key: int
    section_id: int
    plex_path: str
    how: str  # "path" or "basename"


def map_path(path: str, path_map: list[tuple[str, str]]) -> str:
    """Rewrite Stash's path prefix to Plex's; the longest matching prefix wins."""
    for stash_prefix, plex_prefix in sorted(path_map, key=lambda pair: len(pair[0]), reverse=True):
        if path == stash_prefix or path.startswith(stash_prefix.rstrip("/") + "/"):
            return plex_prefix.rstrip("/") + path[len(stash_prefix.rstrip("/")):]
    return path


def _common_tail(a: str, b: str) -> int:
    parts_a, parts_b = a.casefold().split("/")[::-1], b.casefold().split("/")[::-1]
    count = 0
    for x, y in zip(parts_a, parts_b):
        if x != y:
            break
        count += 1
    return count


class PathIndex:
    """Every Plex Media Part path -> ratingKey, persisted in the state store (shared by a host's processes).

    Built once with one paged listing per section (500 items a page, by one process of the host while
    the others wait for it), rebuilt in full by the daily schedule to forget deleted items, and
    refreshed when a lookup misses, at most once per `REFRESH_COOLDOWN_SECONDS` for every process of
    the host (the claim is in `state.db`).

    A refresh costs O(new items), not O(library): Plex lists only the items added since the
    watermark minus `WATERMARK_SLACK_SECONDS` (`addedAt>>=`, filtered by Plex), newest first, and
    the listing stops as soon as every item it has not shown yet may be one the index already holds
    (Plex's `totalSize` of the window minus the items shown, against the indexed items of the window
    not shown yet). After a fresh scan the whole library sits in the slack window; the new items
    come first, so one page (or as many as the new items fill) answers.
    """

    def __init__(self, plex: PlexClient, store: StateStore) -> None:
        self.plex = plex
        self.store = store
        self._lock = threading.Lock()

    def ensure_built(self) -> None:
        """Build the index of any section that has none yet (once per installation, then persisted).

        One process of the host builds; the others wait for its build (up to `BUILD_WAIT_SECONDS`,
        then they build themselves). A build does not start the refresh cooldown: the index is new.
        """
        if self._built():
            return
        with self._lock:
            if self._built():
                return
            claimed = self.store.claim_index_refresh(REFRESH_COOLDOWN_SECONDS)
            if not claimed:
                self._wait_for_other_refresh(BUILD_WAIT_SECONDS)
                if self._built():
                    return
            try:
                self._build_missing()
            finally:
                if claimed:
                    self.store.finish_index_refresh()
                    self.store.release_index_refresh()

    def _built(self) -> bool:
        known = self.store.sections()
        return all(known.get(s.id, {}).get("built_at") for s in self.plex.sections())

    def _build_missing(self) -> None:
        known = self.store.sections()
        for section in self.plex.sections():
            if not known.get(section.id, {}).get("built_at"):
                self._build(section.id, section.title)

    def rebuild(self) -> int:
        with self._lock:
            self.store.claim_index_refresh(REFRESH_COOLDOWN_SECONDS, force=True)
            try:
                for section in self.plex.sections():
                    self._build(section.id, section.title)
            finally:
                self.store.finish_index_refresh()
        return self.store.path_count()

    def _build(self, section_id: int, title: str) -> None:
        rows: list[IndexedPath] = []
        watermark = 0
        for _total, page in self.plex.iter_listing(section_id):
            for item in page:
                watermark = max(watermark, item.added_at)
                rows.extend(_paths_of(item, section_id))
        self.store.replace_section_paths(section_id, title, rows, watermark)
        log_event(logger, "index_built", stage="match", section=title, paths=len(rows))

    def refresh(self, force: bool = False) -> int:
        """Add items Plex gained since the last look; returns how many paths were added.

        0 without asking Plex when a process of this host refreshed less than the cooldown ago (after
        waiting, up to `REFRESH_WAIT_SECONDS`, for that refresh to finish: its items are in the shared
        index then).
        """
        with self._lock:
            if not self.store.claim_index_refresh(REFRESH_COOLDOWN_SECONDS, force):
                self._wait_for_other_refresh()
                return 0
            try:
                self._build_missing()
                sections = self.store.sections()
                return sum(self._refresh_section(section.id, sections.get(section.id, {}).get("watermark", 0))
                           for section in self.plex.sections())
            finally:
                self.store.finish_index_refresh()

    def _wait_for_other_refresh(self, seconds: float = REFRESH_WAIT_SECONDS) -> None:
        deadline = time.monotonic() + seconds
        while self.store.index_refresh_running() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _refresh_section(self, section_id: int, watermark: int) -> int:
        floor = watermark - WATERMARK_SLACK_SECONDS
        indexed_in_window = self.store.items_added_since(section_id, floor)
        rows: list[IndexedPath] = []
        shown = shown_known = added = 0
        newest = watermark
        for total, page in self.plex.iter_listing(section_id, page_size=REFRESH_PAGE, added_after=floor - 1):
            known = self.store.known_rating_keys([item.rating_key for item in page])
            for item in page:
                newest = max(newest, item.added_at)
                rows.extend(_paths_of(item, section_id))
                if item.rating_key in known:
                    shown_known += 1
                else:
                    added += len(item.files)
            shown += len(page)
            if total - shown <= indexed_in_window - shown_known:
                break  # every item not shown yet may be one the index holds: nothing new is left
        self.store.add_section_paths(section_id, rows, newest)
        if added:
            log_event(logger, "index_refreshed", stage="match", section_id=section_id, paths=added, listed=shown)
        return added

    def expect_news(self) -> None:
        """Let the next miss refresh at once (a scan was just requested), whatever the cooldown."""
        self.store.release_index_refresh()

    def forget(self, rating_key: int) -> None:
        self.store.forget_rating_key(rating_key)


def _paths_of(item: ListedItem, section_id: int) -> list[IndexedPath]:
    return [IndexedPath(path, item.rating_key, section_id, item.added_at) for path in item.files]


class Matcher:
    def __init__(self, index: PathIndex, settings: Settings) -> None:
        self.index = index
        self.settings = settings

    def match(self, scene_id: str, files: list[str]) -> Match:
        """The Plex item for a scene's files; refreshes the index once on a miss."""
        if not files:
            raise NoFiles(f"scene {scene_id} has no file in Stash, so it cannot be found in Plex", stage="match")
        self.index.ensure_built()
        found = self._lookup(scene_id, files)
        if found is None:
            self.index.refresh()  # this process's refresh, or one another process just made: look again
            found = self._lookup(scene_id, files)
        if found is None:
            names = ", ".join(show_path(p, self.settings) for p in files)
            raise NotInPlexYet(f"no Plex item holds {names} (not scanned yet, or path_map is wrong)", stage="match")
        return found

    def _lookup(self, scene_id: str, files: list[str]) -> Match | None:
        mapped = [map_path(path, self.settings.path_map) for path in files]
        for path in mapped:
            hit = self.index.store.find_path(path)
            if hit is not None:
                return Match(hit.rating_key, hit.section_id, hit.path, "path")
        for path in mapped:
            candidates = self.index.store.find_basename(os.path.basename(path))
            by_key = {c.rating_key: c for c in candidates}
            if len(by_key) == 1:
                hit = next(iter(by_key.values()))
                return Match(hit.rating_key, hit.section_id, hit.path, "basename")
            if len(by_key) > 1:
                shown = [show_path(c.path, self.settings) for c in by_key.values()]
                if self.settings.strict_matching:
                    raise AmbiguousMatch(
                        f"{len(by_key)} Plex items hold a file named {os.path.basename(path)!r}: {', '.join(shown)}; "
                        "strict_matching is on, so none is updated (set path_map for exact matches)",
                        candidates=shown, stage="match",
                    )
                best = max(by_key.values(), key=lambda c: _common_tail(c.path, path))
                log_event(logger, "ambiguous_match_guessed", level=logging.WARNING, scene_id=scene_id, stage="match",
                          candidates=len(by_key), chosen=best.rating_key)
                return Match(best.rating_key, best.section_id, best.path, "basename")
        return None
