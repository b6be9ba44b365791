"""Typed data at the pipeline's boundaries: a Stash scene, a Plex item's state, the desired state, a job."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- Stash --------------------------------------------------------------------------------------
class StashNamed(_Model):
    id: str
    name: str

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_str(cls, value: Any) -> str:
        return str(value)


class StashPerformer(StashNamed):
    image_path: str | None = None


class StashFile(_Model):
    path: str
    basename: str = ""
    duration: float | None = None  # seconds


class StashScene(_Model):
    """One scene as `pipeline.stash_queries.SCENE_FIELDS` returns it."""

    id: str
    title: str | None = None
    code: str | None = None
    details: str | None = None
    date: str | None = None
    rating100: int | None = None
    organized: bool = False
    updated_at: str | None = None
    studio: StashNamed | None = None
    performers: list[StashPerformer] = Field(default_factory=list)
    tags: list[StashNamed] = Field(default_factory=list)
    files: list[StashFile] = Field(default_factory=list)
    screenshot_url: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_str(cls, value: Any) -> str:
        return str(value)

    @classmethod
    def from_graphql(cls, data: dict[str, Any]) -> "StashScene":
        paths = data.get("paths") or {}
        return cls.model_validate({**data, "screenshot_url": paths.get("screenshot")})

    @property
    def file_paths(self) -> list[str]:
        return [f.path for f in self.files]


# --- Plex ---------------------------------------------------------------------------------------
class Actor(_Model):
    name: str
    role: str = ""
    thumb: str | None = None


class PlexItemState(_Model):
    """The full current state of one Plex item (from `/library/metadata/{id}`)."""

    rating_key: int
    section_id: int
    title: str = ""
    studio: str = ""
    summary: str = ""
    tagline: str = ""
    originallyAvailableAt: str = ""
    userRating: float | None = None
    genres: list[str] = Field(default_factory=list)
    collections: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    actors: list[Actor] = Field(default_factory=list)
    locked: set[str] = Field(default_factory=set)
    thumb: str | None = None
    files: list[str] = Field(default_factory=list)
    updated_at: int = 0


class DesiredState(_Model):
    """What Plex should show for a scene, already sanitized. `None` means: leave that field alone."""

    title: str | None = None
    studio: str | None = None
    summary: str | None = None
    tagline: str | None = None
    originallyAvailableAt: str | None = None
    userRating: float | None = None
    genres: list[str] | None = None
    collections: list[str] | None = None
    actors: list[Actor] | None = None
    poster_url: str | None = None
    poster_key: str | None = None  # the cover label of this screenshot version (pipeline.metadata.cover_label)

    def scalar_fields(self) -> dict[str, str | float]:
        names = ("title", "studio", "summary", "tagline", "originallyAvailableAt", "userRating")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


# --- Work moving through the actors -----------------------------------------------------------
class Job(_Model):
    """One scene's trip through fetch -> match -> push -> performers; small, and free of secrets."""

    scene_id: str
    event: str = "sync"
    origin_ts: float = Field(default_factory=time.time)
    attempts: int = 0
    deferrals: int = 0
    first_failure: float | None = None
    last_failure: float | None = None
    last_error: str | None = None
    error_class: str | None = None
    dry_run: bool = False
    files: list[str] = Field(default_factory=list)
    desired: DesiredState | None = None
    rating_key: int | None = None
    section_id: int | None = None
    edit: dict[str, str] = Field(default_factory=dict)
    changed: list[str] = Field(default_factory=list)
    diff: dict[str, tuple[Any, Any]] = Field(default_factory=dict)
    current_actors: list[Actor] | None = None
    skip_reason: str | None = None

    @field_validator("scene_id", mode="before")
    @classmethod
    def _id_as_str(cls, value: Any) -> str:
        return str(value)

    def with_failure(self, record: "FailureRecord") -> "Job":
        """A copy of this job carrying `record` (what `pipeline.policy.decide` returned)."""
        return self.model_copy(update=record.model_dump())

    def fresh(self) -> "Job":
        """A copy with its failure history cleared (a DLQ replay starts a fresh retry budget)."""
        return self.with_failure(FailureRecord())


class FailureRecord(_Model):
    """A job's failure history: attempts spend the retry budget, deferrals (Plex down) do not."""

    attempts: int = 0
    deferrals: int = 0
    first_failure: float | None = None
    last_failure: float | None = None
    last_error: str | None = None
    error_class: str | None = None


class SkipReason(StrEnum):
    """Why a scene was skipped on purpose (never an error, never a DLQ entry)."""

    NO_FILE = "no_file"
    SCENE_GONE = "scene_gone"
    DISABLED = "disabled"


class Outcome(StrEnum):
    """How a scene's trip ended (recorded for `status`, `sync --wait` and the metrics)."""

    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DRY_RUN = "dry_run"
    SKIPPED = "skipped"
    COALESCED = "coalesced"
    NOT_FOUND = "not_found"
    FAILED = "failed"
    DEAD_LETTER = "dead_letter"
