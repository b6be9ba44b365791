"""Inline sync of a whole library: `sync --all --inline` against the emulators.

    python -m ops.bench.bench_inline [--scenes 2000]

Prints scenes/s, Plex requests per scene for a first sync, a second (no-change) run, and a run
after N scenes changed in Stash.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from ops.bench.common import PLEX_TOKEN, STASH_KEY, print_table
from pipeline.config import load_settings
from pipeline.inline import run_inline
from pipeline.sync import SyncEngine
from tests.emulators.plex import PlexEmulator
from tests.emulators.sample_data import make_dataset
from tests.emulators.stash import StashEmulator


def fields_not_in_plex(plex: PlexEmulator, stash: StashEmulator, data) -> int:
    """How many scenes' Plex items do not show the scene's title, studio, date, genres and actors."""
    wrong = 0
    for scene in data.scenes:
        current = stash.scene(scene["id"])
        item = plex.item(plex.rating_key_for_file(current["files"][0]["path"]))
        expected = (current["title"], (current["studio"] or {}).get("name", ""), current["date"],
                    sorted(t["name"] for t in current["tags"]), [p["name"] for p in current["performers"]])
        actual = (item["title"], item["studio"], item["originallyAvailableAt"], sorted(item["genres"]),
                  [a["tag"] for a in item["actors"]])
        wrong += expected != actual
    return wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=2000)
    parser.add_argument("--changed", type=int, default=100)
    args = parser.parse_args()

    data = make_dataset(args.scenes)
    plex = PlexEmulator(items=data.plex_items, token=PLEX_TOKEN).start()
    stash = StashEmulator(scenes=data.scenes, api_key=STASH_KEY).start()
    settings = load_settings(plex_url=plex.url, plex_token=PLEX_TOKEN, stash_url=stash.url, stash_api_key=STASH_KEY,
                             data_dir=Path(tempfile.mkdtemp(prefix="s2p-bench-")))
    rows: list[tuple[str, str]] = []
    try:
        for label, prepare in (("first sync", None), ("second sync (no change)", None), (f"{args.changed} scenes changed", "change")):
            if prepare == "change":
                for scene in data.scenes[: args.changed]:
                    stash.update_scene(scene["id"], title=scene["title"] + " (edited)")
            plex.reset_requests()
            engine = SyncEngine.from_settings(settings)
            started = time.perf_counter()
            summary = run_inline(engine, all_scenes=True)
            seconds = time.perf_counter() - started
            counts = Counter({k: v for k, v in plex.request_counts.items()})
            total = sum(counts.values())
            updated = summary.counts["updated"]
            wrong = fields_not_in_plex(plex, stash, data)
            rows += [
                (f"{label}: scenes whose Plex item differs from Stash", f"{wrong} of {args.scenes}"),
                (f"{label}: scenes/s", f"{args.scenes / seconds:,.0f} ({seconds:.1f} s for {args.scenes})"),
                (f"{label}: outcomes", ", ".join(f"{k}={v}" for k, v in sorted(summary.counts.items()))),
                (f"{label}: Plex requests", f"{total} ({', '.join(f'{k}={v}' for k, v in sorted(counts.items()))})"),
                (f"{label}: Plex requests per scene", f"{total / args.scenes:.3f}"),
                (f"{label}: per updated scene", f"{total / updated:.3f}" if updated else "n/a (0 updated)"),
            ]
    finally:
        plex.stop()
        stash.stop()
    print_table(f"bench_inline: {args.scenes} Stash scenes, {args.scenes} Plex items, emulators in-process", rows)


if __name__ == "__main__":
    main()
