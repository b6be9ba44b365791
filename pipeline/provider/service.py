"""The provider's answers, served from the local index and never waiting long on Stash.

- A refresher thread keeps the index fresh: one full listing when there is no snapshot (and every
  `FULL_REBUILD_SECONDS`, which also forgets deleted scenes), else every `provider_refresh_seconds`
  the scenes updated since the watermark (minus `OVERLAP_SECONDS`: re-reading a few is harmless).
- A miss (an unknown ratingKey, a file no indexed scene holds) asks Stash once, directly, with
  `provider_stash_timeout` (2 s by default), and is remembered for `MISS_TTL_SECONDS`; while Stash is
  failing, misses are answered from the index at once.
- Images are fetched from Stash with the API key header and kept in a bounded in-memory cache.

Methods whose name ends in `_local` never touch the network (the event loop calls them directly);
the others may wait up to the Stash timeout (the HTTP layer runs them in a worker thread).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pipeline import stash_queries as q
from pipeline.config import Settings
from pipeline.breaker import CircuitBreaker
from pipeline.errors import AuthError, PermanentError, StashBreakerOpen, StashDown, SyncError, TransientError
from pipeline.logs import log_event, show_path
from pipeline.models import StashScene
from pipeline.provider.documents import container, image_container, match_item, provider_view, scene_images, scene_metadata
from pipeline.provider.index import SceneIndex, Snapshot, basename_key, normal_path
from pipeline.provider.matching import Candidate, MatchRequest, find_candidates
from pipeline.stash import StashClient, iso_since

logger = logging.getLogger("stash2plex.provider")

RATING_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
OVERLAP_SECONDS = 60.0
FULL_REBUILD_SECONDS = 6 * 3600.0
FULL_PAGE_SIZE = 500
MISS_TTL_SECONDS = 30.0
STASH_DOWN_SECONDS = 15.0
MIN_KICK_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 30.0
IMAGE_CACHE_BYTES = 64 * 1024 * 1024
MAX_DOCUMENTS = 50_000

FIND_SCENES_BY_PATH = f"""
query FindScenesByPath($path: String!) {{
  findScenes(filter: {{per_page: 50}}, scene_filter: {{path: {{value: $path, modifier: INCLUDES}}}}) {{
    count
    scenes {{{q.SCENE_FIELDS}    }}
  }}
}}
"""


class ProviderStash(StashClient):
    """The chain's Stash client plus the one look-up only the provider needs (scenes by file name)."""

    def scenes_with_path(self, fragment: str) -> list[StashScene]:
        data = self._post(FIND_SCENES_BY_PATH, {"path": fragment})["findScenes"]
        return [StashScene.from_graphql(raw) for raw in data["scenes"]]


@dataclass(frozen=True)
class Page:
    """Which part of a match list to answer (Plex's X-Plex-Container-Start / -Size)."""

    start: int = 0
    size: int = 20


DEFAULT_PAGE = Page()


@dataclass(frozen=True)
class Image:
    content: bytes
    content_type: str


class ImageUnavailable(Exception):
    """Stash could not hand over an image just now (down, slow, refused the key): answer 502."""


def content_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] == b"GIF8":
        return "image/gif"
    return "application/octet-stream"


class ProviderService:
    def __init__(self, settings: Settings, snapshot: Snapshot | None = None) -> None:
        self.settings = settings
        self.view = provider_view(settings)
        self.index = SceneIndex()
        self.snapshot = snapshot if snapshot is not None else Snapshot(settings.data_dir)
        quick = settings.model_copy(update={"stash_timeout": settings.provider_stash_timeout})
        slow_images = settings.model_copy(update={"stash_timeout": max(5.0, settings.provider_stash_timeout)})
        # One Stash breaker for the three clients, re-tried as soon as misses may ask Stash again.
        breaker = CircuitBreaker(settings.breaker_failures, min(settings.breaker_reset_seconds, STASH_DOWN_SECONDS),
                                 service="stash", refusal=StashBreakerOpen)
        self.bulk = ProviderStash(settings, breaker=breaker)  # the refresher's client: pages may take a while
        self.quick = ProviderStash(quick, breaker=breaker)  # look-ups on a miss: bounded
        self.images_client = ProviderStash(slow_images, breaker=breaker)
        self._documents: dict[tuple[str, str], tuple[StashScene, bytes]] = {}
        self._matches: dict[tuple[str, str], tuple[StashScene, dict[str, Any]]] = {}
        self._images: OrderedDict[str, Image] = OrderedDict()
        self._image_bytes = 0
        self._image_lock = threading.Lock()
        self._misses: dict[str, float] = {}
        self._stash_down_until = 0.0
        self._stash_failing = False
        self._last_refresh_ok = 0.0
        self._last_kick = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, refresher: bool = True) -> None:
        """Load the snapshot (answers can start at once), then keep the index fresh in the background."""
        started = time.monotonic()
        loaded = self.snapshot.load(self.index)
        log_event(logger, "provider_snapshot_loaded", scenes=loaded, ms=round((time.monotonic() - started) * 1000))
        if refresher:
            self._thread = threading.Thread(target=self._run, name="provider-refresher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def kick(self) -> None:
        """Ask the refresher for an incremental refresh now (at most every MIN_KICK_SECONDS)."""
        now = time.monotonic()
        if now - self._last_kick >= MIN_KICK_SECONDS:
            self._last_kick = now
            self._wake.set()

    # --- keeping the index fresh -------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            delay = self.settings.provider_refresh_seconds
            try:
                self.refresh_once()
                failures = 0
            except SyncError as error:
                failures += 1
                self._note_stash_failure(error)
            except (sqlite3.Error, OSError, ValueError) as exc:  # the snapshot's disk, or a payload we cannot read
                failures += 1
                log_event(logger, "provider_refresh_failed", level=logging.ERROR, error=f"{type(exc).__name__}: {exc}")
            if failures:
                delay = min(MAX_BACKOFF_SECONDS, self.settings.provider_refresh_seconds * 2 ** min(failures, 6))
            self._wake.wait(delay)
            self._wake.clear()

    def refresh_once(self) -> int:
        """One full listing or one incremental refresh; returns how many scenes changed."""
        if not self.index.built_at or time.time() - self.index.built_at > FULL_REBUILD_SECONDS:
            changed = self._full()
        else:
            changed = self._incremental()
        self._last_refresh_ok = time.time()
        self._note_stash_ok()
        return changed

    def _full(self) -> int:
        started = time.monotonic()
        scenes: list[StashScene] = []
        for _total, page in self.bulk.iter_scene_pages(per_page=FULL_PAGE_SIZE):
            scenes.extend(page)
        changed = self.index.replace_all(scenes)
        self.snapshot.save(self.index, scenes, full=True)
        self._misses.clear()
        log_event(logger, "provider_index_built", scenes=len(scenes), changed=changed,
                  seconds=round(time.monotonic() - started, 2))
        return changed

    def _incremental(self) -> int:
        now = time.time()
        since = iso_since(max(0.0, now - self.index.watermark) + OVERLAP_SECONDS, now=now)
        changed: list[StashScene] = []
        for _total, page in self.bulk.iter_scene_pages(since=since, per_page=FULL_PAGE_SIZE):
            changed.extend(self.index.upsert(page))
        if changed:
            self.snapshot.save(self.index, changed)
            self._misses.clear()
            log_event(logger, "provider_index_refreshed", changed=len(changed), scenes=len(self.index))
        return len(changed)

    def _note_stash_failure(self, error: SyncError) -> None:
        self._stash_down_until = time.monotonic() + STASH_DOWN_SECONDS
        if not self._stash_failing:
            self._stash_failing = True
            log_event(logger, "provider_stash_unreachable", level=logging.WARNING, error=str(error),
                      scenes=len(self.index))

    def _note_stash_ok(self) -> None:
        self._stash_down_until = 0.0
        if self._stash_failing:
            self._stash_failing = False
            log_event(logger, "provider_stash_back", scenes=len(self.index))

    def _may_ask_stash(self, key: str) -> bool:
        now = time.monotonic()
        if now < self._stash_down_until or self._misses.get(key, 0.0) > now:
            return False
        if len(self._misses) > 10_000:
            self._misses = {k: v for k, v in self._misses.items() if v > now}
        return True

    def _ask_stash(self, key: str, lookup: Any) -> list[StashScene]:
        """One bounded look-up; the key is remembered as a miss whatever the outcome."""
        self._misses[key] = time.monotonic() + MISS_TTL_SECONDS
        try:
            scenes: list[StashScene] = lookup()
        except (TransientError, StashDown, AuthError) as error:
            self._note_stash_failure(error)
            return []
        except PermanentError as error:
            log_event(logger, "provider_lookup_failed", level=logging.WARNING, error=str(error))
            return []
        changed = self.index.upsert(scenes)
        if changed:
            self.snapshot.save(self.index, changed)
        return scenes

    # --- match -------------------------------------------------------------------------------
    def match_local(self, request: MatchRequest, base: str, page: Page = DEFAULT_PAGE) -> bytes | None:
        """The answer from the index, or None when nothing matched and Stash may know more."""
        if self._adult_hidden(request):
            return self._match_answer([], base, page)
        found = find_candidates(request, self.index, self.settings)
        if found or not request.filename or not self._may_ask_stash(self._miss_key(request.filename)):
            if not found:
                self._log_no_match(request)
            return self._match_answer(found, base, page)
        return None

    def match(self, request: MatchRequest, base: str, page: Page = DEFAULT_PAGE) -> bytes:
        """Like `match_local`, asking Stash (bounded) for scenes with the file's name on a miss."""
        answer = self.match_local(request, base, page)
        if answer is not None:
            return answer
        assert request.filename is not None
        key = self._miss_key(request.filename)
        name = normal_path(request.filename).rsplit("/", 1)[-1]
        self.kick()
        self._ask_stash(key, lambda: self.quick.scenes_with_path(name))
        found = find_candidates(request, self.index, self.settings)
        if not found:
            self._log_no_match(request)
        return self._match_answer(found, base, page)

    def _adult_hidden(self, request: MatchRequest) -> bool:
        """An adult-aware provider lists explicit items only when Plex says includeAdult=1."""
        return self.settings.provider_adult and not request.includeAdult

    @staticmethod
    def _miss_key(filename: str) -> str:
        return "file:" + basename_key(filename)

    def _log_no_match(self, request: MatchRequest) -> None:
        log_event(logger, "provider_no_match", level=logging.DEBUG,
                  filename=show_path(request.filename, self.settings) if request.filename else None,
                  manual=int(request.manual))

    def _match_answer(self, found: list[Candidate], base: str, page: Page) -> bytes:
        known = [(c, scene) for c in found if (scene := self.index.get(c.scene_id)) is not None]
        items = [{**self._match_item(scene, base), "score": c.score} for c, scene in known[page.start:page.start + page.size]]
        return json.dumps(container(items, offset=page.start, total=len(known))).encode()

    def _match_item(self, scene: StashScene, base: str) -> dict[str, Any]:
        key = (scene.id, base)
        cached = self._matches.get(key)
        if cached is not None and cached[0] is scene:
            return cached[1]
        item = match_item(scene, self.view, base)
        if len(self._matches) > MAX_DOCUMENTS:
            self._matches.clear()
        self._matches[key] = (scene, item)
        return item

    # --- metadata ----------------------------------------------------------------------------
    def metadata_local(self, rating_key: str, base: str) -> bytes | None:
        """The MediaContainer of one scene from the index, as JSON bytes; None when not indexed."""
        scene = self.index.get(rating_key)
        if scene is None:
            return None
        key = (scene.id, base)
        cached = self._documents.get(key)
        if cached is not None and cached[0] is scene:
            return cached[1]
        body = json.dumps(container([scene_metadata(scene, self.view, base)])).encode()
        if len(self._documents) > MAX_DOCUMENTS:
            self._documents.clear()
        self._documents[key] = (scene, body)
        return body

    def find_scene(self, rating_key: str) -> StashScene | None:
        """The scene from the index, else from Stash within the provider's timeout; None if unknown."""
        scene = self.index.get(rating_key)
        if scene is not None or not RATING_KEY.match(rating_key) or not rating_key.isdigit():
            return scene
        if self._may_ask_stash("id:" + rating_key):
            self._ask_stash("id:" + rating_key, lambda: [s for s in [self.quick.find_scene(rating_key)] if s is not None])
        return self.index.get(rating_key)

    def metadata(self, rating_key: str, base: str) -> bytes | None:
        self.find_scene(rating_key)
        return self.metadata_local(rating_key, base)

    def images(self, rating_key: str, base: str) -> bytes | None:
        scene = self.find_scene(rating_key)
        if scene is None:
            return None
        return json.dumps(image_container(scene_images(scene, base, scene.title))).encode()

    # --- images ------------------------------------------------------------------------------
    def image_url(self, kind: str, object_id: str) -> str | None:
        """Stash's URL of a scene screenshot or a performer photo we know of (never handed out)."""
        if kind == "scene":
            scene = self.index.get(object_id)
            return scene.screenshot_url if scene is not None else None
        return self.index.performer_images.get(object_id)

    def image(self, kind: str, object_id: str) -> Image | None:
        """The image's bytes (cached); None when Stash has none; ImageUnavailable when Stash fails."""
        url = self.image_url(kind, object_id)
        if url is None:
            return None
        with self._image_lock:
            cached = self._images.get(url)
            if cached is not None:
                self._images.move_to_end(url)
                return cached
        try:
            data = self.images_client.download(url)
        except AuthError as error:
            log_event(logger, "provider_image_refused", level=logging.WARNING, kind=kind, id=object_id, error=str(error))
            raise ImageUnavailable(str(error)) from None
        except PermanentError:
            return None
        except (TransientError, StashDown) as error:
            self._note_stash_failure(error)
            raise ImageUnavailable(str(error)) from None
        image = Image(data, content_type(data))
        with self._image_lock:
            self._images[url] = image
            self._image_bytes += len(data)
            while self._image_bytes > IMAGE_CACHE_BYTES and self._images:
                _url, old = self._images.popitem(last=False)
                self._image_bytes -= len(old.content)
        return image

    # --- health ------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "scenes": len(self.index),
            "built": bool(self.index.built_at),
            "stash": "failing" if self._stash_failing else "ok",
            "last_refresh_age_seconds": round(time.time() - self._last_refresh_ok, 1) if self._last_refresh_ok else None,
        }
