"""Deterministic sample libraries: Stash scenes and the Plex items that hold the same files.

`make_dataset(n)` gives n scenes with files under /data/videos and n Plex items with the same
paths and only the scanner's defaults (title from the file name, no studio, no tags), which is how a
freshly scanned Plex library looks before any sync. Both emulators load these dicts as they are.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

STUDIOS = ["Northwind Pictures", "Blue Harbor", "Studio Kestrel", "Lumen & Co", "Ashgrove Films"]
PERFORMERS = [f"Performer {chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(120)]
TAGS = [f"Tag {i:03d}" for i in range(300)]
WORDS = "river stone quiet summer north light garden evening window harbor glass morning".split()

BASE_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Dataset:
    scenes: list[dict] = field(default_factory=list)
    plex_items: list[dict] = field(default_factory=list)
    performers: list[dict] = field(default_factory=list)


def make_scene(index: int, rng: random.Random, root: str = "/data/videos") -> dict:
    """One Stash scene in the shape the GraphQL emulator serves (ids are strings)."""
    basename = f"scene_{index:06d}.mp4"
    performer_ids = rng.sample(range(len(PERFORMERS)), k=rng.randint(0, 3))
    tag_ids = rng.sample(range(len(TAGS)), k=rng.randint(0, 6))
    studio_index = rng.randrange(len(STUDIOS) + 1)
    title_words = " ".join(rng.choice(WORDS).capitalize() for _ in range(rng.randint(2, 5)))
    return {
        "id": str(index),
        "title": f"{title_words} {index}",
        "code": None,
        "details": f"Scene {index}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))),
        "date": (BASE_TIME - timedelta(days=rng.randint(0, 3000))).strftime("%Y-%m-%d"),
        "rating100": rng.choice([None, 20, 40, 60, 80, 100]),
        "organized": rng.random() < 0.5,
        "created_at": iso(BASE_TIME),
        "updated_at": iso(BASE_TIME + timedelta(seconds=index)),
        "studio": None if studio_index == len(STUDIOS) else {"id": str(studio_index + 1), "name": STUDIOS[studio_index]},
        "performers": [{"id": str(i + 1), "name": PERFORMERS[i]} for i in performer_ids],
        "tags": [{"id": str(i + 1), "name": TAGS[i]} for i in tag_ids],
        "files": [{"path": f"{root}/{basename}", "basename": basename, "duration": 600.0 + (index * 37) % 3000 + 0.25}],
        "screenshot_version": 1,
    }


def make_plex_item(index: int, rating_key: int, path: str, section_id: int = 1) -> dict:
    """A Plex movie item as a scan leaves it: title from the file name, nothing else set."""
    basename = path.rsplit("/", 1)[-1]
    added = int(BASE_TIME.timestamp()) + index
    return {
        "ratingKey": rating_key,
        "section_id": section_id,
        "title": basename.rsplit(".", 1)[0],
        "files": [path],
        "summary": "",
        "studio": "",
        "tagline": "",
        "originallyAvailableAt": None,
        "userRating": None,
        "genres": [],
        "collections": [],
        "labels": [],
        "actors": [],
        "locked": [],
        "thumb": None,
        "addedAt": added,
        "updatedAt": added,
    }


def make_dataset(n: int, seed: int = 7, root: str = "/data/videos", first_rating_key: int = 1000) -> Dataset:
    rng = random.Random(seed)
    data = Dataset()
    data.performers = [{"id": str(i + 1), "name": name} for i, name in enumerate(PERFORMERS)]
    for index in range(1, n + 1):
        scene = make_scene(index, rng, root)
        data.scenes.append(scene)
        data.plex_items.append(make_plex_item(index, first_rating_key + index, scene["files"][0]["path"]))
    return data
