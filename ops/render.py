"""Rich output for people: tables, progress bars, error lines. Machines get `--json` instead.

Human output goes to stdout; progress bars, notes and errors to stderr. Errors and notes are
printed without markup or wrapping (a URL in them stays on one line) and are scrubbed of secrets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from ops.common import CliError, human_age
from pipeline.errors import scrub

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

CELL_LIMIT = 80


def short(value: Any, limit: int = CELL_LIMIT) -> str:
    """A value as one table cell: lists joined, long text cut with an ellipsis."""
    if value is None:
        return "-"
    text = ", ".join(map(str, value)) if isinstance(value, (list, tuple, set)) else str(value)
    text = " ".join(text.split())
    if not text:
        return "-"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def note(message: str) -> None:
    err.print(scrub(message), markup=False, soft_wrap=True)


def failure(error: CliError) -> None:
    """`error: ...` and `fix: ...` on stderr."""
    err.print(f"error: {error.message}", markup=False, soft_wrap=True, style="red")
    if error.fix:
        err.print(f"fix: {error.fix}", markup=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """JSON on stdout, plain (no colours, no wrapping), scrubbed of secrets."""
    typer.echo(scrub(json.dumps(data, indent=2, default=str, ensure_ascii=False)))


@contextmanager
def progress_bar(description: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr when it is a terminal; the callback takes (done, total)."""
    if not enabled or not err.is_terminal:
        yield lambda _done, _total: None
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(description, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total or None)


def table(title: str, columns: list[str], rows: list[list[Any]], **options: Any) -> Table:
    found = Table(title=title, title_justify="left", **options)
    for column in columns:
        found.add_column(column)
    for row in rows:
        found.add_row(*[Text(cell if isinstance(cell, str) else short(cell)) for cell in row])
    return found


def outcome_table(counts: Mapping[str, int], labels: Mapping[str, str], title: str = "Outcome") -> Table:
    """The outcome of a sync: every named outcome (zeros included), then any other outcome seen."""
    rows = [[labels[key], str(counts.get(key, 0))] for key in ("updated", "unchanged", "not_found", "failed", "dead_letter")]
    rows += [[labels.get(key, key), str(value)] for key, value in counts.items()
             if key not in ("updated", "unchanged", "not_found", "failed", "dead_letter") and value]
    return table(title, ["outcome", "scenes"], rows)


def problems_table(problems: list[tuple[str, str, str]], limit: int = 20) -> Table:
    rows = [[scene_id, outcome, short(detail, 120)] for scene_id, outcome, detail in problems[:limit]]
    more = f" (first {limit} of {len(problems)})" if len(problems) > limit else ""
    return table(f"Scenes that did not sync{more}", ["scene", "outcome", "detail"], rows)


def diff_table(diffs: Mapping[str, Mapping[str, tuple[Any, Any]]]) -> Table:
    """Field-by-field: what Plex has now, and what the sync would write from Stash."""
    rows = []
    for scene_id, fields in diffs.items():
        for index, (name, (now, wanted)) in enumerate(fields.items()):
            rows.append([scene_id if index == 0 else "", name, short(now, 50), short(wanted, 50)])
    return table("Dry run: what a sync would write to Plex (nothing was written)", ["scene", "field", "Plex now", "Stash"], rows)


def dlq_table(entries: list[dict[str, Any]], total: int) -> Table:
    now = time.time()
    rows = [[e["id"], e["scene_id"], e["stage"], e["error_class"], str(e["count"]), str(e["attempts"]),
             human_age(now - e["first_seen"]), human_age(e["age_seconds"]), short(e["message"], 60)] for e in entries]
    shown = f" ({len(entries)} of {total})" if len(entries) < total else f" ({total})"
    return table(f"Dead-lettered scenes, one entry each, latest cause{shown}",
                 ["id", "scene", "stage", "error class", "times", "attempts", "first seen", "last seen", "message"], rows)


def status_tables(status: dict[str, Any]) -> list[Any]:
    """The status as tables and lines, in reading order."""
    broker = status["broker"]
    parts: list[Any] = []
    if broker["reachable"]:
        unknown = "?" if not broker["unacked_known"] else None
        rows = [[q["name"] + ("" if q["exists"] else " (not declared)"), str(q["ready"]),
                 unknown or str(q["unacked"]), str(q["consumers"])] for q in status["queues"]]
        parts.append(table(f"Queues at {broker['url']} (from the {broker['source']} API)" if broker["source"] == "management"
                           else f"Queues at {broker['url']} (AMQP)", ["queue", "ready", "unacked", "consumers"], rows))
        if not broker["unacked_known"]:
            parts.append(f"unacked counts unknown: {broker['management_error'] or 'no management API'} "
                         "(enable it with `rabbitmq-plugins enable rabbitmq_management`)")
    else:
        parts.append(f"broker: {broker['error']}")
    dlq = status["dlq"]
    oldest = dlq["oldest"]
    oldest_text = (f", oldest {oldest['id']} (scene {oldest['scene_id']}, {oldest['error_class']}, "
                   f"{human_age(oldest['age_seconds'])} ago)") if oldest else ""
    parts.append(f"DLQ {dlq['name']}: {dlq['size'] if dlq['size'] is not None else '?'} entries{oldest_text}")
    breakers = status["breakers"]
    if breakers:
        parts.append(table("Circuit breakers (per worker process)", ["worker", "server", "state", "failures", "last error", "updated"],
                           [[b["owner"], b["service"], b["state"], str(b["failures"]), short(b["last_error"], 60),
                             human_age(time.time() - b["updated_at"]) + " ago"] for b in breakers]))
    else:
        parts.append("Plex and Stash circuit breakers: none recorded (closed)")
    synced = status["synced_last_hour"]
    by_outcome = ", ".join(f"{k} {v}" for k, v in sorted(synced["by_outcome"].items())) or "none"
    parts.append(f"last hour: {synced['total']} scene outcome(s) ({by_outcome})")
    last = status["last_error"]
    if last:
        parts.append(f"last error: scene {last['scene_id']} {last['outcome']} {human_age(time.time() - last['ts'])} ago: "
                     f"{short(last['detail'], 160)}")
    return parts
