"""Which Stash scene a Plex match request names.

Plex sends the media file's path as Plex sees it (`filename`), maybe absolute under Plex's mount,
maybe relative to the library folder. In order:

1. our own guid (`tv.plex.agents.custom.stash2plex://movie/<id>`: a refresh of a matched item);
2. the exact path, after `path_map` reversed (Plex's prefix -> Stash's), then as sent;
3. the path relative to the library: the Stash path that ends with every component sent;
4. the case-insensitive file name.

At steps 3 and 4 several scenes may fit. With `strict_matching` (as in the chain) the automatic
match then answers nothing rather than guess; with `manual=1` (Fix Match) every candidate is listed,
best first (the longest common path tail). Without strict matching the best one is the answer.
With `manual=1` and no file match, titles are searched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from pipeline.config import Settings
from pipeline.matching import map_path
from pipeline.provider.documents import GUID_PREFIX, MOVIE
from pipeline.provider.index import FileEntry, SceneIndex, normal_path

MAX_CANDIDATES = 100  # a Fix Match list; Plex pages it (X-Plex-Container-Start/-Size, 20 by default)
SCORES = {"guid": 100, "path": 100, "relative": 95, "basename": 90, "ambiguous": 70, "title": 60}


class MatchRequest(BaseModel):
    """The JSON body of `POST /library/metadata/matches`; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    type: int | None = None
    title: str | None = None
    year: int | None = None
    guid: str | None = None
    filename: str | None = None
    manual: bool = False
    includeAdult: bool = False

    @field_validator("type", "year", "title", "guid", "filename", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


@dataclass(frozen=True)
class Candidate:
    scene_id: str
    how: str  # guid, path, relative, basename, ambiguous, title
    score: int


def components(path: str) -> list[str]:
    return [part for part in normal_path(path).split("/") if part]


def reverse_map(path: str, path_map: list[tuple[str, str]]) -> str:
    """Plex's path -> Stash's: `map_path` with each `stash_prefix=plex_prefix` pair turned round."""
    return map_path(path, [(normal_path(plex), normal_path(stash)) for stash, plex in path_map if plex])


def _common_tail(a: list[str], b: list[str]) -> int:
    count = 0
    for x, y in zip(reversed(a), reversed(b)):
        if x.casefold() != y.casefold():
            break
        count += 1
    return count


def find_candidates(request: MatchRequest, index: SceneIndex, settings: Settings) -> list[Candidate]:
    """The scenes to answer with, best first (at most one unless `manual`); [] for no match."""
    if request.type not in (None, MOVIE):
        return []
    if request.guid and request.guid.startswith(GUID_PREFIX):
        scene_id = request.guid[len(GUID_PREFIX):]
        if index.get(scene_id) is not None:
            return [Candidate(scene_id, "guid", SCORES["guid"])]
    found: list[Candidate] = []
    if request.filename:
        found = _by_file(request.filename, index, settings, request.manual)
    if not found and request.manual and request.title:
        found = _by_title(request.title, request.year, index)
    return found if request.manual else found[:1]


def _by_file(filename: str, index: SceneIndex, settings: Settings, manual: bool) -> list[Candidate]:
    sent = normal_path(filename.strip())
    for path in dict.fromkeys([reverse_map(sent, settings.path_map), sent]):
        scene_id = index.scene_for_path(path)
        if scene_id is not None:
            return [Candidate(scene_id, "path", SCORES["path"])]
    wanted = components(sent)
    if not wanted:
        return []
    named = _by_scene(index.files_named(wanted[-1]))
    if len(wanted) > 1:
        relative = {sid: tail for sid, tail in _tails(named, wanted).items() if tail == len(wanted)}
        if len(relative) == 1:
            return [Candidate(next(iter(relative)), "relative", SCORES["relative"])]
        if relative:
            return _ambiguous(relative, settings, manual)
    if len(named) == 1:
        return [Candidate(next(iter(named)), "basename", SCORES["basename"])]
    if named:
        return _ambiguous(_tails(named, wanted), settings, manual)
    return []


def _by_scene(entries: tuple[FileEntry, ...]) -> dict[str, list[str]]:
    """scene id -> its file paths among `entries` (a scene with two copies of a file is one scene)."""
    scenes: dict[str, list[str]] = {}
    for entry in entries:
        scenes.setdefault(entry.scene_id, []).append(entry.path)
    return scenes


def _tails(named: dict[str, list[str]], wanted: list[str]) -> dict[str, int]:
    """scene id -> the longest common path tail (in components) between its files and the sent path."""
    return {sid: max(_common_tail(components(path), wanted) for path in paths) for sid, paths in named.items()}


def _ambiguous(tails: dict[str, int], settings: Settings, manual: bool) -> list[Candidate]:
    if settings.strict_matching and not manual:
        return []  # guessing would put one scene's metadata on another's file
    ranked = sorted(tails.items(), key=lambda pair: (-pair[1], _id_order(pair[0])))
    return [Candidate(sid, "ambiguous", max(1, SCORES["ambiguous"] - rank)) for rank, (sid, _tail) in enumerate(ranked[:MAX_CANDIDATES])]


def _id_order(scene_id: str) -> tuple[int, str]:
    return (int(scene_id), "") if scene_id.isdigit() else (1 << 62, scene_id)


def _by_title(title: str, year: int | None, index: SceneIndex) -> list[Candidate]:
    """Fix Match by title: exact titles first, then titles that start with it, then contain it."""
    needle = title.strip().casefold()
    if not needle:
        return []
    ranked: list[tuple[int, tuple[int, str], str]] = []
    for scene in list(index.scenes.values()):
        text = (scene.title or "").casefold()
        if needle not in text:
            continue
        rank = 0 if text == needle else 1 if text.startswith(needle) else 2
        if year is not None and not (scene.date or "").startswith(str(year)):
            rank += 3
        ranked.append((rank, _id_order(scene.id), scene.id))
    ranked.sort()
    return [Candidate(sid, "title", max(1, SCORES["title"] - rank)) for rank, _order, sid in ranked[:MAX_CANDIDATES]]
