"""A small, loud Stash GraphQL client: one scene, many scenes in one request, paged listings, settings.

Auth is the `ApiKey` header (or the plugin's session cookie); the key never goes into a URL.
Every request goes through `_send`, guarded by a circuit breaker of its own (the Stash breaker), and
failures become typed errors:

| what Stash did                                  | error                                            |
|-------------------------------------------------|--------------------------------------------------|
| refused the connection, 502/503/504, breaker open | `StashDown`: deferred without spending retries |
| 500, 429, read timeout                          | `TransientError` (retried); `StashDown` once it has opened the breaker |
| 401/403                                         | `AuthError` (permanent)                          |
| GraphQL errors                                  | `PermanentError` (retrying cannot help)          |

So an outage of any length costs no retry budget: the failure that opens the breaker and every call
while it is open are deferrals, bounded by `max_defer_days` (pipeline/policy.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from pipeline import stash_queries as q
from pipeline.breaker import BreakerState, CircuitBreaker
from pipeline.config import PLUGIN_ID, Settings
from pipeline.broker_address import redact_url
from pipeline.errors import AuthError, PermanentError, StashBreakerOpen, StashDown, SyncError, TransientError
from pipeline.metadata import strip_secret_query
from pipeline.models import StashScene

PAGE_SIZE = 200
IDS_PER_REQUEST = 200
DOWN_STATUSES = (502, 503, 504)  # a proxy or Stash itself saying "not now"

# "Updated since" and Stash's time zone. Stash keeps `updated_at` as text in its server's local time
# and compares a timestamp criterion with it AS TEXT, so no cut-off text compares right in every zone:
# a UTC cut-off misses the last |offset| hours of edits west of UTC and takes in `offset` hours of
# older ones east of it. So the filter asks for the cut-off minus the widest offset there is (it can
# only take in too much, never too little, whatever the zone), sorted newest first; the client keeps
# the scenes whose `updated_at` (which carries its offset, so it is an absolute time) is after the
# cut-off, and stops paging at the first scene older than the cut-off minus one DST shift (the text
# order can be an hour off around a DST change). Cost: the scenes of the window, plus at most a page.
ZONE_SLACK = timedelta(hours=14)  # UTC+14 (Kiribati) .. UTC-12: the widest offsets in use
DST_SLACK = timedelta(hours=1)


def iso_since(seconds: float, now: float | None = None) -> str:
    """The absolute cut-off `seconds` ago, in UTC (`iter_scene_pages` makes Stash compare it right)."""
    moment = (time.time() if now is None else now) - seconds
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def stash_breaker(settings: Settings, on_change: Callable[[CircuitBreaker], None] | None = None) -> CircuitBreaker:
    """The Stash circuit breaker of one process (same thresholds as Plex's)."""
    return CircuitBreaker(settings.breaker_failures, settings.breaker_reset_seconds, on_change=on_change,
                          service="stash", refusal=StashBreakerOpen)


def stash_time(text: str | None) -> datetime | None:
    """A Stash timestamp (RFC 3339 with its offset) as an aware datetime; None when it has no offset or does not parse."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class StashClient:
    def __init__(self, settings: Settings, session: requests.Session | None = None,
                 breaker: CircuitBreaker | None = None) -> None:
        self.url = settings.stash_url
        self.timeout = settings.stash_timeout
        self.breaker = breaker or stash_breaker(settings)
        self.session = session or requests.Session()
        if settings.stash_api_key is not None:
            self.session.headers["ApiKey"] = settings.stash_api_key.get_secret_value()
        if settings.stash_session_cookie is not None:
            self.session.cookies.set("session", settings.stash_session_cookie.get_secret_value())

    # --- transport ---------------------------------------------------------------------------
    def _send(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        """One request to Stash through the breaker; a sick-server answer raises a typed error (module docstring)."""
        self.breaker.before_call()
        where = redact_url(self.url)
        error: SyncError | None = None
        response: requests.Response | None = None
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.ConnectTimeout:
            error = StashDown(f"Stash at {where} did not accept a connection within {self.timeout:g} s ({what})")
        except requests.ReadTimeout:
            error = TransientError(f"Stash at {where} did not answer within {self.timeout:g} s ({what})")
        except requests.ConnectionError:
            error = StashDown(f"Stash at {where} is unreachable ({what}): check stash_url and that Stash runs")
        except requests.RequestException as exc:
            error = TransientError(f"Stash at {where} failed the {what} request ({type(exc).__name__})")
        if response is not None:
            status = response.status_code
            if status in DOWN_STATUSES:
                error = StashDown(f"Stash at {where} answered {status} ({what})")
            elif status >= 500 or status == 429:
                error = TransientError(f"Stash at {where} answered {status} ({what})")
        if error is None:
            assert response is not None
            self.breaker.record_success()
            return response
        self.breaker.record_failure(error)
        if self.breaker.state != BreakerState.CLOSED and not isinstance(error, StashDown):
            # This failure opened the breaker (or failed its trial): Stash is sick, so defer like an outage.
            error = StashDown(f"{error} (Stash breaker {self.breaker.state.value})")
        raise error

    def _post(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        where = redact_url(self.url)
        response = self._send("POST", f"{self.url}/graphql", "GraphQL",
                              json={"query": query, "variables": variables or {}})
        if response.status_code in (401, 403):
            raise AuthError(f"Stash at {where} refused the credentials ({response.status_code}): check stash_api_key")
        try:
            payload = response.json()
        except ValueError:
            raise TransientError(f"Stash at {where} answered {response.status_code} without JSON") from None
        if payload.get("errors"):
            first = payload["errors"][0].get("message", "unknown error")
            raise PermanentError(f"Stash GraphQL error: {first}")
        if response.status_code != 200:
            raise PermanentError(f"Stash at {where} answered {response.status_code}")
        return payload.get("data") or {}

    # --- reads -------------------------------------------------------------------------------
    def version(self) -> str:
        return str(self._post(q.VERSION)["version"]["version"])

    def find_scene(self, scene_id: str) -> StashScene | None:
        data = self._post(q.FIND_SCENE, {"id": str(scene_id)})["findScene"]
        return StashScene.from_graphql(data) if data else None

    def find_scenes(self, scene_ids: list[str]) -> dict[str, StashScene]:
        """Scenes by id, in as few requests as possible; ids Stash does not know are absent."""
        found: dict[str, StashScene] = {}
        unique = list(dict.fromkeys(str(i) for i in scene_ids))
        for start in range(0, len(unique), IDS_PER_REQUEST):
            chunk = unique[start:start + IDS_PER_REQUEST]
            try:
                scenes = [StashScene.from_graphql(raw) for raw in self._post(q.FIND_SCENES_BY_IDS, {"ids": chunk})["findScenes"]["scenes"]]
            except PermanentError:
                # Stash fails the whole lookup when one id is unknown (a scene deleted since its event).
                scenes = [scene for scene in map(self.find_scene, chunk) if scene is not None]
            found.update((scene.id, scene) for scene in scenes)
        return found

    def iter_scene_pages(self, since: str | None = None, per_page: int = PAGE_SIZE) -> Iterator[tuple[int, list[StashScene]]]:
        """(total count, page of scenes) for every scene, or those updated after `since` (ISO time with an offset)."""
        if since:
            yield from self._iter_updated_since(since, per_page)
            return
        page = 1
        while True:
            result = self._post(q.FIND_SCENES_PAGE, {"page": page, "perPage": per_page})["findScenes"]
            scenes = [StashScene.from_graphql(raw) for raw in result["scenes"]]
            yield int(result["count"]), scenes
            if len(scenes) < per_page or page * per_page >= int(result["count"]):
                return
            page += 1

    def _iter_updated_since(self, since: str, per_page: int) -> Iterator[tuple[int, list[StashScene]]]:
        """Scenes updated after `since`, whatever Stash's time zone (see ZONE_SLACK above).

        The total yielded with each page is an upper bound until the last page, which carries the
        exact number of scenes yielded.
        """
        cutoff = stash_time(since)
        if cutoff is None:
            raise ValueError(f"an updated-since cut-off needs a time with an offset, not {since!r}")
        wide = _utc_text(cutoff - ZONE_SLACK)
        page, read, kept_total = 1, 0, 0
        while True:
            result = self._post(q.FIND_SCENES_UPDATED_SINCE, {"since": wide, "page": page, "perPage": per_page})["findScenes"]
            scenes = [StashScene.from_graphql(raw) for raw in result["scenes"]]
            count = int(result["count"])
            read += len(scenes)
            times = [stash_time(scene.updated_at) for scene in scenes]
            # A scene whose time cannot be placed is kept: better one scene too many than one missed.
            kept = [scene for scene, at in zip(scenes, times) if at is None or at > cutoff]
            kept_total += len(kept)
            last = (len(scenes) < per_page or read >= count
                    or any(at is not None and at < cutoff - DST_SLACK for at in times))
            yield (kept_total if last else kept_total + count - read), kept
            if last:
                return
            page += 1

    def iter_scene_paths(self, per_page: int = 1000) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """(total count, page of {id, updated_at, files}) — the light listing used by reconcile and doctor."""
        page = 1
        while True:
            result = self._post(q.FIND_SCENE_PATHS_PAGE, {"page": page, "perPage": per_page})["findScenes"]
            yield int(result["count"]), result["scenes"]
            if len(result["scenes"]) < per_page or page * per_page >= int(result["count"]):
                return
            page += 1

    def plugin_settings(self, plugin_id: str = PLUGIN_ID) -> dict[str, Any]:
        plugins = self._post(q.PLUGIN_SETTINGS, {"include": [plugin_id]})["configuration"]["plugins"] or {}
        return dict(plugins.get(plugin_id) or {})

    def download(self, url: str) -> bytes:
        """An image Stash serves (screenshot, performer photo), authenticated by header, not by URL."""
        response = self._send("GET", strip_secret_query(url), "image download")
        if response.status_code in (401, 403):
            raise AuthError(f"Stash refused the image download ({response.status_code}): check stash_api_key")
        if response.status_code == 404:
            raise PermanentError("Stash has no image at that address")
        if response.status_code != 200:
            raise PermanentError(f"Stash image download answered {response.status_code}")
        return response.content


def load_settings_with_stash(**overrides: Any) -> "Settings":
    """Settings from env and file, then again with the plugin settings saved in Stash as the lowest layer.

    Stash being unreachable is not fatal here (the worker starts, and logs which URL failed);
    a bad value anywhere still raises `ConfigError` naming the key.
    """
    from pipeline.config import load_settings

    settings = load_settings(**overrides)
    try:
        saved = StashClient(settings).plugin_settings()
    except SyncError as error:
        logging.getLogger("stash2plex.config").warning("plugin settings not read from Stash: %s", error)
        return settings
    return load_settings(stash_settings=saved, **overrides) if saved else settings
