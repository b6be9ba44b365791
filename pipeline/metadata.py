"""From a Stash scene to the Plex edit: the desired state, and the diff against Plex's current state.

The diff is pure: it returns the query parameters of ONE Plex edit request
(`PUT /library/sections/{sid}/all?type=1&id=..`) holding every changed field with its lock, and
nothing when nothing changed. Tag lists are always sent complete (Plex replaces a list with what an
edit carries), built from the FULL current item, never from a partial listing.

Only parameter forms python-plexapi documents are sent (`plexapi/mixins/edit.py`, `EditTagsMixin`):
`{kind}[i].tag.tag` for the complete list, `{kind}[].tag.tag-` for removals (each name quoted with
`urllib.parse.quote`, joined by commas; the whole value is quoted again when the URL is built) and
`{kind}.locked`. Actor photos are NOT sent: no reference documents a parameter for them (the old
`actor[i].tag.thumb` appears nowhere in plexapi, and issue #12 found it in no other reference), so
Plex keeps the photos its agent gave its actors and `performer_thumbs` has no effect (see README).

Every decision that avoids a write is taken from Plex itself, so any number of worker hosts (each
with its own `data_dir`) decide alike:

- unchanged fields: the diff against the item's current values;
- unchanged poster: the item carries the cover label `stash2plex-cover-<fingerprint>` of the Stash
  screenshot stash2plex uploaded last (set in the same edit request as the fields);
- `preserve_plex_edits`: with it on, stash2plex writes fields WITHOUT locking them, so a locked field
  is one a person edited (Plex locks what is edited in its UI), and it is kept.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pipeline.config import Settings
from pipeline.models import Actor, DesiredState, PlexItemState, StashScene
from pipeline.sanitize import (
    MAX_ACTORS,
    MAX_COLLECTIONS,
    STUDIO_LIMIT,
    SUMMARY_LIMIT,
    TAG_LIMIT,
    TAGLINE_LIMIT,
    TITLE_LIMIT,
    clean_date,
    clean_names,
    clean_text,
)

SCALAR_SWITCHES = {
    "title": "title",
    "studio": "studio",
    "summary": "summary",
    "tagline": "tagline",
    "originallyAvailableAt": "date",
    "userRating": "rating",
}
TAG_KINDS = {"genres": ("genre", "tags"), "collections": ("collection", "collection")}
COVER_LABEL_PREFIX = "stash2plex-cover-"


def strip_secret_query(url: str) -> str:
    """A URL without `apikey`/token query values: safe to store in a message or to hand to Plex."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k.lower() not in ("apikey", "api_key", "x-plex-token")]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _file_title(scene: StashScene) -> str:
    if not scene.files:
        return ""
    name = scene.files[0].basename or posixpath.basename(scene.files[0].path)
    return posixpath.splitext(name)[0]


def desired_state(scene: StashScene, settings: Settings) -> DesiredState:
    """What Plex should show for `scene`; fields whose `sync_*` switch is off stay None (untouched).

    Null Stash values clear the Plex field (Stash is the source of truth), except the title,
    which falls back to the file name as Plex's scanner would show it.
    """
    on = settings.field_enabled
    studio = clean_text(scene.studio.name if scene.studio else "", STUDIO_LIMIT)
    tagline_source = {"code": scene.code, "studio": studio, "none": None}[settings.tagline_source]
    desired = DesiredState(
        title=clean_text(scene.title, TITLE_LIMIT) or clean_text(_file_title(scene), TITLE_LIMIT) if on("title") else None,
        studio=studio if on("studio") else None,
        summary=clean_text(scene.details, SUMMARY_LIMIT, multiline=True) if on("summary") else None,
        tagline=clean_text(tagline_source, TAGLINE_LIMIT) if on("tagline") and tagline_source is not None else None,
        originallyAvailableAt=(clean_date(scene.date) or "") if on("date") else None,
        userRating=round(scene.rating100 / 10, 1) if on("rating") and scene.rating100 else None,
        genres=clean_names([t.name for t in scene.tags], TAG_LIMIT, settings.max_tags) if on("tags") else None,
        collections=clean_names([studio], TAG_LIMIT, MAX_COLLECTIONS) if on("collection") else None,
    )
    if on("performers"):
        # Names only: Plex documents no edit parameter for an actor's photo (module docstring).
        desired.actors = [Actor(name=name) for name in clean_names([p.name for p in scene.performers], TAG_LIMIT, MAX_ACTORS)]
    if on("poster") and scene.screenshot_url:
        desired.poster_url = strip_secret_query(scene.screenshot_url)
        desired.poster_key = cover_label(scene.id, desired.poster_url)
    return desired


def cover_label(scene_id: str, poster_url: str) -> str:
    """The Plex label that says "this item shows Stash's screenshot of this version".

    From the scene id and the screenshot's path and query (Stash versions it with `?t=`), never the
    host: hosts that reach Stash by different addresses agree on it.
    """
    parts = urlsplit(poster_url)
    digest = hashlib.sha1(f"{scene_id}|{parts.path}?{parts.query}".encode()).hexdigest()[:12]
    return f"{COVER_LABEL_PREFIX}{digest}"


def poster_is_current(desired: DesiredState, current: PlexItemState) -> bool:
    """True when the item already shows this version of the Stash screenshot (or posters are not synced)."""
    return not desired.poster_url or (bool(current.thumb) and desired.poster_key in current.labels)


def cover_label_params(current_labels: list[str], marker: str) -> dict[str, str]:
    """The labels edit that swaps the item's old cover label for `marker`, keeping every other label."""
    kept = [name for name in current_labels if not name.startswith(COVER_LABEL_PREFIX)]
    return tag_list_params("label", current_labels, [*kept, marker], lock=False)


@dataclass
class EditPlan:
    """The parameters of one edit request, what they change, and what was kept on purpose."""

    params: dict[str, str] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    preserved: list[str] = field(default_factory=list)
    diff: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (Plex now, what we write)

    def merge(self, other: "EditPlan") -> None:
        self.params.update(other.params)
        self.changed.extend(other.changed)
        self.preserved.extend(other.preserved)
        self.diff.update(other.diff)


def _same_scalar(current: Any, desired: Any) -> bool:
    if isinstance(desired, float) or isinstance(current, float):
        return current is not None and desired is not None and abs(float(current) - float(desired)) < 0.05
    return (current or "") == (desired or "")


def _user_edited(name: str, current_value: Any, current: PlexItemState, settings: Settings) -> bool:
    """With preserve_plex_edits (we then never lock), a locked field holding a value is a person's edit."""
    return settings.preserve_plex_edits and name in current.locked and bool(current_value)


def _lock(settings: Settings) -> dict[str, str]:
    """How a written field is locked: always, except with preserve_plex_edits (then a lock means a person's edit)."""
    return {} if settings.preserve_plex_edits else {"locked": "1"}


def plan_fields(desired: DesiredState, current: PlexItemState, settings: Settings) -> EditPlan:
    """Scalar fields and tag lists (genres, collection); actors are planned by `plan_actors`."""
    plan = EditPlan()
    for name, value in desired.scalar_fields().items():
        current_value = getattr(current, name)
        if _same_scalar(current_value, value):
            continue
        if _user_edited(name, current_value, current, settings):
            plan.preserved.append(name)
            continue
        plan.params[f"{name}.value"] = "" if value is None else str(value)
        plan.params.update({f"{name}.{key}": flag for key, flag in _lock(settings).items()})
        plan.changed.append(name)
        plan.diff[name] = (current_value, value)
    for attribute, (kind, _switch) in TAG_KINDS.items():
        wanted = getattr(desired, attribute)
        if wanted is None:
            continue
        have = getattr(current, attribute)
        if _user_edited(kind, have, current, settings) and settings.tag_mode == "replace":
            plan.preserved.append(attribute)
            continue
        plan.merge(_plan_tag_list(kind, attribute, have, wanted, settings))
    return plan


def _plan_tag_list(kind: str, attribute: str, have: list[str], wanted: list[str], settings: Settings) -> EditPlan:
    mode = settings.tag_mode
    plan = EditPlan()
    have_keys = [name.casefold() for name in have]
    if mode == "merge":
        target = have + [name for name in wanted if name.casefold() not in have_keys]
    else:
        target = wanted
    if [name.casefold() for name in target] == have_keys:
        return plan
    plan.params.update(tag_list_params(kind, have, target, lock=not settings.preserve_plex_edits))
    plan.changed.append(attribute)
    plan.diff[attribute] = (have, target)
    return plan


def tag_list_params(kind: str, have: list[str], target: list[str], *, lock: bool = True) -> dict[str, str]:
    """The documented edit parameters that turn the list `have` into `target` (locked unless `lock` is off).

    The complete target list as `{kind}[i].tag.tag`, plus `{kind}[].tag.tag-` naming every current
    tag the target drops (as plexapi's `removeGenre`/`editTags(..., remove=True)` sends it).
    """
    kept = {name.casefold() for name in target}
    removed = [name for name in have if name.casefold() not in kept]
    params = {f"{kind}[{index}].tag.tag": name for index, name in enumerate(target)}
    if removed:
        params[f"{kind}[].tag.tag-"] = ",".join(quote(name) for name in removed)
    if lock:
        params[f"{kind}.locked"] = "1"
    return params


def plan_actors(wanted: list[Actor] | None, have: list[Actor], settings: Settings) -> EditPlan:
    """The actor list (names, the roles typed in Plex) as one complete list, if it differs from Plex's."""
    plan = EditPlan()
    if wanted is None:
        return plan
    by_name = {actor.name.casefold(): actor for actor in have}
    if settings.tag_mode == "merge":
        wanted_keys = {actor.name.casefold() for actor in wanted}
        target = [_keep_role(actor, by_name) for actor in wanted] + [a for a in have if a.name.casefold() not in wanted_keys]
    else:
        target = [_keep_role(actor, by_name) for actor in wanted]
    if _actor_keys(target) == _actor_keys(have):
        return plan
    plan.params.update(tag_list_params("actor", [a.name for a in have], [a.name for a in target],
                                       lock=not settings.preserve_plex_edits))
    for index, actor in enumerate(target):
        if actor.role:
            plan.params[f"actor[{index}].tagging.text"] = actor.role
    plan.changed.append("actors")
    plan.diff["actors"] = ([a.name for a in have], [a.name for a in target])
    return plan


def _keep_role(actor: Actor, current: dict[str, Actor]) -> Actor:
    """A role typed in Plex is kept (Stash has none); so is the photo Plex has (it is never sent)."""
    existing = current.get(actor.name.casefold())
    if existing is None:
        return actor
    return Actor(name=actor.name, role=existing.role, thumb=existing.thumb)


def _actor_keys(actors: list[Actor]) -> list[tuple[str, str]]:
    """What an actor edit can change: names and roles (photos are not written)."""
    return [(a.name.casefold(), a.role or "") for a in actors]
