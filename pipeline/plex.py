"""The Plex client: plexapi for the server handshake and sections, lean XML requests for the hot path.

Every request goes through one place (`_request`) that applies the circuit breaker, the shared rate
limit, both timeouts (connect, read), the persistent `X-Plex-Client-Identifier`, and turns every
failure into a typed error. Reads are batched: a section listing is paged 500 items at a time and
full items come `/library/metadata/1,2,3` many at once, so a bulk sync costs about one edit request
(plus a poster upload when the screenshot changed) per scene.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import plexapi
import requests
from plexapi.exceptions import BadRequest, Unauthorized
from plexapi.server import PlexServer

from pipeline.breaker import CircuitBreaker
from pipeline.config import Settings
from pipeline.broker_address import redact_url
from pipeline.errors import (
    AuthError,
    NotInPlexYet,
    PermanentError,
    PlexDown,
    RateLimited,
    SyncError,
    TransientError,
)
from pipeline.models import Actor, PlexItemState
from pipeline.pacing import RateLimiter

LISTING_PAGE = 500
ITEMS_PER_FETCH = 100
DEFAULT_RETRY_AFTER = 5.0

RequestListener = Callable[[str, float, int | None], None]


class ItemGone(NotInPlexYet):
    """The ratingKey we knew is no longer in Plex (deleted or re-added): match again."""


@dataclass(frozen=True)
class Section:
    id: int
    title: str
    type: str
    locations: tuple[str, ...] = ()


@dataclass(frozen=True)
class ListedItem:
    rating_key: int
    added_at: int
    files: tuple[str, ...]


class PlexClient:
    def __init__(
        self,
        settings: Settings,
        client_identifier: str,
        breaker: CircuitBreaker | None = None,
        limiter: RateLimiter | None = None,
        on_request: RequestListener | None = None,
    ) -> None:
        if settings.plex_token is None:
            raise PermanentError("plex_token is not set (STASH2PLEX_PLEX_TOKEN or the Stash plugin setting)")
        self.url = settings.plex_url
        self.settings = settings
        self._token = settings.plex_token.get_secret_value()
        self.timeout = (settings.plex_connect_timeout, settings.plex_read_timeout)
        self.breaker = breaker or CircuitBreaker(settings.breaker_failures, settings.breaker_reset_seconds)
        self.limiter = limiter or RateLimiter(settings.plex_max_rps)
        self.on_request = on_request
        self.requests_sent: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        # One identifier per installation, on every request (plexapi's default changes with the MAC).
        plexapi.X_PLEX_IDENTIFIER = client_identifier
        plexapi.BASE_HEADERS["X-Plex-Client-Identifier"] = client_identifier
        plexapi.BASE_HEADERS["X-Plex-Product"] = "stash2plex"
        self.session = requests.Session()
        self._server: PlexServer | None = None
        self._sections: list[Section] | None = None

    # --- transport ---------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {**plexapi.BASE_HEADERS, "X-Plex-Token": self._token, "Accept": "application/xml"}

    def _request(self, kind: str, method: str, path: str, *, params: Any = None, data: bytes | None = None,
                 headers: dict[str, str] | None = None) -> ET.Element | None:
        """One Plex request, guarded and classified. Returns the parsed XML (None for an empty body)."""
        self.breaker.before_call()
        self.limiter.acquire()
        started = time.perf_counter()
        status: int | None = None
        error: SyncError | None
        try:
            response = self.session.request(method, f"{self.url}{path}", params=params, data=data,
                                            headers={**self._headers(), **(headers or {})}, timeout=self.timeout)
            status = response.status_code
            error = self._classify_status(response)
        except requests.ConnectTimeout:
            error = PlexDown(f"Plex at {redact_url(self.url)} did not accept a connection within {self.timeout[0]:g} s")
        except requests.ReadTimeout:
            error = TransientError(f"Plex at {redact_url(self.url)} did not answer within {self.timeout[1]:g} s ({kind})")
        except requests.ConnectionError:
            error = PlexDown(f"Plex at {redact_url(self.url)} refused the connection: is it running?")
        except requests.RequestException as exc:  # a broken response; every path must settle the breaker
            error = TransientError(f"Plex at {redact_url(self.url)} failed the {kind} request ({type(exc).__name__})")
        finally:
            self._count(kind, time.perf_counter() - started, status)
        if error is not None:
            self.breaker.record_failure(error)
            raise error
        self.breaker.record_success()
        body = response.content
        return ET.fromstring(body) if body.strip() else None

    def _classify_status(self, response: requests.Response) -> SyncError | None:
        status = response.status_code
        if status in (200, 201, 204):
            return None
        where = redact_url(self.url)
        if status in (401, 403):
            return AuthError(f"Plex at {where} refused the token ({status}): check plex_token")
        if status == 404:
            return ItemGone(f"Plex at {where} has no such item or section (404)")
        if status == 429:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            self.limiter.pause(retry_after)
            return RateLimited(f"Plex at {where} asked to slow down (429, retry after {retry_after:g} s)", retry_after=retry_after)
        if status >= 500:
            return TransientError(f"Plex at {where} answered {status}")
        return PermanentError(f"Plex at {where} rejected the request ({status})")

    def _count(self, kind: str, seconds: float, status: int | None) -> None:
        with self._count_lock:
            self.requests_sent[kind] += 1
        if self.on_request is not None:
            self.on_request(kind, seconds, status)

    # --- server and sections (plexapi) -------------------------------------------------------
    def server(self) -> PlexServer:
        """The plexapi server object (one `GET /`), created on first use."""
        if self._server is None:
            self.breaker.before_call()
            where = redact_url(self.url)
            started = time.perf_counter()
            error: SyncError | None = None
            try:
                self._server = PlexServer(self.url, self._token, session=self.session, timeout=self.timeout)
            except Unauthorized:
                error = AuthError(f"Plex at {where} refused the token (401): check plex_token")
            except BadRequest as exc:
                error = TransientError(f"Plex at {where} failed the handshake: {str(exc).split(';')[0]}")
            except requests.ConnectionError:
                error = PlexDown(f"Plex at {where} refused the connection: is it running?")
            except requests.Timeout:
                error = TransientError(f"Plex at {where} timed out during the handshake")
            except Exception as exc:  # noqa: BLE001 - an unreadable answer: classified, and the breaker settled
                error = TransientError(f"Plex at {where} gave an unreadable handshake ({type(exc).__name__})")
            finally:
                self._count("server", time.perf_counter() - started, None)
            if error is not None:
                self.breaker.record_failure(error)
                raise error
            self.breaker.record_success()
        return self._server

    def sections(self) -> list[Section]:
        """The movie sections to sync: those named in `plex_library`, or every movie section."""
        if self._sections is None:
            root = self._request("sections", "GET", "/library/sections")
            found = [
                Section(int(d.get("key", 0)), d.get("title", ""), d.get("type", ""),
                        tuple(loc.get("path", "") for loc in d.iter("Location")))
                for d in (root.iter("Directory") if root is not None else [])
            ]
            wanted = [name.casefold() for name in self.settings.plex_library]
            if wanted:
                chosen = [s for s in found if s.title.casefold() in wanted]
                missing = set(wanted) - {s.title.casefold() for s in chosen}
                if missing:
                    titles = ", ".join(s.title for s in found) or "none"
                    raise PermanentError(f"plex_library names {sorted(missing)} which Plex does not have (it has: {titles})")
            else:
                chosen = [s for s in found if s.type == "movie"]
            self._sections = chosen
        return self._sections

    # --- reads -------------------------------------------------------------------------------
    def iter_listing(self, section_id: int, sort: str = "addedAt:desc", page_size: int = LISTING_PAGE,
                     added_after: int | None = None) -> Iterator[tuple[int, list[ListedItem]]]:
        """(total, page) of a section's items with their file paths, newest first.

        `added_after` (epoch seconds) keeps only the items added later, filtered by Plex itself
        (`addedAt>>=<epoch>`, the filter form plexapi's `search(filters={"addedAt>>": ...})` builds),
        so `total` counts only those.
        """
        params: dict[str, str | int] = {"type": 1, "sort": sort, "includeGuids": 0, "checkFiles": 0}
        if added_after is not None:
            params["addedAt>>"] = int(added_after)
        start = 0
        while True:
            root = self._request("listing", "GET", f"/library/sections/{section_id}/all", params=params,
                                 headers={"X-Plex-Container-Start": str(start), "X-Plex-Container-Size": str(page_size)})
            if root is None:
                return
            total = int(root.get("totalSize") or root.get("size") or 0)
            page = [
                ListedItem(int(v.get("ratingKey", 0)), int(v.get("addedAt") or 0),
                           tuple(p.get("file", "") for p in v.iter("Part") if p.get("file")))
                for v in root
                if v.get("ratingKey")
            ]
            yield total, page
            start += len(page)
            if not page or start >= total:
                return

    def fetch_items(self, rating_keys: list[int]) -> dict[int, PlexItemState]:
        """Full items by ratingKey, many per request; keys Plex does not have are absent."""
        found: dict[int, PlexItemState] = {}
        unique = list(dict.fromkeys(rating_keys))
        for start in range(0, len(unique), ITEMS_PER_FETCH):
            chunk = unique[start:start + ITEMS_PER_FETCH]
            try:
                root = self._request("metadata", "GET", f"/library/metadata/{','.join(map(str, chunk))}",
                                     params={"checkFiles": 0, "includeExtras": 0})
            except ItemGone:
                continue  # every key of the chunk is gone; the caller matches those scenes again
            for video in root if root is not None else []:
                if video.get("ratingKey"):
                    item = parse_item(video)
                    found[item.rating_key] = item
        return found

    # --- writes ------------------------------------------------------------------------------
    def edit(self, section_id: int, rating_key: int, params: dict[str, str]) -> None:
        """ONE edit request carrying every changed field (and its lock)."""
        self._request("edit", "PUT", f"/library/sections/{section_id}/all",
                      params={"type": 1, "id": rating_key, **params})

    def upload_poster(self, rating_key: int, image: bytes) -> None:
        """Upload the poster's bytes (never a URL: a Stash URL would need its API key)."""
        self._request("poster", "POST", f"/library/metadata/{rating_key}/posters", data=image,
                      headers={"Content-Type": "image/jpeg" if image[:2] == b"\xff\xd8" else "image/png"})

    def refresh(self, rating_key: int) -> None:
        """Ask Plex to refresh an item's metadata from its library's agent (push_mode=refresh)."""
        self._request("refresh", "PUT", f"/library/metadata/{rating_key}/refresh")

    def scan(self, section_id: int, path: str | None = None) -> None:
        """Ask Plex to scan a folder of a section (used when a file is not in Plex yet)."""
        self._request("scan", "GET", f"/library/sections/{section_id}/refresh", params={"path": path} if path else None)


def _retry_after(value: str | None) -> float:
    try:
        return max(0.5, min(float(value), 3600.0)) if value else DEFAULT_RETRY_AFTER
    except ValueError:
        return DEFAULT_RETRY_AFTER


def parse_item(video: ET.Element) -> PlexItemState:
    """A full `<Video>` element as `PlexItemState`."""
    rating = video.get("userRating")
    return PlexItemState(
        rating_key=int(video.get("ratingKey", 0)),
        section_id=int(video.get("librarySectionID") or 0),
        title=video.get("title", ""),
        studio=video.get("studio", ""),
        summary=video.get("summary", ""),
        tagline=video.get("tagline", ""),
        originallyAvailableAt=(video.get("originallyAvailableAt") or "")[:10],
        userRating=float(rating) if rating else None,
        genres=[g.get("tag", "") for g in video.findall("Genre")],
        collections=[c.get("tag", "") for c in video.findall("Collection")],
        labels=[label.get("tag", "") for label in video.findall("Label")],
        actors=[Actor(name=r.get("tag", ""), role=r.get("role", ""), thumb=r.get("thumb") or None) for r in video.findall("Role")],
        locked={f.get("name", "") for f in video.findall("Field") if f.get("locked") == "1"},
        thumb=video.get("thumb"),
        files=[p.get("file", "") for p in video.iter("Part") if p.get("file")],
        updated_at=int(video.get("updatedAt") or 0),
    )
