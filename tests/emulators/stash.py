"""An in-process emulator of the parts of Stash's HTTP API that stash2plex uses.

Emulated:
- Auth as Stash does it when credentials are configured: header `ApiKey: <key>`, query
  `?apikey=<key>` or cookie `session=<value>` (values in `session_cookies`); anything else gets 401
  with an empty body, on every route.
- `POST /graphql` (`application/json` body `{"query", "variables", "operationName"}`), parsed by
  `graphql_subset` and checked against a small hand-written schema: unknown fields or arguments,
  bad argument values and syntax errors are HTTP 422 `{"errors": [...], "data": null}`; resolver
  errors are HTTP 200 with `errors` and the failed root field null.
  Root fields: `findScene(id)`, `findScenes(ids, filter, scene_filter)`,
  `configuration { plugins(include) }`, `version { version hash build_time }` and the mutation
  `sceneUpdate(input)`. Results are projected onto the selection set (aliases, `__typename`).
- Behaviour copied from Stash on purpose: ids are strings and must be integers (`"abc"` is a resolver
  error); `findScene` of an unknown id is null; `findScenes(ids: [...])` with a non-empty list looks
  the ids up directly, in the order given, ignores `filter` and `scene_filter`, and fails the whole
  field if any id is unknown or repeated; without ids, `filter` pages from 1, `per_page` defaults to
  25 and a negative value returns everything, `count` is the total before paging, no `sort` means id
  order, an unknown `sort` is an error; `configuration.plugins` returns only the settings that were
  saved, and only for the included plugin ids that have any.
- Files carry `path`, `basename` and `duration` (seconds, a float; null when the fixture has none).
- `GET /scene/{id}/screenshot` and `GET /performer/{id}/image`: small valid PNGs whose bytes depend
  on the id and (for screenshots) the scene's `screenshot_version`. The URLs in
  `paths.screenshot` / `image_path` carry no credentials, as in Stash.
- `updated_at` changes on every edit (mutation or `update_scene`) and is strictly increasing: two
  edits in the same second get consecutive seconds, and never earlier than the newest `updated_at`
  loaded, so "updated since" queries always see an edit.
- Time zones as Stash has them: the emulator runs "in" `time_zone` (UTC by default; `--utc-offset
  H` on the CLI). Stash keeps `created_at`/`updated_at` as text in its server's local time and
  returns them with that offset (`2026-01-01T04:00:00-08:00`; `...Z` in UTC), so scenes loaded
  with another offset are stored converted to local time. A timestamp criterion is compared AS TEXT:
  the value's wall-clock time in the value's own offset against the stored local wall-clock time,
  offsets ignored, and `sort: "updated_at"` orders by that text. So a UTC (`Z`) cut-off misses edits
  west of UTC and takes in up to `offset` hours of older edits east of it, as Stash does.

Not emulated: the rest of the schema (galleries, images, markers, groups, studios/performers/tags
as root objects, other mutations, introspection), fragments and directives, GraphQL over GET or
websockets, `filter.q` search, criterion modifiers beyond EQUALS/NOT_EQUALS/GREATER_THAN/LESS_THAN
(timestamps) and EQUALS/NOT_EQUALS/INCLUDES/EXCLUDES (path), the session-cookie loop tracking, and
the plugin/hook runner itself. String literals are accepted where an enum is expected.

CLI: `python -m tests.emulators.stash --port N [--fixture FILE.json | --scenes N]
[--api-key K | --no-auth]` serves in the foreground until SIGTERM/SIGINT; SIGUSR1 takes it down or back
up (an outage, state kept), see `http_base.serve_until_stopped`.
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import json
import operator
import re
import struct
import sys
import threading
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Callable, ClassVar, Iterable, Mapping

from .graphql_subset import (
    Field,
    GraphQLError,
    Operation,
    TypeRef,
    coerce_variables,
    parse_operation,
    parse_type,
    resolve_arguments,
)
from .http_base import Emulator, Request, json_response, serve_until_stopped

Response = tuple[int, dict[str, str], bytes]
Resolver = Callable[[Any, dict[str, Any]], Any]

# --- schema subset (written for this emulator) -----------------------------------------------


@dataclass(frozen=True)
class FieldDef:
    """An output field: its type (an object type below, or a scalar), list-ness and arguments."""

    type: str
    is_list: bool = False
    args: Mapping[str, str] = field(default_factory=dict)  # argument name -> input type expression


_ID_NAME = {"id": FieldDef("ID"), "name": FieldDef("String")}

OBJECT_TYPES: dict[str, dict[str, FieldDef]] = {
    "Query": {
        "findScene": FieldDef("Scene", args={"id": "ID"}),
        "findScenes": FieldDef(
            "FindScenesResultType",
            args={"ids": "[ID!]", "filter": "FindFilterType", "scene_filter": "SceneFilterType"},
        ),
        "configuration": FieldDef("ConfigResult"),
        "version": FieldDef("Version"),
    },
    "Mutation": {"sceneUpdate": FieldDef("Scene", args={"input": "SceneUpdateInput!"})},
    "FindScenesResultType": {"count": FieldDef("Int"), "scenes": FieldDef("Scene", is_list=True)},
    "ConfigResult": {"plugins": FieldDef("PluginConfigMap", args={"include": "[ID!]"})},
    "Version": {"version": FieldDef("String"), "hash": FieldDef("String"), "build_time": FieldDef("String")},
    "Scene": {
        "id": FieldDef("ID"),
        "title": FieldDef("String"),
        "code": FieldDef("String"),
        "details": FieldDef("String"),
        "date": FieldDef("String"),
        "rating100": FieldDef("Int"),
        "organized": FieldDef("Boolean"),
        "created_at": FieldDef("String"),
        "updated_at": FieldDef("String"),
        "studio": FieldDef("Studio"),
        "performers": FieldDef("Performer", is_list=True),
        "tags": FieldDef("Tag", is_list=True),
        "files": FieldDef("VideoFile", is_list=True),
        "paths": FieldDef("ScenePathsType"),
    },
    "Studio": dict(_ID_NAME),
    "Performer": {**_ID_NAME, "image_path": FieldDef("String")},
    "Tag": dict(_ID_NAME),
    "VideoFile": {"path": FieldDef("String"), "basename": FieldDef("String"), "duration": FieldDef("Float")},
    "ScenePathsType": {"screenshot": FieldDef("String")},
}

INPUT_TYPES: dict[str, dict[str, str]] = {
    "FindFilterType": {"page": "Int", "per_page": "Int", "sort": "String", "direction": "SortDirectionEnum"},
    "SceneFilterType": {
        "updated_at": "TimestampCriterionInput",
        "created_at": "TimestampCriterionInput",
        "path": "StringCriterionInput",
    },
    "TimestampCriterionInput": {"value": "String!", "modifier": "CriterionModifier!"},
    "StringCriterionInput": {"value": "String!", "modifier": "CriterionModifier!"},
    "SceneUpdateInput": {
        "id": "ID!",
        "title": "String",
        "code": "String",
        "details": "String",
        "date": "String",
        "rating100": "Int",
        "organized": "Boolean",
        "studio_id": "ID",
        "performer_ids": "[ID!]",
        "tag_ids": "[ID!]",
    },
}

ENUMS: dict[str, frozenset[str]] = {
    "SortDirectionEnum": frozenset({"ASC", "DESC"}),
    "CriterionModifier": frozenset(
        "EQUALS NOT_EQUALS GREATER_THAN LESS_THAN IS_NULL NOT_NULL INCLUDES_ALL INCLUDES EXCLUDES "
        "MATCHES_REGEX NOT_MATCHES_REGEX BETWEEN NOT_BETWEEN".split()
    ),
}

_TYPENAME = FieldDef("String")
_INT32 = range(-(2**31), 2**31)


@functools.lru_cache(maxsize=None)
def _type(text: str) -> TypeRef:
    return parse_type(text)


# --- binding: validate a parsed operation against the schema ---------------------------------


@dataclass
class Selection:
    """A validated field: response key, schema field, coerced arguments, sub-selections."""

    key: str
    name: str
    definition: FieldDef
    args: dict[str, Any]
    children: list["Selection"] | None


def bind_selections(nodes: list[Field], type_name: str, variables: dict[str, Any]) -> list[Selection]:
    """Check `nodes` against `type_name`; raise GraphQLError (HTTP 422) on anything unknown."""
    bound: dict[str, Selection] = {}
    for node in nodes:
        _merge_into(bound, _bind_field(node, type_name, variables))
    return list(bound.values())


def _bind_field(node: Field, type_name: str, variables: dict[str, Any]) -> Selection:
    definition = _TYPENAME if node.name == "__typename" else OBJECT_TYPES[type_name].get(node.name)
    if definition is None:
        raise GraphQLError(f'Cannot query field "{node.name}" on type "{type_name}".', node.line, node.column)
    args = _bind_arguments(node, definition, variables, f"{type_name}.{node.name}")
    children = None
    if definition.type in OBJECT_TYPES:
        if node.selections is None:
            raise GraphQLError(
                f'Field "{node.name}" of type "{definition.type}" must have a selection of subfields.',
                node.line,
                node.column,
            )
        children = bind_selections(node.selections, definition.type, variables)
    elif node.selections is not None:
        raise GraphQLError(
            f'Field "{node.name}" must not have a selection since type "{definition.type}" has no subfields.',
            node.line,
            node.column,
        )
    return Selection(node.response_key, node.name, definition, args, children)


def _merge_into(bound: dict[str, Selection], selection: Selection) -> None:
    """Add a selection; the same field asked twice under one key is merged, as GraphQL requires."""
    existing = bound.get(selection.key)
    if existing is None:
        bound[selection.key] = selection
        return
    if existing.name != selection.name or existing.args != selection.args:
        raise GraphQLError(f'Fields "{selection.key}" conflict because they select different fields or arguments.')
    if existing.children is not None and selection.children is not None:
        merged = {child.key: child for child in existing.children}
        for child in selection.children:
            _merge_into(merged, child)
        existing.children = list(merged.values())


def _bind_arguments(node: Field, definition: FieldDef, variables: dict[str, Any], where: str) -> dict[str, Any]:
    for name in node.arguments:
        if name not in definition.args:
            raise GraphQLError(f'Unknown argument "{name}" on field "{where}".', node.line, node.column)
    values = resolve_arguments(node, variables)
    bound: dict[str, Any] = {}
    for name, type_text in definition.args.items():
        type_ref = _type(type_text)
        if name in values:
            bound[name] = coerce_input(values[name], type_ref, name)
        elif type_ref.non_null:
            raise GraphQLError(
                f'Field "{where}" argument "{name}" of type "{type_ref}" is required, but it was not provided.',
                node.line,
                node.column,
            )
    return bound


def coerce_input(value: Any, type_ref: TypeRef, path: str) -> Any:
    """Check and convert an input value (literal or from variables) to `type_ref`."""
    if value is None:
        if type_ref.non_null:
            raise GraphQLError(f'Invalid value for "{path}": expected a non-null {type_ref}, found null.')
        return None
    if type_ref.of_type is not None:
        items = value if isinstance(value, list) else [value]  # a single value coerces to a list of one
        return [coerce_input(item, type_ref.of_type, f"{path}[{i}]") for i, item in enumerate(items)]
    name = str(type_ref.name)
    if name in INPUT_TYPES:
        return _coerce_object(value, name, path)
    if name in ENUMS:
        if isinstance(value, str) and value in ENUMS[name]:
            return str(value)
        raise GraphQLError(f'Invalid value for "{path}": {json.dumps(value)} is not a {name} ({", ".join(sorted(ENUMS[name]))}).')
    return _coerce_scalar(value, name, path)


def _coerce_object(value: Any, type_name: str, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GraphQLError(f'Invalid value for "{path}": expected an input object {type_name}, found {json.dumps(value)}.')
    spec = INPUT_TYPES[type_name]
    for key in value:
        if key not in spec:
            raise GraphQLError(f'Invalid value for "{path}": unknown field "{key}" on input type "{type_name}".')
    result: dict[str, Any] = {}
    for key, type_text in spec.items():
        type_ref = _type(type_text)
        if key in value:  # absent and null differ: absent fields leave a scene's value alone
            result[key] = coerce_input(value[key], type_ref, f"{path}.{key}")
        elif type_ref.non_null:
            raise GraphQLError(f'Invalid value for "{path}": field "{key}" of type "{type_ref}" is required.')
    return result


def _coerce_scalar(value: Any, type_name: str, path: str) -> Any:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if type_name == "ID" and (is_int or isinstance(value, str)):
        return str(value)
    if type_name == "String" and type(value) is str:  # an EnumValue literal is not a String
        return value
    if type_name == "Int" and is_int and value in _INT32:
        return value
    if type_name == "Float" and (is_int or isinstance(value, float)):
        return float(value)
    if type_name == "Boolean" and isinstance(value, bool):
        return value
    raise GraphQLError(f'Invalid value for "{path}": expected type {type_name}, found {json.dumps(value)}.')


# --- small helpers ---------------------------------------------------------------------------


class ResolverError(ValueError):
    """A failure while resolving a field: HTTP 200 with `errors` and the root field null."""


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SCREENSHOT_PATH = re.compile(r"^/scene/([^/]+)/screenshot$")
_PERFORMER_IMAGE_PATH = re.compile(r"^/performer/([^/]+)/image$")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
_SCENE_DEFAULTS: dict[str, Any] = {
    "title": None,
    "code": None,
    "details": None,
    "date": None,
    "rating100": None,
    "organized": False,
    "studio": None,
    "performers": [],
    "tags": [],
    "files": [],
    "screenshot_version": 1,
}
_REBUILT = {"studio", "performers", "tags", "files"}  # rebuilt by _normalize, so never shared
_UPDATE_FIELDS = {"title", "code", "details", "date", "rating100", "studio", "performers", "tags", "files", "organized"}


def iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_text(ts: datetime, zone: tzinfo) -> str:
    """`ts` as Stash shows a timestamp of a server in `zone`: RFC 3339, local time, `Z` for UTC."""
    text = ts.astimezone(zone).replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def wall_clock(text: str) -> datetime:
    """The date and time written in `text`, its offset dropped: what a text comparison compares."""
    return parse_timestamp(text).replace(tzinfo=None)


@functools.lru_cache(maxsize=65536)
def parse_timestamp(text: str) -> datetime:
    """Parse an ISO-8601 timestamp or date; naive values are taken as UTC. ValueError if invalid."""
    parsed = datetime.fromisoformat(text.strip().replace("z", "Z"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def canonical_id(value: Any) -> str:
    """Stash ids are integers, sent as strings: "007" and 7 name scene "7"; others are an error."""
    try:
        return str(int(str(value).strip()))
    except ValueError:
        raise ResolverError(f'invalid id "{value}": ids are integers') from None


def _id_number(item: Mapping[str, Any]) -> int:
    return int(item["id"])


def png_image(seed: str) -> bytes:
    """A valid 8x8 solid-colour PNG; the colour and a text chunk both depend on `seed`."""
    digest = hashlib.sha256(seed.encode()).digest()
    width = height = 8
    raw = b"".join(b"\x00" + digest[:3] * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"tEXt", b"Comment\x00" + seed.encode())
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _session_cookie(header: str | None) -> str | None:
    """The value of the `session` cookie in a Cookie header, if any."""
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == "session":
            return value.strip('"')
    return None


class _Registry:
    """Studios, performers or tags: id -> name, with get-or-create by name for test helpers."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._ids_by_name: dict[str, str] = {}

    def add(self, entity: Mapping[str, Any]) -> dict[str, str]:
        if entity.get("id") is None:
            return self.named(str(entity["name"]))
        entity_id, name = canonical_id(entity["id"]), str(entity["name"])
        self._names[entity_id] = name
        self._ids_by_name.setdefault(name, entity_id)
        return {"id": entity_id, "name": name}

    def named(self, name: str) -> dict[str, str]:
        entity_id = self._ids_by_name.get(name)
        if entity_id is None:
            entity_id = str(max(map(int, self._names), default=0) + 1)
            self._names[entity_id] = name
            self._ids_by_name[name] = entity_id
        return {"id": entity_id, "name": name}

    def get(self, entity_id: str) -> dict[str, str] | None:
        name = self._names.get(entity_id)
        return None if name is None else {"id": entity_id, "name": name}


# --- the emulator ----------------------------------------------------------------------------


class StashEmulator(Emulator):
    """A stateful, thread-safe fake Stash server; see the module docstring for what it covers."""

    SORTS: ClassVar[dict[str, Callable[[dict[str, Any]], Any]]] = {
        "title": lambda s: (s.get("title") or "").casefold(),
        "updated_at": lambda s: wall_clock(s["updated_at"]),  # Stash sorts the local-time text
        "created_at": lambda s: wall_clock(s["created_at"]),
        "date": lambda s: s.get("date") or "",
        "rating": lambda s: s.get("rating100") or 0,
    }

    def __init__(
        self,
        scenes: list[dict] | None = None,
        api_key: str | None = "stash-test-key",
        plugin_settings: dict | None = None,
        port: int = 0,
        version: str = "v0.27.2",
        time_zone: tzinfo = timezone.utc,
    ) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.version = version
        self.time_zone = time_zone
        self.session_cookies: set[str] = set()
        self._lock = threading.RLock()
        self._resolvers: dict[tuple[str, str], Resolver] = {
            ("Query", "findScene"): self._resolve_find_scene,
            ("Query", "findScenes"): self._resolve_find_scenes,
            ("Query", "configuration"): lambda _parent, _args: {},
            ("Query", "version"): self._resolve_version,
            ("Mutation", "sceneUpdate"): self._resolve_scene_update,
            ("ConfigResult", "plugins"): self._resolve_plugins,
            ("Scene", "paths"): lambda scene, _args: {"screenshot": self._screenshot_url(scene)},
            ("Performer", "image_path"): lambda performer, _args: f"{self.url}/performer/{performer['id']}/image?t=1",
        }
        self.reset(scenes, plugin_settings)

    # --- test helpers --------------------------------------------------------------------------
    def reset(self, scenes: list[dict] | None = None, plugin_settings: dict | None = None) -> None:
        """Replace all data (scenes, plugin settings, session cookies, GraphQL log), as if new."""
        with self._lock:
            self._scenes: dict[str, dict[str, Any]] = {}
            self._studios, self._performers, self._tags = _Registry(), _Registry(), _Registry()
            self._plugin_settings: dict[str, dict[str, Any]] = {}
            self._graphql_log: list[tuple[str, dict[str, Any]]] = []
            self._clock: datetime | None = None
            self.session_cookies.clear()
            for scene in scenes or []:
                self.add_scene(scene)
            for plugin_id, settings in (plugin_settings or {}).items():
                self.set_plugin_settings(plugin_id, settings)

    def scene(self, scene_id: str | int) -> dict:
        """A copy of the stored scene (internal shape, with `screenshot_version`); KeyError if unknown."""
        with self._lock:
            return copy.deepcopy(self._scenes[canonical_id(scene_id)])

    def add_scene(self, scene: dict) -> dict:
        """Store a copy of `scene` (missing fields defaulted, id assigned if absent); returns it."""
        with self._lock:
            stored = self._normalize(scene)
            if stored["id"] in self._scenes:
                raise ValueError(f"scene {stored['id']} already exists")
            self._scenes[stored["id"]] = stored
            self._raise_clock(stored["updated_at"])
            return copy.deepcopy(stored)

    def update_scene(self, scene_id: str | int, **fields: Any) -> dict:
        """Edit a scene as a user would in Stash (bumps `updated_at`); returns the new scene.

        Accepts title, code, details, date, rating100, organized, studio (a dict, a name or None),
        performers and tags (lists of names, created if new) and files (a list of paths).
        """
        unknown = set(fields) - _UPDATE_FIELDS
        if unknown:
            raise TypeError(f"update_scene() got unknown fields: {', '.join(sorted(unknown))}")
        with self._lock:
            scene = self._scenes[canonical_id(scene_id)]
            scene.update(self._helper_changes(fields))
            scene["updated_at"] = self._tick()
            return copy.deepcopy(scene)

    def bump_screenshot(self, scene_id: str | int) -> int:
        """Give the scene a new screenshot (new bytes and URL) and bump `updated_at`; returns the version."""
        with self._lock:
            scene = self._scenes[canonical_id(scene_id)]
            scene["screenshot_version"] = int(scene.get("screenshot_version", 1)) + 1
            scene["updated_at"] = self._tick()
            return scene["screenshot_version"]

    def set_plugin_settings(self, plugin_id: str, settings: dict) -> None:
        """Save a plugin's settings, replacing what was saved before (only saved keys are served)."""
        with self._lock:
            self._plugin_settings[plugin_id] = copy.deepcopy(settings)

    def graphql_requests(self) -> list[tuple[str, dict]]:
        """(operation, variables) for each authorised GraphQL request, oldest first.

        The operation is the request's `operationName`, else the document's operation name, else
        its first root field.
        """
        with self._lock:
            return [(name, copy.deepcopy(variables)) for name, variables in self._graphql_log]

    # --- HTTP ----------------------------------------------------------------------------------
    def route_name(self, request: Request) -> str:
        if request.path == "/graphql":
            return f"graphql:{self._operation_label(request.body)}"
        if _SCREENSHOT_PATH.match(request.path):
            return "screenshot"
        if _PERFORMER_IMAGE_PATH.match(request.path):
            return "performer_image"
        return request.path

    def handle(self, request: Request) -> Response:
        if not self._authorized(request):
            return 401, {"Content-Type": "text/plain; charset=utf-8"}, b""
        if request.path == "/graphql":
            return self._handle_graphql(request)
        screenshot = _SCREENSHOT_PATH.match(request.path)
        if screenshot:
            return self._handle_image(request, self._screenshot_bytes, screenshot.group(1))
        performer = _PERFORMER_IMAGE_PATH.match(request.path)
        if performer:
            return self._handle_image(request, self._performer_image_bytes, performer.group(1))
        return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"404 page not found\n"

    def _authorized(self, request: Request) -> bool:
        if not self.api_key:
            return True
        if request.headers.get("apikey") == self.api_key or request.param("apikey") == self.api_key:
            return True
        session = _session_cookie(request.headers.get("cookie"))
        return session is not None and session in self.session_cookies

    def _handle_image(self, request: Request, render: Callable[[str], bytes | None], raw_id: str) -> Response:
        if request.method not in ("GET", "HEAD"):
            return 405, {"Content-Type": "text/plain; charset=utf-8"}, b""
        with self._lock:
            try:
                image = render(canonical_id(raw_id))
            except ResolverError:
                image = None
        if image is None:
            return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"404 page not found\n"
        return 200, {"Content-Type": "image/png"}, image

    def _screenshot_bytes(self, scene_id: str) -> bytes | None:
        scene = self._scenes.get(scene_id)
        return None if scene is None else png_image(f"scene:{scene_id}:{scene['screenshot_version']}")

    def _performer_image_bytes(self, performer_id: str) -> bytes | None:
        return None if self._performers.get(performer_id) is None else png_image(f"performer:{performer_id}")

    def _handle_graphql(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method != "POST" or content_type != "application/json":
            return json_response(400, {"errors": [{"message": "transport not supported"}], "data": None})
        try:
            body = json.loads(request.body or b"null")
        except ValueError as exc:
            body, error = None, f"json request body could not be decoded: {exc}"
        else:
            error = None if isinstance(body, dict) else "json request body could not be decoded: not an object"
        if error is not None:
            return json_response(400, {"errors": [{"message": error}], "data": None})
        with self._lock:
            self._graphql_log.append((self._operation_label(request.body), copy.deepcopy(body.get("variables") or {})))
            return self._run(body.get("query"), body.get("variables"), body.get("operationName"))

    def _run(self, query: Any, variables: Any, operation_name: Any) -> Response:
        try:
            operation = parse_operation(query, operation_name or None)
            plan = bind_selections(
                operation.selections, operation.kind.capitalize(), coerce_variables(operation, variables)
            )
        except GraphQLError as exc:
            return json_response(422, {"errors": [exc.to_dict()], "data": None})
        data, errors = self._execute(operation, plan)
        return json_response(200, {"errors": errors, "data": data} if errors else {"data": data})

    @staticmethod
    def _operation_label(raw_body: bytes) -> str:
        try:
            body = json.loads(raw_body or b"null")
            if body.get("operationName"):
                return str(body["operationName"])
            operation = parse_operation(body.get("query"))
        except (ValueError, AttributeError, GraphQLError):
            return "invalid"
        return operation.name or operation.selections[0].name

    # --- execution -----------------------------------------------------------------------------
    def _execute(self, operation: Operation, plan: list[Selection]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        root_type = operation.kind.capitalize()
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for selection in plan:
            try:
                data[selection.key] = self._complete(self._resolve(root_type, None, selection), selection)
            except ResolverError as exc:
                data[selection.key] = None
                errors.append({"message": str(exc), "path": [selection.key]})
        return data, errors

    def _resolve(self, type_name: str, parent: Any, selection: Selection) -> Any:
        if selection.name == "__typename":
            return type_name
        resolver = self._resolvers.get((type_name, selection.name))
        if resolver is not None:
            return resolver(parent, selection.args)
        return parent.get(selection.name) if isinstance(parent, dict) else None

    def _complete(self, value: Any, selection: Selection) -> Any:
        """Project a resolved value onto the selection: only the asked fields, under their keys."""
        if value is None or selection.children is None:
            return copy.deepcopy(value) if isinstance(value, (dict, list)) else value
        type_name = selection.definition.type
        if selection.definition.is_list:
            return [self._complete_object(item, type_name, selection.children) for item in value]
        return self._complete_object(value, type_name, selection.children)

    def _complete_object(self, value: Any, type_name: str, children: list[Selection]) -> dict[str, Any]:
        return {child.key: self._complete(self._resolve(type_name, value, child), child) for child in children}

    # --- resolvers -----------------------------------------------------------------------------
    def _resolve_find_scene(self, _parent: Any, args: dict[str, Any]) -> dict | None:
        if args.get("id") is None:
            return None
        return self._scenes.get(canonical_id(args["id"]))

    def _resolve_find_scenes(self, _parent: Any, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("ids"):
            scenes = self._scenes_by_ids(args["ids"])
            return {"count": len(scenes), "scenes": scenes}
        find_filter = args.get("filter") or {}
        predicates = self._scene_predicates(args.get("scene_filter") or {})
        matching = [scene for scene in self._scenes.values() if all(p(scene) for p in predicates)]
        ordered = self._sorted(matching, find_filter.get("sort"), find_filter.get("direction") or "ASC")
        return {"count": len(ordered), "scenes": self._page(ordered, find_filter)}

    def _resolve_version(self, _parent: Any, _args: dict[str, Any]) -> dict[str, str]:
        return {"version": self.version, "hash": "emulator", "build_time": "2024-01-01 00:00:00"}

    def _resolve_plugins(self, _parent: Any, args: dict[str, Any]) -> dict[str, dict]:
        include = args.get("include")
        wanted = self._plugin_settings if include is None else include
        return {pid: self._plugin_settings[pid] for pid in wanted if pid in self._plugin_settings}

    def _resolve_scene_update(self, _parent: Any, args: dict[str, Any]) -> dict[str, Any]:
        update = args["input"]
        scene_id = canonical_id(update["id"])
        scene = self._scenes.get(scene_id)
        if scene is None:
            raise ResolverError(f"scene with id {scene_id} not found")
        changes = self._mutation_changes(update)
        scene.update(changes)
        scene["updated_at"] = self._tick()
        return scene

    # --- findScenes pieces ---------------------------------------------------------------------
    def _scenes_by_ids(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        seen: set[str] = set()
        for key in map(canonical_id, ids):
            scene = self._scenes.get(key)
            if scene is None or key in seen:  # Stash fails the lookup on a missing id, and on a repeat
                raise ResolverError(f"scene with id {key} not found")
            seen.add(key)
            found.append(scene)
        return found

    def _scene_predicates(self, scene_filter: dict[str, Any]) -> list[Callable[[dict[str, Any]], bool]]:
        predicates = []
        for name, criterion in scene_filter.items():
            if criterion is None:
                continue
            if name == "path":
                predicates.append(_path_predicate(criterion["value"], criterion["modifier"]))
            else:
                predicates.append(_timestamp_predicate(name, criterion["value"], criterion["modifier"]))
        return predicates

    def _sorted(self, scenes: list[dict[str, Any]], sort: str | None, direction: str) -> list[dict[str, Any]]:
        descending = direction == "DESC"
        ordered = sorted(scenes, key=_id_number)  # ids break ties; no sort means id order
        if not sort:
            return ordered
        if sort == "id":
            return ordered[::-1] if descending else ordered
        key = self.SORTS.get(sort)
        if key is None:
            raise ResolverError(f"invalid sort: {sort} (the emulator supports id, {', '.join(self.SORTS)})")
        return sorted(ordered, key=key, reverse=descending)

    @staticmethod
    def _page(scenes: list[dict[str, Any]], find_filter: dict[str, Any]) -> list[dict[str, Any]]:
        per_page = find_filter.get("per_page")
        per_page = 25 if per_page is None else per_page
        if per_page < 0:
            return scenes
        start = (max(find_filter.get("page") or 1, 1) - 1) * per_page
        return scenes[start : start + per_page]

    # --- edits ---------------------------------------------------------------------------------
    def _mutation_changes(self, update: dict[str, Any]) -> dict[str, Any]:
        """Scene fields from a SceneUpdateInput: absent keys are left alone, null clears."""
        changes: dict[str, Any] = {key: update[key] for key in ("title", "code", "details", "rating100") if key in update}
        if "date" in update:
            changes["date"] = _checked_date(update["date"])
        if update.get("organized") is not None:
            changes["organized"] = update["organized"]
        if "studio_id" in update:
            changes["studio"] = None if update["studio_id"] is None else self._lookup(self._studios, "studio", update["studio_id"])
        for key, registry, kind in (("performer_ids", self._performers, "performer"), ("tag_ids", self._tags, "tag")):
            if key in update:
                changes[kind + "s"] = [self._lookup(registry, kind, entity_id) for entity_id in update[key] or []]
        return changes

    @staticmethod
    def _lookup(registry: _Registry, kind: str, entity_id: str) -> dict[str, str]:
        entity = registry.get(canonical_id(entity_id))
        if entity is None:
            raise ResolverError(f"{kind} with id {entity_id} not found")
        return entity

    def _helper_changes(self, fields: dict[str, Any]) -> dict[str, Any]:
        changes: dict[str, Any] = {key: fields[key] for key in ("title", "code", "details", "date", "rating100", "organized") if key in fields}
        if "studio" in fields:
            studio = fields["studio"]
            changes["studio"] = None if studio is None else self._entity(self._studios, studio)
        for key, registry in (("performers", self._performers), ("tags", self._tags)):
            if key in fields:
                changes[key] = [self._entity(registry, value) for value in fields[key]]
        if "files" in fields:
            changes["files"] = [_file_entry(path) for path in fields["files"]]
        return changes

    @staticmethod
    def _entity(registry: _Registry, value: str | Mapping[str, Any]) -> dict[str, str]:
        return registry.named(value) if isinstance(value, str) else registry.add(value)

    def _normalize(self, scene: dict) -> dict[str, Any]:
        """A private copy of `scene` with defaults filled in and entities registered."""
        stored = {key: _private(value) if key not in _REBUILT else value for key, value in scene.items()}
        for key, default in _SCENE_DEFAULTS.items():
            if stored.get(key) is None:
                stored[key] = copy.deepcopy(default)
        raw_id = stored.get("id")
        stored["id"] = str(max(map(int, self._scenes), default=0) + 1) if raw_id is None else canonical_id(raw_id)
        stored["created_at"] = self._stored_timestamp(stored.get("created_at")) or self._tick()
        stored["updated_at"] = self._stored_timestamp(stored.get("updated_at")) or stored["created_at"]
        stored["studio"] = self._studios.add(stored["studio"]) if stored["studio"] else None
        stored["performers"] = [self._entity(self._performers, p) for p in stored["performers"]]
        stored["tags"] = [self._entity(self._tags, t) for t in stored["tags"]]
        stored["files"] = [_file_entry(f) for f in stored["files"]]
        return stored

    # --- time ----------------------------------------------------------------------------------
    def _tick(self) -> str:
        """Now, in local time (see `local_text`), always later than any timestamp handed out or loaded."""
        now = datetime.now(timezone.utc).replace(microsecond=0)
        if self._clock is not None and now <= self._clock:
            now = self._clock + timedelta(seconds=1)
        self._clock = now
        return local_text(now, self.time_zone)

    def _stored_timestamp(self, value: str | None) -> str | None:
        """A loaded timestamp as this server stores it: unchanged in UTC (fixtures may use any ISO-8601
        form), converted to local time in another zone."""
        checked = _checked_timestamp(value)
        if checked is None or self.time_zone is timezone.utc:
            return checked
        return local_text(parse_timestamp(checked), self.time_zone)

    def _raise_clock(self, stamp: str) -> None:
        try:
            loaded = parse_timestamp(stamp).replace(microsecond=0)
        except ValueError:
            return
        if self._clock is None or loaded > self._clock:
            self._clock = loaded

    def _screenshot_url(self, scene: dict[str, Any]) -> str:
        return f"{self.url}/scene/{scene['id']}/screenshot?t={scene['screenshot_version']}"


def _private(value: Any) -> Any:
    return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


def _file_entry(value: str | Mapping[str, Any]) -> dict[str, Any]:
    path = value if isinstance(value, str) else str(value["path"])
    basename = path.rsplit("/", 1)[-1] if isinstance(value, str) else str(value.get("basename") or path.rsplit("/", 1)[-1])
    duration = None if isinstance(value, str) else value.get("duration")
    return {"path": path, "basename": basename, "duration": None if duration is None else float(duration)}


def _checked_timestamp(value: str | None) -> str | None:
    """`value` unchanged (fixtures may use any ISO-8601 form) once it is known to parse."""
    if value:
        parse_timestamp(value)
    return value or None


def _checked_date(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not _DATE.match(value):
        raise ResolverError(f"invalid date: {value}")
    return value


_TIMESTAMP_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "EQUALS": operator.eq,
    "NOT_EQUALS": operator.ne,
    "GREATER_THAN": operator.gt,
    "LESS_THAN": operator.lt,
}


def _timestamp_predicate(field_name: str, value: str, modifier: str) -> Callable[[dict[str, Any]], bool]:
    compare = _TIMESTAMP_OPS.get(modifier)
    if compare is None:
        raise ResolverError(f"modifier {modifier} on {field_name} is not supported by the Stash emulator")
    try:
        target = parse_timestamp(value)
    except ValueError:
        raise ResolverError(f"invalid timestamp for {field_name}: {value}") from None

    wall = target.replace(tzinfo=None)  # compared as text: wall clock against wall clock, offsets ignored

    def predicate(scene: dict[str, Any]) -> bool:
        stamp = scene.get(field_name)
        return stamp is not None and compare(wall_clock(stamp), wall)

    return predicate


def _path_predicate(value: str, modifier: str) -> Callable[[dict[str, Any]], bool]:
    """EQUALS: a file's path is exactly `value`; INCLUDES: contains it, ignoring case; NOT_/EX- negate."""
    needle = value.casefold()
    if modifier in ("EQUALS", "NOT_EQUALS"):
        matches: Callable[[str], bool] = lambda path: path == value  # noqa: E731
    elif modifier in ("INCLUDES", "EXCLUDES"):
        matches = lambda path: needle in path.casefold()  # noqa: E731
    else:
        raise ResolverError(f"modifier {modifier} on path is not supported by the Stash emulator")
    negate = modifier in ("NOT_EQUALS", "EXCLUDES")
    return lambda scene: any(matches(f["path"]) for f in scene["files"]) != negate


# --- CLI -------------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.emulators.stash", description="Run the Stash emulator.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--fixture", help='JSON file {"scenes": [...], "plugin_settings": {...}}')
    data.add_argument("--scenes", type=int, help="serve sample_data.make_dataset(N).scenes")
    parser.add_argument("--utc-offset", type=float, default=0.0, help="the server's time zone, hours from UTC (default 0)")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--api-key", default="stash-test-key", help="the ApiKey to require (default: %(default)s)")
    auth.add_argument("--no-auth", action="store_true", help="accept every request")
    return parser.parse_args(argv)


def _load_data(args: argparse.Namespace) -> tuple[list[dict], dict]:
    if args.fixture:
        with open(args.fixture, encoding="utf-8") as handle:
            fixture = json.load(handle)
        return fixture.get("scenes") or [], fixture.get("plugin_settings") or {}
    if args.scenes:
        from .sample_data import make_dataset

        return make_dataset(args.scenes).scenes, {}
    return [], {}


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    scenes, plugin_settings = _load_data(args)
    emulator = StashEmulator(
        scenes,
        api_key=None if args.no_auth else args.api_key,
        plugin_settings=plugin_settings,
        port=args.port,
        time_zone=timezone(timedelta(hours=args.utc_offset)) if args.utc_offset else timezone.utc,
    )
    # SIGUSR1 takes the server down (connection refused) or back up, keeping its state: an outage.
    serve_until_stopped(emulator, "stash")
    return 0


if __name__ == "__main__":
    sys.exit(main())
