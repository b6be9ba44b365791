"""The provider's answers as Plex reads them: the MediaProvider root, MediaContainers, Metadata items.

Fields come from the chain's own mapping (`pipeline.metadata.desired_state`, sanitized by
`pipeline.sanitize`), with every field on: the provider is the library's agent, so Plex takes all of
an item's metadata from it (the `sync_*` switches govern the chain's edits only). Image URLs point
back at the provider (`/images/...`), which fetches the bytes from Stash with the API key: no
answer carries a Stash URL or a key.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pipeline.config import Settings
from pipeline.metadata import desired_state
from pipeline.models import StashScene
from pipeline.sanitize import TAG_LIMIT, clean_text

IDENTIFIER = "tv.plex.agents.custom.stash2plex"
TITLE = "stash2plex (Stash)"
VERSION = "1.0.0"
MOVIE = 1
GUID_PREFIX = f"{IDENTIFIER}://movie/"
METADATA_KEY = "/library/metadata"
MATCH_KEY = "/library/metadata/matches"
RATING_IMAGE = "stash2plex://image.rating"
_FIELD_SWITCHES = ("master", "title", "studio", "summary", "tagline", "date", "performers", "tags", "poster", "rating")


def media_provider() -> dict[str, Any]:
    """`GET /`: who we are, the one type we serve (movies) and where matches and metadata live."""
    return {
        "MediaProvider": {
            "identifier": IDENTIFIER,
            "title": TITLE,
            "version": VERSION,
            "Types": [{"type": MOVIE, "Scheme": [{"scheme": IDENTIFIER}]}],
            "Feature": [{"type": "metadata", "key": METADATA_KEY}, {"type": "match", "key": MATCH_KEY}],
        }
    }


def container(metadata: list[dict[str, Any]], offset: int = 0, total: int | None = None) -> dict[str, Any]:
    """A MediaContainer of `metadata`: one page (from `offset`) of `total` items (default: all of them)."""
    return {"MediaContainer": {"offset": offset, "totalSize": len(metadata) if total is None else total,
                               "identifier": IDENTIFIER, "size": len(metadata), "Metadata": metadata}}


def image_container(images: list[dict[str, Any]]) -> dict[str, Any]:
    return {"MediaContainer": {"offset": 0, "totalSize": len(images), "identifier": IDENTIFIER,
                               "size": len(images), "Image": images}}


def provider_view(settings: Settings) -> Settings:
    """The settings with every field switch on (tagline_source, max_tags, performer_thumbs still apply)."""
    return settings.model_copy(update={f"sync_{name}": True for name in _FIELD_SWITCHES})


def guid(scene_id: str) -> str:
    return f"{GUID_PREFIX}{scene_id}"


def _version(text: str) -> str:
    """A short fingerprint of a Stash image URL: the provider's image URL changes when Stash's does."""
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def screenshot_url(scene: StashScene, base: str) -> str | None:
    if not scene.screenshot_url:
        return None
    return f"{base}/images/scene/{scene.id}/screenshot?v={_version(scene.screenshot_url)}"


def performer_url(performer_id: str, image_path: str, base: str) -> str:
    return f"{base}/images/performer/{performer_id}?v={_version(image_path)}"


def _identity(scene: StashScene) -> dict[str, Any]:
    return {"ratingKey": scene.id, "key": f"{METADATA_KEY}/{scene.id}", "guid": guid(scene.id), "type": "movie"}


def scene_metadata(scene: StashScene, settings: Settings, base: str) -> dict[str, Any]:
    """The full Metadata object of one scene; `settings` should be `provider_view(...)`."""
    desired = desired_state(scene, settings)
    item: dict[str, Any] = {**_identity(scene), "title": desired.title or scene.id}
    if desired.originallyAvailableAt:
        item["originallyAvailableAt"] = desired.originallyAvailableAt
        item["year"] = int(desired.originallyAvailableAt[:4])
    if desired.summary:
        item["summary"] = desired.summary
    if desired.tagline:
        item["tagline"] = desired.tagline
    if desired.studio:
        item["studio"] = desired.studio
        item["Studio"] = [{"tag": desired.studio}]
    duration = scene.files[0].duration if scene.files else None
    if duration:
        item["duration"] = int(round(duration * 1000))
    item["isAdult"] = settings.provider_adult
    if desired.userRating is not None:
        item["audienceRating"] = desired.userRating
        item["Rating"] = [{"image": RATING_IMAGE, "type": "audience", "value": desired.userRating}]
    if desired.genres:
        item["Genre"] = [{"tag": name} for name in desired.genres]
    roles = _roles(scene, desired.actors or [], settings, base)
    if roles:
        item["Role"] = roles
    images = scene_images(scene, base, item["title"])
    if images:
        item["thumb"] = images[0]["url"]
        item["art"] = images[1]["url"]
        item["Image"] = images
    return item


def _roles(scene: StashScene, actors: list[Any], settings: Settings, base: str) -> list[dict[str, Any]]:
    performers = {clean_text(p.name, TAG_LIMIT).casefold(): p for p in scene.performers}
    roles: list[dict[str, Any]] = []
    for order, actor in enumerate(actors, start=1):
        role: dict[str, Any] = {"tag": actor.name, "order": order}
        performer = performers.get(actor.name.casefold())
        if performer is not None and performer.image_path and settings.performer_thumbs:
            role["thumb"] = performer_url(performer.id, performer.image_path, base)
        roles.append(role)
    return roles


def scene_images(scene: StashScene, base: str, title: str | None = None) -> list[dict[str, Any]]:
    """The scene's images: Stash has one screenshot, served as both poster and background."""
    url = screenshot_url(scene, base)
    if url is None:
        return []
    alt = title or scene.title or scene.id
    return [{"type": "coverPoster", "url": url, "alt": alt}, {"type": "background", "url": url, "alt": alt}]


def match_item(scene: StashScene, settings: Settings, base: str) -> dict[str, Any]:
    """A match candidate: enough for Plex's Match / Fix Match list (the full item comes from metadata;
    the caller adds the candidate's `score`)."""
    desired = desired_state(scene, settings)
    item: dict[str, Any] = {**_identity(scene), "title": desired.title or scene.id, "isAdult": settings.provider_adult}
    if desired.originallyAvailableAt:
        item["originallyAvailableAt"] = desired.originallyAvailableAt
        item["year"] = int(desired.originallyAvailableAt[:4])
    if desired.studio:
        item["studio"] = desired.studio
    thumb = screenshot_url(scene, base)
    if thumb:
        item["thumb"] = thumb
    return item
