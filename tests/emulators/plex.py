"""A stateful emulator of the Plex Media Server HTTP API, as plexapi 4.18 uses it.

Emulated (enough for plexapi's `PlexServer`, `library`, `section.all()/search()`, `fetchItem(s)`,
`edit()`/`batchEdits()`/tag mixins, `uploadPoster()`, `refresh()` and `section.update(path=...)`):

- `GET /`, `GET /identity`, `GET /library`, `GET /library/sections[/]`.
- `GET /library/sections/{sid}/all`: listing with `sort` (`addedAt`, `updatedAt`, `titleSort`/`title`,
  `ratingKey`, each with an optional `:desc`; none means ratingKey order), a case-insensitive `title`
  substring filter, the date filters `addedAt>>=`/`addedAt<<=`/`updatedAt>>=`/`updatedAt<<=` (strictly
  after / before; an epoch or a relative `-30d`, `-2h`..., as plexapi's `search(filters=...)` sends
  them; `totalSize` counts the filtered items), `type` (only 1, movies, has items) and paging through
  the `X-Plex-Container-Start` / `X-Plex-Container-Size` request headers or query parameters. Listed
  items are PARTIAL like real Plex: at most 3 Genre, 2 Director/Writer/Country, 1 Collection, 3 Role
  (tag only), no Label/Producer/Mood/Style, no Field locks. Other parameters (`includeGuids`, ...)
  are ignored. `listed_items` counts the items every listing returned (what a listing costs).
- `GET /library/metadata/{rk}` and `/library/metadata/{rk1},{rk2},...`: FULL items (every tag, Role with
  role and thumb, `<Field name=... locked="1"/>` per lock, one Media/Part per file). Unknown keys are
  left out of a batch; a single unknown key is 404.
- `PUT /library/sections/{sid}/all?id=...`: the edit, atomic over all ids (validated first). Scalar
  `{field}.value`, `{field}.locked`, tag lists `{kind}[i].tag.tag` (REPLACES the whole list, the real
  Plex trap), `actor[i].tagging.text` (role), removals `{kind}[].tag.tag-=a,b` (each name quoted, as
  plexapi's `_tagHelper` sends it). Parameters no reference documents, such as `actor[i].tag.thumb`,
  are ignored as Plex ignores unknown parameters: an actor keeps the photo it had.
  Each edit bumps the item's `updatedAt` (strictly increasing per item) and answers 200, empty body.
- `POST /library/metadata/{rk}/posters` (and `/arts`): raw bytes (stored as sha256) or `?url=`.
- `PUT /library/metadata/{rk}/refresh` (recorded: `refreshed_keys()`). With `provider_url` set (a
  stash2plex provider, as if it were the library's agent), the refresh asks it as Plex does (`POST
  /library/metadata/matches` with the item's file, then `GET` the matched `key` and its poster) and
  stores the answer in every unlocked field before it answers (real Plex refreshes in the background);
  `GET /library/sections/{sid|all}/refresh[?path=P]` makes
  pending items (see `add_pending`) under P visible with a new ratingKey.
- Auth: `X-Plex-Token` header or query parameter, else 401 with an empty body. Distinct
  `X-Plex-Client-Identifier` values are collected in `client_identifiers`.

Not emulated: shows/seasons/episodes, music and photos, hubs, playlists, collections as objects,
images (`/thumb` URLs are 404), transcoding, sessions, plex.tv accounts, websocket alerts, real
metadata agents (locks are recorded but nothing overwrites unlocked fields), `/library/sections/{sid}`
itself, filters other than `title`, and the section filter/sort metadata (`includeMeta=1`,
`/library/sections/{sid}/collections`) that plexapi's `search(sort=..., filters=...)` validates against:
pass `sort` in the URL (`fetchItems('/library/sections/1/all?sort=addedAt:desc')`) instead.
Anything else answers 404.

Faults (401/404/429/5xx/stalls) come from the base class's `faults`; `go_down()`/`come_up()` refuse
connections, and this emulator also drops open keep-alive connections on `go_down()` so that a client's
pooled connection sees the outage too.

CLI: `python -m tests.emulators.plex --port N [--fixture FILE.json | --items N] [--token T]
[--scanned-at EPOCH [--scan-seconds S]] [--pending-every K --pending-limit M]` (a freshly scanned
library, and items a later section scan reveals); SIGUSR1 takes it down or back
up (an outage, state kept), see `http_base.serve_until_stopped`.
"""

from __future__ import annotations

import argparse
import bisect
import copy
import hashlib
import json
import re
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, Iterable
from urllib.parse import unquote

from .http_base import Emulator, Request, serve_until_stopped

Response = tuple[int, dict[str, str], bytes]

XML_CONTENT_TYPE = "text/xml;charset=utf-8"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
SERVER_VERSION = "1.41.0.0000"
FRIENDLY_NAME = "Emulated Plex"
DEFAULT_SECTION: dict[str, Any] = {"key": 1, "title": "Movies", "type": "movie", "locations": ["/data/videos"]}

# Editable scalar fields; the nullable ones are cleared to None (not "") by an empty value.
SCALAR_FIELDS = frozenset(
    "title titleSort originalTitle summary tagline studio contentRating originallyAvailableAt "
    "userRating rating audienceRating editionTitle".split()
)
NULLABLE_FIELDS = frozenset({"originallyAvailableAt", "userRating", "rating", "audienceRating"})
FLOAT_FIELDS = frozenset({"userRating", "rating", "audienceRating"})
TITLE_FIELDS = frozenset({"title", "titleSort"})

# Tag kind (edit parameter prefix) -> (key in the item dict, XML element name).
TAG_KINDS: dict[str, tuple[str, str]] = {
    "genre": ("genres", "Genre"),
    "collection": ("collections", "Collection"),
    "label": ("labels", "Label"),
    "director": ("directors", "Director"),
    "writer": ("writers", "Writer"),
    "producer": ("producers", "Producer"),
    "country": ("countries", "Country"),
    "mood": ("moods", "Mood"),
    "style": ("styles", "Style"),
    "actor": ("actors", "Role"),
}
# How many tags of each kind a listing (partial item) carries, like real Plex; others: none.
PARTIAL_TAG_LIMITS: dict[str, int] = {"genre": 3, "director": 2, "writer": 2, "country": 2, "collection": 1, "actor": 3}

SORT_FIELDS = frozenset({"addedAt", "updatedAt", "titleSort", "title", "ratingKey"})

_DATE_FILTER = re.compile(r"^(?P<field>addedAt|updatedAt)(?P<op>>>|<<)$")
_RELATIVE_DATE = re.compile(r"^-(?P<count>\d+)(?P<unit>[smhdwy])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_TAG_PARAM = re.compile(r"^(?P<kind>[a-z]+)\[(?P<index>\d*)\]\.(?P<attr>tag\.tag-?|tagging\.text)$")
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class HttpError(Exception):
    """Raised inside a handler to answer with `status` and an empty body."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


# --- routing -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    kind: str
    handler: str  # name of a PlexEmulator method taking (request, match)


ROUTES: tuple[Route, ...] = (
    Route("GET", re.compile(r"^/$"), "/", "_get_root"),
    Route("GET", re.compile(r"^/identity/?$"), "/identity", "_get_identity"),
    Route("GET", re.compile(r"^/library/?$"), "/library", "_get_library"),
    Route("GET", re.compile(r"^/library/sections/?$"), "sections", "_get_sections"),
    Route("GET", re.compile(r"^/library/sections/(\d+)/all/?$"), "listing", "_get_listing"),
    Route("PUT", re.compile(r"^/library/sections/(\d+)/all/?$"), "edit", "_put_edit"),
    Route("GET", re.compile(r"^/library/metadata/(\d+)/?$"), "/library/metadata", "_get_metadata"),
    Route("GET", re.compile(r"^/library/metadata/(\d+(?:,\d+)+)/?$"), "/library/metadata batch", "_get_metadata"),
    Route("POST", re.compile(r"^/library/metadata/(\d+)/posters/?$"), "poster", "_post_poster"),
    Route("POST", re.compile(r"^/library/metadata/(\d+)/arts/?$"), "art", "_post_art"),
    Route("PUT", re.compile(r"^/library/metadata/(\d+)/refresh/?$"), "refresh", "_put_refresh"),
    Route("GET", re.compile(r"^/library/sections/(\d+|all)/refresh/?$"), "scan", "_get_scan"),
)


def match_route(method: str, path: str) -> tuple[Route, re.Match[str]] | None:
    for route in ROUTES:
        if route.method == method:
            found = route.pattern.match(path)
            if found:
                return route, found
    return None


# --- edit parsing ------------------------------------------------------------------------------

@dataclass
class EditPlan:
    """What one edit PUT asks for, parsed and validated once, then applied to every id."""

    values: dict[str, Any] = field(default_factory=dict)
    locks: dict[str, bool] = field(default_factory=dict)
    tag_names: dict[str, dict[int, str]] = field(default_factory=dict)  # kind -> index -> name
    actor_roles: dict[int, str] = field(default_factory=dict)
    tag_removals: dict[str, list[str]] = field(default_factory=dict)


def parse_scalar(name: str, raw: str) -> Any:
    """The stored value of `{name}.value=raw`; raises HttpError(400) for a malformed value."""
    if raw == "":
        return None if name in NULLABLE_FIELDS else ""
    if name in FLOAT_FIELDS:
        try:
            number = float(raw)
        except ValueError:
            raise HttpError(400) from None
        if not 0 <= number <= 10:
            raise HttpError(400)
        return number
    if name == "originallyAvailableAt":
        try:
            date.fromisoformat(raw[:10])
        except ValueError:
            raise HttpError(400) from None
        return raw[:10]
    return raw


def parse_lock(raw: str) -> bool:
    if raw in ("1", "true", "True"):
        return True
    if raw in ("0", "false", "False", ""):
        return False
    raise HttpError(400)


def parse_edit(query: Iterable[tuple[str, str]]) -> EditPlan:
    plan = EditPlan()
    for key, raw in query:
        if key.endswith(".value") and key[:-6] in SCALAR_FIELDS:
            plan.values[key[:-6]] = parse_scalar(key[:-6], raw)
        elif key.endswith(".locked"):
            plan.locks[key[:-7]] = parse_lock(raw)
        else:
            tag = _TAG_PARAM.match(key)
            if tag and tag["kind"] in TAG_KINDS:
                _parse_tag_param(plan, tag["kind"], tag["index"], tag["attr"], raw)
        # anything else (id, type, X-Plex-*, unknown fields) is ignored, like Plex does
    return plan


def _parse_tag_param(plan: EditPlan, kind: str, index: str, attr: str, raw: str) -> None:
    if attr == "tag.tag-":
        names = [unquote(name) for name in raw.split(",") if name != ""]
        plan.tag_removals.setdefault(kind, []).extend(names)
        return
    if index == "":
        raise HttpError(400)
    position = int(index)
    if attr == "tag.tag":
        plan.tag_names.setdefault(kind, {})[position] = raw
    elif attr == "tagging.text" and kind == "actor":
        plan.actor_roles[position] = raw


def _tag_name(tag: Any) -> str:
    return tag["tag"] if isinstance(tag, dict) else str(tag)


def _dedupe(names: Iterable[Any]) -> list[Any]:
    seen: set[str] = set()
    kept = []
    for tag in names:
        name = _tag_name(tag)
        if name and name not in seen:
            seen.add(name)
            kept.append(tag)
    return kept


# --- item normalisation ------------------------------------------------------------------------

def normalise_item(raw: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a sample-data item with every key the emulator relies on."""
    item = _copy_item(raw)
    item["ratingKey"] = int(item["ratingKey"])
    item["section_id"] = int(item.get("section_id", 1))
    item["files"] = [str(path) for path in item.get("files") or []]
    default_title = item["files"][0].rsplit("/", 1)[-1].rsplit(".", 1)[0] if item["files"] else ""
    item.setdefault("title", default_title)
    for name in ("summary", "studio", "tagline"):
        item[name] = item.get(name) or ""
    for name in ("originallyAvailableAt", "userRating", "thumb"):
        item.setdefault(name, None)
    for key, _element in TAG_KINDS.values():
        item[key] = list(item.get(key) or [])
    item["actors"] = [_normalise_actor(actor) for actor in item["actors"]]
    item["locked"] = list(dict.fromkeys(item.get("locked") or []))
    now = int(time.time())
    item["addedAt"] = int(item.get("addedAt") or now)
    item["updatedAt"] = int(item.get("updatedAt") or item["addedAt"])
    return item


def _copy_item(raw: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a JSON-like item, several times faster than `copy.deepcopy`."""
    return {key: _copy_value(value) for key, value in raw.items()}


def _copy_value(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is list:
        return [_copy_value(v) for v in value]
    if kind is dict:
        return {k: _copy_value(v) for k, v in value.items()}
    return copy.deepcopy(value)


def _normalise_actor(actor: Any) -> dict[str, Any]:
    if isinstance(actor, str):
        return {"tag": actor, "role": "", "thumb": None}
    return {"tag": str(actor["tag"]), "role": actor.get("role") or "", "thumb": actor.get("thumb")}


def _file_under(path: str, folder: str) -> bool:
    folder = folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")


# --- XML helpers -------------------------------------------------------------------------------

def _text(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return _XML_INVALID.sub("", text) if _XML_INVALID.search(text) else text


def _set(element: ET.Element, name: str, value: Any) -> None:
    """Set an attribute unless the value is None (Plex leaves unset attributes out)."""
    if value is not None:
        element.set(name, _text(value))


def xml_response(root: ET.Element) -> Response:
    # Serialising to str and encoding once is ~2x faster than ET's byte-wise utf-8 writer.
    payload = XML_DECLARATION + ET.tostring(root, encoding="unicode")
    return 200, {"Content-Type": XML_CONTENT_TYPE}, payload.encode("utf-8")


def empty_response(status: int = 200) -> Response:
    return status, {}, b""


# --- the emulator ------------------------------------------------------------------------------

class PlexEmulator(Emulator):
    """A Plex Media Server holding movie items in memory; see the module docstring."""

    def __init__(
        self,
        items: list[dict] | None = None,
        token: str = "plex-test-token",
        sections: list[dict] | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.token = token
        self.provider_url: str | None = None  # a metadata provider refreshes pull from (see the docstring)
        self.machine_identifier = uuid.uuid4().hex
        self.client_identifiers: set[str] = set()
        self._lock = threading.RLock()
        self._sections: dict[int, dict[str, Any]] = {}
        for section in sections or [DEFAULT_SECTION]:
            self._add_section(section)
        self._items: dict[int, dict[str, Any]] = {}
        self._by_section: dict[int, list[int]] = {key: [] for key in self._sections}  # sorted ratingKeys
        self._by_file: dict[str, int] = {}
        self._pending: list[dict[str, Any]] = []
        self._next_rating_key = 1
        self._tag_ids: dict[tuple[str, str], int] = {}
        self._order_cache: dict[tuple[Any, ...], tuple[tuple[int, ...], list[int]]] = {}
        self._versions = {"items": 0, "titles": 0, "updated": 0}
        self.listed_items = 0
        for item in items or []:
            self.add_item(item)

    # --- public helpers for tests ------------------------------------------------------------
    def add_item(self, item: dict) -> int:
        """Add a visible item (sample-data shape); returns its ratingKey."""
        new = normalise_item(item)
        with self._lock:
            self._check_section(new["section_id"])
            if new["ratingKey"] in self._items:
                raise ValueError(f"ratingKey {new['ratingKey']} already exists")
            self._index(new)
        return new["ratingKey"]

    def add_pending(self, item: dict) -> None:
        """Add an item whose file exists but is not scanned yet: a section refresh reveals it."""
        new = normalise_item({"ratingKey": 0, **item})
        with self._lock:
            self._check_section(new["section_id"])
            self._pending.append(new)

    def remove_item(self, rating_key: int) -> dict:
        """Delete an item (its file went away); returns its last state."""
        with self._lock:
            item = self._items.pop(int(rating_key))
            keys = self._by_section[item["section_id"]]
            del keys[bisect.bisect_left(keys, item["ratingKey"])]
            for path in item["files"]:
                if self._by_file.get(path) == item["ratingKey"]:
                    del self._by_file[path]
            self._versions["items"] += 1
            return item

    def item(self, rating_key: int) -> dict:
        """A deep copy of the item's current state (KeyError if unknown)."""
        with self._lock:
            return copy.deepcopy(self._items[int(rating_key)])

    def items(self) -> list[dict]:
        """Deep copies of every visible item, in ratingKey order."""
        with self._lock:
            return [copy.deepcopy(self._items[key]) for key in sorted(self._items)]

    def rating_key_for_file(self, path: str) -> int | None:
        with self._lock:
            return self._by_file.get(path)

    @property
    def items_count(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def edit_requests(self) -> list[Request]:
        """Every edit PUT seen (including ones answered by an injected fault)."""
        return self._requests_of("PUT", "edit")

    def poster_uploads(self) -> list[Request]:
        """Every poster POST seen; `param('url')` is the URL form, `body` the bytes form."""
        return self._requests_of("POST", "poster")

    def reset_requests(self) -> None:
        super().reset_requests()
        with self._lock:
            self.listed_items = 0

    def refreshed_keys(self) -> list[int]:
        """The ratingKey of every `PUT /library/metadata/{rk}/refresh` seen, oldest first."""
        return [int(r.path.split("/")[3]) for r in self._requests_of("PUT", "refresh")]

    def _requests_of(self, method: str, kind: str) -> list[Request]:
        with self._record_lock:
            snapshot = list(self.requests)
        return [r for r in snapshot if r.method == method and self.route_name(r) == kind]

    # --- dispatch ----------------------------------------------------------------------------
    def route_name(self, request: Request) -> str:
        found = match_route(request.method, request.path)
        return found[0].kind if found else "other"

    def handle(self, request: Request) -> Response:
        self._note_client(request)
        if not self._authorised(request):
            return empty_response(401)
        found = match_route(request.method, request.path)
        if found is None:
            return empty_response(404)
        route, match = found
        handler: Callable[[Request, re.Match[str]], Response] = getattr(self, route.handler)
        try:
            return handler(request, match)
        except HttpError as error:
            return empty_response(error.status)

    def _note_client(self, request: Request) -> None:
        client = request.headers.get("x-plex-client-identifier") or request.param("X-Plex-Client-Identifier")
        if client:
            with self._lock:
                self.client_identifiers.add(client)

    def _authorised(self, request: Request) -> bool:
        return (request.headers.get("x-plex-token") or request.param("X-Plex-Token")) == self.token

    # --- server and sections -----------------------------------------------------------------
    def _server_attrs(self) -> dict[str, str]:
        return {
            "machineIdentifier": self.machine_identifier,
            "version": SERVER_VERSION,
            "friendlyName": FRIENDLY_NAME,
            "platform": "Linux",
            "platformVersion": "emulated",
            "claimed": "1",
            "myPlex": "0",
            "multiuser": "0",
            "allowMediaDeletion": "0",
        }

    def _get_root(self, request: Request, match: re.Match[str]) -> Response:
        root = ET.Element("MediaContainer", {"size": "0", **self._server_attrs()})
        return xml_response(root)

    def _get_identity(self, request: Request, match: re.Match[str]) -> Response:
        return self._get_root(request, match)

    def _get_library(self, request: Request, match: re.Match[str]) -> Response:
        root = ET.Element("MediaContainer", {
            "size": "1", "allowSync": "0", "identifier": "com.plexapp.plugins.library",
            "mediaTagPrefix": "/system/bundle/media/flags/", "mediaTagVersion": "1700000000",
            "title1": "Plex Library", "title2": "",
        })
        ET.SubElement(root, "Directory", {"key": "sections", "title": "Library Sections"})
        return xml_response(root)

    def _get_sections(self, request: Request, match: re.Match[str]) -> Response:
        root = ET.Element("MediaContainer", {"size": str(len(self._sections)), "allowSync": "0",
                                              "title1": "Plex Library"})
        for section in self._sections.values():
            directory = ET.SubElement(root, "Directory", {
                "key": str(section["key"]), "type": section["type"], "title": _text(section["title"]),
                "agent": section["agent"], "scanner": section["scanner"], "language": "en-US",
                "uuid": section["uuid"], "refreshing": "0", "content": "1", "allowSync": "1",
                "createdAt": "1700000000", "updatedAt": "1700000000", "scannedAt": "1700000000",
            })
            for index, path in enumerate(section["locations"], start=1):
                ET.SubElement(directory, "Location", {"id": str(section["key"] * 100 + index), "path": _text(path)})
        return xml_response(root)

    def _add_section(self, section: dict) -> None:
        key = int(section["key"])
        self._sections[key] = {
            "key": key,
            "title": str(section.get("title") or f"Section {key}"),
            "type": str(section.get("type") or "movie"),
            "locations": [str(path) for path in section.get("locations") or []],
            "agent": str(section.get("agent") or "tv.plex.agents.none"),
            "scanner": str(section.get("scanner") or "Plex Video Files Scanner"),
            "uuid": str(section.get("uuid") or uuid.uuid5(uuid.NAMESPACE_URL, f"section-{key}")),
        }

    def _check_section(self, section_id: int) -> None:
        if section_id not in self._sections:
            raise ValueError(f"no section with key {section_id}")

    # --- listing -----------------------------------------------------------------------------
    def _get_listing(self, request: Request, match: re.Match[str]) -> Response:
        section = self._sections.get(int(match[1]))
        if section is None:
            raise HttpError(404)
        start, size = paging(request)
        sort_field, descending = parse_sort(request.param("sort"))
        title_filter = (request.param("title") or "").casefold()
        date_filters = parse_date_filters(request.query)
        wanted_type = request.param("type")
        with self._lock:
            if wanted_type not in (None, "", "1"):
                keys: list[int] = []
            else:
                keys = self._ordered_keys(section["key"], sort_field, descending, title_filter)
            if date_filters:
                items = self._items
                keys = [key for key in keys if all(check(items[key]) for check in date_filters)]
            page = keys[start:] if size is None else keys[start:start + size]
            self.listed_items += len(page)
            root = self._container(len(page), section, totalSize=len(keys), offset=start)
            for rating_key in page:
                root.append(self._video(self._items[rating_key], full=False))
        return xml_response(root)

    def _ordered_keys(self, section_id: int, sort_field: str, descending: bool, title_filter: str) -> list[int]:
        """The section's ratingKeys in listing order; cached until the order can have changed."""
        if sort_field == "ratingKey" and not descending and not title_filter:
            return self._by_section[section_id]
        stamp = (
            self._versions["items"],
            self._versions["titles"] if (sort_field in TITLE_FIELDS or title_filter) else 0,
            self._versions["updated"] if sort_field == "updatedAt" else 0,
        )
        cache_key = (section_id, sort_field, descending, title_filter)
        cached = self._order_cache.get(cache_key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        keys = self._by_section[section_id]
        if title_filter:
            keys = [key for key in keys if title_filter in self._items[key]["title"].casefold()]
        keys = sorted(keys, key=self._sort_key(sort_field), reverse=descending)
        if len(self._order_cache) > 32:
            self._order_cache.clear()
        self._order_cache[cache_key] = (stamp, keys)
        return keys

    def _sort_key(self, sort_field: str) -> Callable[[int], Any]:
        items = self._items
        if sort_field in TITLE_FIELDS:
            return lambda key: ((items[key].get("titleSort") or items[key]["title"]).casefold(), key)
        if sort_field == "ratingKey":
            return lambda key: key
        return lambda key: (items[key][sort_field], key)

    # --- metadata ----------------------------------------------------------------------------
    def _get_metadata(self, request: Request, match: re.Match[str]) -> Response:
        wanted = list(dict.fromkeys(int(key) for key in match[1].split(",")))
        start, size = paging(request)
        with self._lock:
            found = [self._items[key] for key in wanted if key in self._items]
            if len(wanted) == 1 and not found:
                raise HttpError(404)
            page = found[start:] if size is None else found[start:start + size]
            section_ids = {item["section_id"] for item in found}
            section = self._sections[section_ids.pop()] if len(section_ids) == 1 else None
            root = self._container(len(page), section, totalSize=len(found), offset=start)
            for item in page:
                root.append(self._video(item, full=True))
        return xml_response(root)

    def _container(self, size: int, section: dict | None, **attrs: Any) -> ET.Element:
        root = ET.Element("MediaContainer", {"size": str(size), "allowSync": "1",
                                              "identifier": "com.plexapp.plugins.library"})
        if section is not None:
            root.set("librarySectionID", str(section["key"]))
            root.set("librarySectionTitle", _text(section["title"]))
            root.set("librarySectionUUID", section["uuid"])
        for name, value in attrs.items():
            _set(root, name, value)
        return root

    def _video(self, item: dict[str, Any], full: bool) -> ET.Element:
        """One `<Video>`: full (all tags, locks) or partial (listing) form. Call with the lock held."""
        rating_key = item["ratingKey"]
        section = self._sections[item["section_id"]]
        video = ET.Element("Video", {
            "ratingKey": str(rating_key), "key": f"/library/metadata/{rating_key}",
            "guid": item.get("guid") or f"local://{rating_key}", "type": "movie", "title": _text(item["title"]),
            "librarySectionID": str(section["key"]), "librarySectionKey": f"/library/sections/{section['key']}",
            "librarySectionTitle": _text(section["title"]),
        })
        for name in ("titleSort", "originalTitle", "contentRating", "editionTitle"):
            if item.get(name):
                _set(video, name, item[name])
        _set(video, "studio", item["studio"] or None)
        _set(video, "summary", item["summary"])
        _set(video, "tagline", item["tagline"] or None)
        released = item["originallyAvailableAt"]
        _set(video, "originallyAvailableAt", released)
        _set(video, "year", released[:4] if released else None)
        for name in ("userRating", "rating", "audienceRating"):
            if item.get(name) is not None:
                _set(video, name, float(item[name]))
        _set(video, "thumb", item["thumb"])
        _set(video, "art", item.get("art"))
        _set(video, "addedAt", item["addedAt"])
        _set(video, "updatedAt", item["updatedAt"])
        self._add_media(video, item)
        self._add_tags(video, item, full)
        if full:
            for name in item["locked"]:
                ET.SubElement(video, "Field", {"name": _text(name), "locked": "1"})
        return video

    def _add_media(self, video: ET.Element, item: dict[str, Any]) -> None:
        for index, path in enumerate(item["files"]):
            element_id = str(item["ratingKey"] * 100 + index)
            extension = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else None
            media = ET.SubElement(video, "Media", {"id": element_id})
            _set(media, "container", extension)
            part = ET.SubElement(media, "Part", {"id": element_id, "key": f"/library/parts/{element_id}/file",
                                                 "file": _text(path)})
            _set(part, "container", extension)

    def _add_tags(self, video: ET.Element, item: dict[str, Any], full: bool) -> None:
        for kind, (key, element_name) in TAG_KINDS.items():
            tags = item.get(key) or []
            if not full:
                tags = tags[:PARTIAL_TAG_LIMITS.get(kind, 0)]
            for tag in tags:
                name = _tag_name(tag)
                element = ET.SubElement(video, element_name, {"id": str(self._tag_id(kind, name)),
                                                              "filter": f"{kind}={self._tag_id(kind, name)}",
                                                              "tag": _text(name)})
                if kind == "actor" and full:
                    _set(element, "role", tag.get("role") or None)
                    _set(element, "thumb", tag.get("thumb"))

    def _tag_id(self, kind: str, name: str) -> int:
        """Plex tag ids are global per (kind, name); assign them on first sight."""
        key = (kind, name)
        tag_id = self._tag_ids.get(key)
        if tag_id is None:
            tag_id = self._tag_ids[key] = len(self._tag_ids) + 1
        return tag_id

    # --- edits -------------------------------------------------------------------------------
    def _put_edit(self, request: Request, match: re.Match[str]) -> Response:
        section_id = int(match[1])
        ids = request.param("id")
        if section_id not in self._sections or ids is None:
            raise HttpError(404 if section_id not in self._sections else 400)
        try:
            rating_keys = list(dict.fromkeys(int(key) for key in ids.split(",") if key.strip()))
        except ValueError:
            raise HttpError(400) from None
        if not rating_keys:
            raise HttpError(400)
        plan = parse_edit(request.query)
        with self._lock:
            targets = [self._items.get(key) for key in rating_keys]
            if any(item is None or item["section_id"] != section_id for item in targets):
                raise HttpError(404)
            for item in targets:
                self._apply_edit(item, plan)  # type: ignore[arg-type]
        return empty_response(200)

    def _apply_edit(self, item: dict[str, Any], plan: EditPlan) -> None:
        """Apply a parsed edit to one item. Call with the lock held."""
        for name, value in plan.values.items():
            item[name] = value
        if TITLE_FIELDS & plan.values.keys():
            self._versions["titles"] += 1
        locked = item["locked"]
        for name, lock in plan.locks.items():
            if lock and name not in locked:
                locked.append(name)
            elif not lock and name in locked:
                locked.remove(name)
        for kind, names in plan.tag_names.items():
            self._replace_tags(item, kind, names, plan)
        for kind, removed in plan.tag_removals.items():
            key = TAG_KINDS[kind][0]
            gone = set(removed)
            item[key] = [tag for tag in item[key] if _tag_name(tag) not in gone]
        self._touch(item)

    def _replace_tags(self, item: dict[str, Any], kind: str, names: dict[int, str], plan: EditPlan) -> None:
        """`{kind}[i].tag.tag` REPLACES the list with exactly the indexed names (the Plex trap)."""
        key = TAG_KINDS[kind][0]
        ordered = sorted(names.items())
        if kind != "actor":
            item[key] = _dedupe(name for _, name in ordered)
            return
        old_thumbs = {actor["tag"]: actor.get("thumb") for actor in item[key]}
        item[key] = _dedupe(
            {"tag": name, "role": plan.actor_roles.get(index, ""),
             "thumb": old_thumbs.get(name)}
            for index, name in ordered
        )

    def _touch(self, item: dict[str, Any]) -> None:
        item["updatedAt"] = max(int(time.time()), item["updatedAt"] + 1)
        self._versions["updated"] += 1

    # --- images ------------------------------------------------------------------------------
    def _post_poster(self, request: Request, match: re.Match[str]) -> Response:
        return self._store_image(request, int(match[1]), "poster", "thumb")

    def _post_art(self, request: Request, match: re.Match[str]) -> Response:
        return self._store_image(request, int(match[1]), "art", "art")

    def _store_image(self, request: Request, rating_key: int, kind: str, attribute: str) -> Response:
        url = request.param("url")
        if not url and not request.body:
            raise HttpError(400)
        digest = hashlib.sha256(request.body).hexdigest() if not url else None
        with self._lock:
            item = self._items.get(rating_key)
            if item is None:
                raise HttpError(404)
            if url:
                item[f"{kind}_url"] = url
            else:
                item[f"{kind}_sha256"] = digest
            item[attribute] = f"/library/metadata/{rating_key}/{attribute}/{int(time.time())}"
            self._touch(item)
        return empty_response(200)

    # --- refresh and scans -------------------------------------------------------------------
    def _put_refresh(self, request: Request, match: re.Match[str]) -> Response:
        rating_key = int(match[1])
        with self._lock:
            if rating_key not in self._items:
                raise HttpError(404)
            files = list(self._items[rating_key]["files"])
        if self.provider_url and files:
            pulled = self._pull_from_provider(self.provider_url, files[0])
            if pulled is not None:
                with self._lock:
                    item = self._items.get(rating_key)
                    if item is not None:
                        self._apply_provider_metadata(item, *pulled)
        return empty_response(200)

    def _pull_from_provider(self, base: str, path: str) -> tuple[dict[str, Any], bytes | None] | None:
        """(Metadata, poster bytes) of the provider's best match for `path`, as Plex asks; None if none."""
        import urllib.request

        headers = {"Accept": "application/json", "X-Plex-Token": self.token, "X-Plex-Language": "en",
                   "Content-Type": "application/json"}

        def fetch(url: str, body: bytes | None = None) -> bytes:
            with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=10) as answer:
                return bytes(answer.read())

        body = json.dumps({"type": 1, "filename": path, "includeAdult": 1}).encode()
        found = json.loads(fetch(f"{base}/library/metadata/matches", body))["MediaContainer"].get("Metadata") or []
        if not found:
            return None
        metadata = json.loads(fetch(base + found[0]["key"]))["MediaContainer"]["Metadata"][0]
        poster = fetch(metadata["thumb"]) if metadata.get("thumb") else None
        return metadata, poster

    def _apply_provider_metadata(self, item: dict[str, Any], metadata: dict[str, Any], poster: bytes | None) -> None:
        """What a refresh stores: the provider's fields, except those locked on the item. Call with the lock held."""
        locked = set(item["locked"])
        item["guid"] = metadata.get("guid")
        for name in ("title", "summary", "tagline", "studio"):
            if name not in locked:
                item[name] = metadata.get(name) or ""
        for name in ("originallyAvailableAt", "audienceRating"):
            if name not in locked:
                item[name] = metadata.get(name)
        if "genre" not in locked:
            item["genres"] = [tag["tag"] for tag in metadata.get("Genre") or []]
        if "actor" not in locked:
            item["actors"] = [{"tag": role["tag"], "role": role.get("role") or "", "thumb": role.get("thumb")}
                              for role in metadata.get("Role") or []]
        if poster is not None and "thumb" not in locked:
            item["poster_sha256"] = hashlib.sha256(poster).hexdigest()
            item["thumb"] = f"/library/metadata/{item['ratingKey']}/thumb/{int(time.time())}"
        self._touch(item)

    def _get_scan(self, request: Request, match: re.Match[str]) -> Response:
        section_id = None if match[1] == "all" else int(match[1])
        if section_id is not None and section_id not in self._sections:
            raise HttpError(404)
        folder = request.param("path")
        with self._lock:
            found = [item for item in self._pending
                     if (section_id is None or item["section_id"] == section_id)
                     and (not folder or any(_file_under(path, folder) for path in item["files"]))]
            for item in found:
                self._pending.remove(item)
                now = int(time.time())
                item.update(ratingKey=self._next_rating_key, addedAt=now, updatedAt=now)
                self._index(item)
        return empty_response(200)

    def _index(self, item: dict[str, Any]) -> None:
        """Make a normalised item visible. Call with the lock held."""
        rating_key = item["ratingKey"]
        self._items[rating_key] = item
        bisect.insort(self._by_section[item["section_id"]], rating_key)
        for path in item["files"]:
            self._by_file[path] = rating_key
        self._next_rating_key = max(self._next_rating_key, rating_key + 1)
        self._versions["items"] += 1


# --- request parameters ------------------------------------------------------------------------

def paging(request: Request) -> tuple[int, int | None]:
    """(start, size) from the X-Plex-Container-* headers or query parameters; size None = all."""
    start = _int_param(request, "X-Plex-Container-Start")
    size = _int_param(request, "X-Plex-Container-Size")
    return start or 0, size


def _int_param(request: Request, name: str) -> int | None:
    raw = request.headers.get(name.lower())
    if raw is None:
        raw = request.param(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400) from None
    if value < 0:
        raise HttpError(400)
    return value


def parse_date_filters(query: Iterable[tuple[str, str]]) -> list[Callable[[dict[str, Any]], bool]]:
    """`addedAt>>=1700000000` (after), `updatedAt<<=-2d` (before two days ago): one check per filter."""
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for key, raw in query:
        found = _DATE_FILTER.match(key)
        if found is None:
            continue
        checks.append(_date_check(found["field"], found["op"] == ">>", _date_value(raw)))
    return checks


def _date_check(name: str, after: bool, bound: int) -> Callable[[dict[str, Any]], bool]:
    if after:
        return lambda item: int(item[name]) > bound
    return lambda item: int(item[name]) < bound


def _date_value(raw: str) -> int:
    relative = _RELATIVE_DATE.match(raw)
    if relative:
        return int(time.time()) - int(relative["count"]) * _UNIT_SECONDS[relative["unit"]]
    try:
        return int(raw)
    except ValueError:
        raise HttpError(400) from None


def parse_sort(raw: str | None) -> tuple[str, bool]:
    """`addedAt:desc` -> ("addedAt", True); none -> ratingKey order. Only the first key counts."""
    if not raw:
        return "ratingKey", False
    name, _, direction = raw.split(",", 1)[0].partition(":")
    if name not in SORT_FIELDS or direction not in ("", "asc", "desc"):
        raise HttpError(400)
    return name, direction == "desc"


# --- CLI ---------------------------------------------------------------------------------------

def load_fixture(path: str) -> tuple[list[dict], list[dict] | None]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    return list(data.get("items") or []), data.get("sections")


def build_from_args(args: argparse.Namespace) -> PlexEmulator:
    items: list[dict] = []
    sections: list[dict] | None = None
    if args.fixture:
        items, sections = load_fixture(args.fixture)
    elif args.items:
        from .sample_data import make_dataset

        items = make_dataset(args.items).plex_items
    if args.scanned_at:
        # A freshly scanned library: every item added within the scan's last `scan_seconds`.
        for position, item in enumerate(items):
            item["addedAt"] = item["updatedAt"] = args.scanned_at - args.scan_seconds + position * args.scan_seconds // len(items)
    pending = [item for n, item in enumerate(items, start=1)
               if args.pending_every and n % args.pending_every == 0 and n <= args.pending_limit]
    pending_keys = {item["ratingKey"] for item in pending}
    emulator = PlexEmulator(items=[item for item in items if item["ratingKey"] not in pending_keys],
                            token=args.token, sections=sections, port=args.port)
    for item in pending:
        emulator.add_pending({**item, "ratingKey": 0})
    return emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.emulators.plex", description="Run the Plex emulator.")
    parser.add_argument("--port", type=int, default=32400, help="port on 127.0.0.1 (0 = any free port)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--fixture", help='JSON file {"items": [...], "sections": [...]}')
    source.add_argument("--items", type=int, default=0, help="serve make_dataset(N).plex_items")
    parser.add_argument("--token", default="plex-test-token")
    parser.add_argument("--scanned-at", type=int, default=0,
                        help="epoch: make the library freshly scanned, every item added within --scan-seconds before it")
    parser.add_argument("--scan-seconds", type=int, default=60)
    parser.add_argument("--pending-every", type=int, default=0,
                        help="every Nth item (up to --pending-limit) is not scanned yet: a section scan reveals it")
    parser.add_argument("--pending-limit", type=int, default=0)
    args = parser.parse_args(argv)

    # SIGUSR1 takes the server down (connection refused) or back up, keeping its state: an outage.
    serve_until_stopped(build_from_args(args), "plex")
    return 0


if __name__ == "__main__":
    sys.exit(main())
