"""`stash2plex`: the operator CLI (sync, status, dlq, reconcile, doctor, demo, worker, provider, plugin install).

Thin: each command parses its options, calls one function of an `ops` module (the same functions
the Stash plugin tasks use), and renders the result: rich tables for people, `--json` for machines.
Expected failures print `error: ...` (and `fix: ...`) and exit with the codes in `ops.common`.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

try:  # typer >= 0.22 vendors click as typer._click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer with click installed
    from click.exceptions import UsageError  # type: ignore[no-redef,assignment]

from ops import render
from ops.common import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    BadSetting,
    CliError,
    as_cli_error,
    load_cli_settings,
    parse_duration,
    setup_cli_logging,
    split_ids,
)
from pipeline.config import Settings
from pipeline.broker_address import redact_url
from pipeline.stash import iso_since

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_PYTHON = Path(sys.executable)

app = typer.Typer(
    name="stash2plex",
    help="Keep a Plex library's metadata in step with Stash. Start with `stash2plex demo`, then `stash2plex doctor`.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
dlq_app = typer.Typer(help="Inspect, replay and purge dead-lettered scenes.", epilog=EXIT_CODES_HELP, no_args_is_help=True)
plugin_app = typer.Typer(help="Install the Stash plugin.", epilog=EXIT_CODES_HELP, no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(plugin_app, name="plugin")


@dataclass
class AppState:
    """The global options, handed to every command through the typer context."""

    config_file: Path | None = None
    json_output: bool = False
    log_json: bool = False

    def settings(self, *, with_stash: bool = True, **overrides: Any) -> Settings:
        """The settings as the workers see them; debug_logging and obfuscate_paths apply to the CLI's logs too.

        `with_stash=False` for commands that need only RabbitMQ and the state file (status, dlq list/show/purge):
        they never wait on Stash, and read the environment and the TOML file only.
        """
        settings = load_cli_settings(self.config_file, with_stash=with_stash, **overrides)
        setup_cli_logging(level="DEBUG" if settings.debug_logging else None, obfuscate_paths=settings.obfuscate_paths)
        return settings

    @property
    def show_progress(self) -> bool:
        return not self.log_json


def state_of(ctx: typer.Context) -> AppState:
    """The global options (defaults when a command runs without the root callback, e.g. in a unit test)."""
    return ctx.find_root().obj if isinstance(ctx.find_root().obj, AppState) else AppState()


def handles_failures(func: F) -> F:
    """Expected failures -> `error:`/`fix:` lines and their exit code; bugs keep their traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:
            failure = as_cli_error(exc)
            if failure is None:
                raise
            render.failure(failure)
            raise typer.Exit(failure.exit_code) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def global_options(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", metavar="FILE", dir_okay=False, help="TOML settings file (top level or a \\[stash2plex] table); environment variables still win.")] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Machine-readable JSON on stdout where a command supports it (status, dlq list, dlq show, reconcile, doctor).")] = False,
    log_json: Annotated[bool, typer.Option(
        "--log-json", help="Log lines on stderr as JSON objects (one per line); turns progress bars off.")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Log at INFO level (default: warnings and errors only).")] = False,
) -> None:
    """Global options; they go before the command (`stash2plex --config s2p.toml status`)."""
    setup_cli_logging(json_lines=log_json, level="INFO" if verbose else "WARNING")
    ctx.obj = AppState(config_file=config, json_output=json_output, log_json=log_json)


# --- sync ---------------------------------------------------------------------------------------------
def _selection(scene: list[str] | None, more: list[str] | None, all_scenes: bool, recent: str | None) -> tuple[list[str], str | None]:
    if more and not scene:
        raise UsageError(f"unexpected argument(s) {' '.join(more)}: scene ids go after --scene")
    if sum([bool(scene), all_scenes, recent is not None]) != 1:
        raise UsageError("give exactly one of --scene ID [ID...], --all, --recent DURATION")
    since = None
    if recent is not None:
        try:
            since = iso_since(parse_duration(recent))
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--recent") from None
    return split_ids([*(scene or []), *(more or [])]), since


@app.command(epilog=EXIT_CODES_HELP)
@handles_failures
def sync(
    ctx: typer.Context,
    scene: Annotated[list[str] | None, typer.Option(
        "--scene", metavar="ID", help="Scene id(s): --scene 12 13 14, or --scene 12,13.")] = None,
    more: Annotated[list[str] | None, typer.Argument(hidden=True, metavar="ID")] = None,
    all_scenes: Annotated[bool, typer.Option("--all", help="Every scene in Stash.")] = False,
    recent: Annotated[str | None, typer.Option(
        "--recent", metavar="DURATION", help="Scenes updated in the last DURATION: 30m, 24h, 7d.")] = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Follow the enqueued scenes until each has an outcome, then print the outcome table.")] = False,
    inline: Annotated[bool, typer.Option(
        "--inline", help="Run the four steps in this process instead of enqueuing (no workers needed).")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the field-by-field diff a sync would write to Plex and write nothing. Implies --inline (the diff is computed here), enqueues nothing.")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=1, help="With --wait: seconds to wait before giving up (exit 1).")] = 300.0,
) -> None:
    """Sync scenes to Plex: enqueue them for the workers (default) or run them inline.

    Exit 1 when a scene failed, was not found in Plex or was dead-lettered (known with --wait or --inline).
    """
    ids, since = _selection(scene, more, all_scenes, recent)
    state = state_of(ctx)
    settings = state.settings()
    if inline or dry_run:
        _sync_inline(state, settings, ids, since, all_scenes, dry_run)
    else:
        _sync_enqueue(state, settings, ids, since, wait, timeout)


def _sync_inline(state: AppState, settings: Settings, ids: list[str], since: str | None, all_scenes: bool, dry_run: bool) -> None:
    from ops.sync import OUTCOME_LABELS, PROBLEM_OUTCOMES, sync_inline

    with render.progress_bar("Syncing inline", enabled=state.show_progress) as advance:
        summary = sync_inline(settings, scene_ids=ids or None, since=since, all_scenes=all_scenes, dry_run=dry_run,
                              on_progress=advance)
    if dry_run:
        if summary.diffs:
            render.out.print(render.diff_table(summary.diffs))
        else:
            render.out.print("Dry run: Plex already matches Stash for these scenes; nothing would be written.")
    render.out.print(render.outcome_table(summary.counts, OUTCOME_LABELS))
    if summary.problems:
        render.out.print(render.problems_table(summary.problems))
    mode = "dry run, nothing written to Plex" if dry_run else "inline"
    render.out.print(f"{summary.total} scene(s) in {summary.seconds:.1f} s ({mode})")
    if any(summary.counts.get(key) for key in PROBLEM_OUTCOMES):
        raise typer.Exit(EXIT_FAILED)


def _sync_enqueue(state: AppState, settings: Settings, ids: list[str], since: str | None, wait: bool, timeout: float) -> None:
    from ops.broker import check_broker
    from ops.sync import enqueue, known_scene_ids, list_scene_ids

    if settings.uses_stub_broker:
        raise BadSetting("broker_url: stub:// runs the actors only inside the demo; use --inline, or set broker_url to RabbitMQ")
    check_broker(settings)
    asked_for_ids = bool(ids)
    if ids:
        ids, unknown = known_scene_ids(settings, ids)
        if unknown:
            render.note(f"not in Stash, skipped: {', '.join(unknown)}")
    else:
        with render.progress_bar("Listing scenes", enabled=state.show_progress) as advance:
            ids = list_scene_ids(settings, since=since, on_progress=advance)
    if not ids:
        render.out.print("Nothing to sync: no scene matched.")
        raise typer.Exit(EXIT_FAILED if asked_for_ids else 0)
    started = time.time()
    with render.progress_bar("Enqueuing", enabled=state.show_progress) as advance:
        sent = enqueue(settings, ids, on_progress=advance)
    render.out.print(f"Queued {len(sent.scene_ids)} scene(s) in {sent.messages} message(s) to {sent.queue}.")
    if not settings.enabled:
        render.note("note: enabled=false, so the workers will skip these scenes")
    if wait:
        _wait(state, settings, ids, started, timeout)


def _wait(state: AppState, settings: Settings, ids: list[str], started: float, timeout: float) -> None:
    from ops.status import queue_depths
    from ops.sync import OUTCOME_LABELS, wait_for_outcomes

    with render.progress_bar("Waiting for the workers", enabled=state.show_progress) as advance:
        result = wait_for_outcomes(settings, ids, started - 1, timeout=timeout, interval=0.5,
                                   idle_probe=lambda: queue_depths(settings).idle(), on_progress=advance)
    render.out.print(render.outcome_table(result.counts(), OUTCOME_LABELS))
    if result.problems:
        render.out.print(render.problems_table(result.problems))
    if result.pending and not result.timed_out:
        render.note(f"{len(result.pending)} scene(s) left no outcome while the queues were idle (see the workers' logs)")
    if result.timed_out:
        raise CliError(f"timed out after {timeout:g} s: {len(result.pending)} scene(s) have no outcome yet",
                       fix="check that workers run (`stash2plex worker`, `stash2plex status`) and share this data_dir")
    if result.problems:
        raise typer.Exit(EXIT_FAILED)


# --- status -------------------------------------------------------------------------------------------
@app.command(epilog=EXIT_CODES_HELP)
@handles_failures
def status(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Queue depths (ready/unacked), DLQ size and oldest entry, breaker state, last hour's outcomes, last error.

    Exit 3 when RabbitMQ is unreachable (the local part is still shown).
    """
    from ops.status import gather_status

    state = state_of(ctx)
    settings = state.settings(with_stash=False)
    data = gather_status(settings)
    if json_output or state.json_output:
        render.print_json(data)
    else:
        for part in render.status_tables(data):
            if isinstance(part, str):
                render.out.print(part, markup=False, soft_wrap=True)
            else:
                render.out.print(part)
    if not data["broker"]["reachable"] and not settings.uses_stub_broker:
        raise typer.Exit(EXIT_UNREACHABLE)


# --- dlq ----------------------------------------------------------------------------------------------
@dlq_app.command("list", epilog=EXIT_CODES_HELP)
@handles_failures
def dlq_list(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="Print the entries as JSON.")] = False,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, help="Show at most N entries (oldest first).")] = None,
    error_class: Annotated[str | None, typer.Option(
        "--error-class", metavar="C", help="Only entries of this error class: permanent, transient, plex_down, stash_down, not_in_plex, internal.")] = None,
) -> None:
    """List dead-lettered scenes, oldest first (reading does not remove them)."""
    from ops.dlq import list_entries, summary

    state = state_of(ctx)
    entries, total = list_entries(state.settings(with_stash=False), limit=limit, error_class=error_class)
    shown = [summary(e) for e in entries]
    if json_output or state.json_output:
        render.print_json({"total": total, "count": len(shown), "entries": shown})
    elif not shown:
        render.out.print("The DLQ is empty." if error_class is None else f"No DLQ entry of class {error_class}.")
    else:
        render.out.print(render.dlq_table(shown, total))


@dlq_app.command("show", epilog=EXIT_CODES_HELP)
@handles_failures
def dlq_show(
    ctx: typer.Context,
    entry_id: Annotated[str, typer.Argument(
        metavar="ID", help="The entry's id (from `dlq list`; a unique prefix is enough).")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the entry, job included, as JSON.")] = False,
) -> None:
    """Show one DLQ entry in full: the error, its history, and the job a replay would send."""
    from ops.dlq import find_entry, summary

    state = state_of(ctx)
    entry = find_entry(state.settings(with_stash=False), entry_id)
    if json_output or state.json_output:
        render.print_json({**summary(entry), "job": entry.job})
        return
    data = summary(entry)
    rows = [[key, str(value) if value is not None else "-"] for key, value in data.items()]
    rows += [["job." + key, render.short(value, 100)] for key, value in entry.job.items() if key not in ("desired", "diff", "edit")]
    render.out.print(render.table(f"DLQ entry {entry.id}", ["field", "value"], rows))


@dlq_app.command("replay", epilog=EXIT_CODES_HELP)
@handles_failures
def dlq_replay(
    ctx: typer.Context,
    entry_ids: Annotated[list[str] | None, typer.Argument(metavar="[ID...]", help="Entry ids to replay.")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every entry.")] = False,
    error_class: Annotated[str | None, typer.Option(
        "--error-class", metavar="C", help="Replay every entry of this error class.")] = None,
) -> None:
    """Send entries back to the actor of the stage that failed, with attempts and deferrals reset.

    Each entry leaves the DLQ only after its job was sent. Exit 1 when a named id is not in the DLQ.
    """
    from ops.dlq import replay

    if not (replay_all or entry_ids or error_class):
        raise UsageError("say which entries to replay: --all, ID..., or --error-class C")
    if replay_all and (entry_ids or error_class):
        raise UsageError("--all replays everything; do not combine it with ids or --error-class")
    done = replay(state_of(ctx).settings(), ids=entry_ids, error_class=error_class, everything=replay_all)
    for entry in done:
        render.out.print(f"replayed {entry.id}: scene {entry.scene_id} -> {entry.actor}", markup=False)
    render.out.print(f"Replayed {len(done)} entr{'y' if len(done) == 1 else 'ies'}.")
    missing = sorted(set(entry_ids or []) - {e.id for e in done})
    if missing:
        raise CliError(f"not in the DLQ: {', '.join(missing)}", fix="list the ids with `stash2plex dlq list`")


@dlq_app.command("purge", epilog=EXIT_CODES_HELP)
@handles_failures
def dlq_purge(
    ctx: typer.Context,
    older_than: Annotated[str | None, typer.Option(
        "--older-than", metavar="DURATION", help="Only entries dead-lettered more than DURATION ago (30d, 12h). Without it: every entry.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete DLQ entries (all of them unless --older-than). Asks first unless --yes."""
    from ops.dlq import count_purgeable, purge

    seconds = None
    if older_than is not None:
        try:
            seconds = parse_duration(older_than)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--older-than") from None
    settings = state_of(ctx).settings(with_stash=False)
    if not yes:
        count = count_purgeable(settings, seconds)
        if count == 0:
            render.out.print("Nothing to purge.")
            return
        scope = f"older than {older_than}" if older_than else "(every entry)"
        typer.confirm(f"Delete {count} DLQ entr{'y' if count == 1 else 'ies'} {scope} from {settings.dlq_name}?", abort=True)
    removed = purge(settings, older_than_seconds=seconds)
    render.out.print(f"Purged {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} from {settings.dlq_name}.")


# --- reconcile ----------------------------------------------------------------------------------------
class Scope(str, Enum):
    all = "all"
    day = "24h"
    week = "7d"


@app.command(epilog=EXIT_CODES_HELP)
@handles_failures
def reconcile(
    ctx: typer.Context,
    scope: Annotated[Scope, typer.Option(
        "--scope", help="Which scenes: all, or those updated in the last 24h or 7d.")] = Scope.all,
    missing_only: Annotated[bool, typer.Option(
        "--missing-only", help="Only scenes never written by stash2plex, or not in Plex.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compare and report only; enqueue nothing.")] = False,
    show: Annotated[int, typer.Option(
        "--show", min=0, help="List up to N scenes per category that needs attention.")] = 20,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Compare Stash with Plex; enqueue the scenes whose Plex metadata differs (unless --dry-run).

    Categories: not in Plex, ambiguous, differs (which fields), in sync. Writes nothing to Plex itself.
    """
    from ops.broker import check_broker
    from ops.sync import reconcile as run_reconcile

    state = state_of(ctx)
    settings = state.settings()
    if not dry_run:
        if settings.uses_stub_broker:
            raise BadSetting("broker_url: stub:// cannot queue work outside the demo; use --dry-run or set broker_url")
        check_broker(settings)
    as_json = json_output or state.json_output
    with render.progress_bar("Comparing", enabled=state.show_progress and not as_json) as advance:
        report, sent = run_reconcile(settings, scope.value, missing_only=missing_only, dry_run=dry_run, on_progress=advance)
    if as_json:
        render.print_json(_reconcile_json(report, sent))
        return
    _print_reconcile(report, show)
    if sent is not None:
        render.out.print(f"Queued {len(sent.scene_ids)} differing scene(s) in {sent.messages} message(s) to {sent.queue}.")
    elif report.differing_ids:
        render.out.print(f"Dry run: {len(report.differing_ids)} differing scene(s) not queued.")
    else:
        render.out.print("Nothing to queue.")


def _reconcile_json(report: Any, sent: Any) -> dict[str, Any]:
    def listed(category: str) -> list[dict[str, Any]]:
        return [{"scene_id": s.scene_id, "fields": list(s.fields), "detail": s.detail}
                for s in report.scenes if s.category.value == category]

    return {
        "scope": report.scope, "missing_only": report.missing_only, "scanned": report.scanned,
        "seconds": round(report.seconds, 3), "skipped_written": report.skipped_written,
        "counts": {key: report.counts.get(key, 0) for key in ("not_in_plex", "ambiguous", "differs", "in_sync")},
        "differs": listed("differs"), "not_in_plex": listed("not_in_plex"), "ambiguous": listed("ambiguous"),
        "queued": len(sent.scene_ids) if sent else 0, "messages": sent.messages if sent else 0,
        "queue": sent.queue if sent else None,
    }


def _print_reconcile(report: Any, show: int) -> None:
    labels = {"not_in_plex": "not in Plex", "ambiguous": "ambiguous", "differs": "differs", "in_sync": "in sync"}
    rows = [[label, str(report.counts.get(key, 0))] for key, label in labels.items()]
    if report.missing_only:
        rows.append(["skipped (written by stash2plex before)", str(report.skipped_written)])
    title = f"Reconcile ({report.scope}{', missing only' if report.missing_only else ''})"
    render.out.print(render.table(title, ["category", "scenes"], rows))
    render.out.print(f"{report.scanned} scene(s) read from Stash in {report.seconds:.1f} s")
    fields = report.field_counts()
    if fields:
        render.out.print(render.table("Differing fields", ["field", "scenes"], [[k, str(v)] for k, v in fields.most_common()]))
    if show:
        listed = [s for category in ("differs", "not_in_plex", "ambiguous")
                  for s in [x for x in report.scenes if x.category.value == category][:show]]
        if listed:
            render.out.print(render.table("Scenes needing attention", ["scene", "category", "fields / detail"],
                                          [[s.scene_id, labels[s.category.value], render.short(", ".join(s.fields) or s.detail, 100)]
                                           for s in listed]))


# --- doctor -------------------------------------------------------------------------------------------
@app.command(epilog=EXIT_CODES_HELP)
@handles_failures
def doctor(
    ctx: typer.Context,
    sample: Annotated[int, typer.Option(
        "--sample", min=1, max=1000, help="How many Stash files to try to find in Plex.")] = 50,
    json_output: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check the settings, RabbitMQ, Stash, Plex and path matching; print a fix for each failure.

    Exit 1 when a check fails (2 when the settings themselves are bad).
    """
    from ops.doctor import as_dicts, exit_code, run_checks

    state = state_of(ctx)
    checks = run_checks(state.config_file, sample_size=sample)
    if json_output or state.json_output:
        render.print_json({"ok": exit_code(checks) == 0, "checks": as_dicts(checks)})
    else:
        marks = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}
        rows = [[c.name, marks[c.status], c.detail] for c in checks]
        render.out.print(render.table("stash2plex doctor", ["check", "result", "detail"], rows))
        for check in checks:
            if check.fix:
                render.out.print(f"fix ({check.name}): {check.fix}", markup=False, soft_wrap=True)
    code = exit_code(checks)
    if code:
        raise typer.Exit(code)


# --- demo ---------------------------------------------------------------------------------------------
@app.command(epilog=EXIT_CODES_HELP)
@handles_failures
def demo(
    scenes: Annotated[int, typer.Option("--scenes", min=1, max=500, help="How many sample scenes to sync.")] = 25,
    broker_url: Annotated[str | None, typer.Option(
        "--broker-url", metavar="URL", help="RabbitMQ to try (default: STASH2PLEX_BROKER_URL or amqp://guest:guest@127.0.0.1:5672/); unreachable -> the in-process broker.")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=1, help="Seconds to wait for every scene to reach Plex.")] = 60.0,
) -> None:
    """Sync a sample library between the bundled Stash and Plex emulators through the four actors.

    Needs nothing but this checkout: uses RabbitMQ when it answers, else dramatiq's in-process broker.
    """
    from ops.demo import run_demo

    render.note(f"Starting the Stash and Plex emulators with {scenes} sample scenes...")
    with render.progress_bar("Syncing", enabled=True) as advance:
        result = run_demo(scenes=scenes, broker_url=broker_url, timeout=timeout, note=render.note, on_progress=advance)
    rows = []
    for scene_id, before in result.before.items():
        after = result.after.get(scene_id, {})
        for name in ("title", "studio", "genres"):
            rows.append([scene_id if name == "title" else "", name, render.short(before[name], 40) or "-",
                         render.short(after.get(name), 40) or "-"])
    render.out.print(render.table("Plex before and after (first scenes)", ["scene", "field", "before", "after"], rows))
    render.out.print(result.summary_line(), markup=False, soft_wrap=True)
    render.note(f"(demo queues {result.queue_prefix}.* and temporary data removed)" if result.via == "RabbitMQ"
                else "(temporary data removed)")
    if not result.ok:
        problems = [(sid, o, d) for sid, (o, d) in result.wait.outcomes.items() if o != "updated"]
        if problems:
            render.out.print(render.problems_table(problems))
        raise CliError(f"only {result.synced} of {result.scenes} scenes reached Plex"
                       + (f" ({len(result.wait.pending)} without an outcome)" if result.wait.pending else ""))


# --- worker -------------------------------------------------------------------------------------------
@app.command(epilog=EXIT_CODES_HELP)
@handles_failures
def worker(
    ctx: typer.Context,
    processes: Annotated[int | None, typer.Option(
        "--processes", "-p", min=1, help="Worker processes (dramatiq's default: one per CPU).")] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", "-t", min=1, help="Threads per process (dramatiq's default: 8).")] = None,
) -> None:
    """Run the workers: `dramatiq actors` with these settings (after clearing the Prometheus multiprocess dir).

    The workers read the environment (and --config, passed on as STASH2PLEX_CONFIG) themselves.
    """
    from actors.broker import prometheus_db
    from ops.broker import check_broker

    state = state_of(ctx)
    settings = state.settings()
    if settings.uses_stub_broker:
        raise BadSetting("broker_url: the workers need RabbitMQ; stub:// is only for `stash2plex demo`")
    check_broker(settings)
    if state.config_file is not None:
        os.environ["STASH2PLEX_CONFIG"] = str(state.config_file.resolve())
    metrics_dir = prometheus_db()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)
    args = [sys.executable, "-m", "dramatiq", "actors"]
    args += ["--processes", str(processes)] if processes else []
    args += ["--threads", str(threads)] if threads else []
    render.note(f"starting {' '.join(['dramatiq', *args[3:]])} on {settings.queue_prefix}.* at {redact_url(settings.broker_url)}")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, args)


# --- provider -----------------------------------------------------------------------------------------
@app.command(epilog=EXIT_CODES_HELP)
@handles_failures
def provider(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(
        "--host", help="Address to bind (default: provider_host, 127.0.0.1). Plex must reach it: the LAN address or 0.0.0.0 when Plex runs elsewhere.")] = None,
    port: Annotated[int | None, typer.Option(
        "--port", min=1, max=65535, help="Port to bind (default: provider_port, 8787).")] = None,
) -> None:
    """Serve the Plex custom metadata provider: add http://HOST:PORT in Plex (Settings > Metadata Agents > Add Provider).

    Answers come from a local index of Stash's scenes (data_dir/provider.db), kept fresh in the
    background; settings come from the environment and --config only (the provider starts while Stash is down).
    """
    from ops.provider import serve

    settings = state_of(ctx).settings(with_stash=False)
    setup_cli_logging(level="DEBUG" if settings.debug_logging else settings.log_level)
    bind_host, bind_port = host or settings.provider_host, port or settings.provider_port
    render.note(f"stash2plex provider on http://{bind_host}:{bind_port} (Stash at {redact_url(settings.stash_url)})")
    sys.stdout.flush()
    serve(settings, bind_host, bind_port)


# --- plugin -------------------------------------------------------------------------------------------
@plugin_app.command("install", epilog=EXIT_CODES_HELP)
@handles_failures
def plugin_install(
    stash_plugins_dir: Annotated[Path, typer.Option(
        "--stash-plugins-dir", metavar="DIR", file_okay=False, help="Stash's plugins folder (e.g. ~/.stash/plugins).")],
    python: Annotated[Path, typer.Option(
        "--python", help="Interpreter Stash runs the plugin with (default: this one, the project's venv).")] = DEFAULT_PYTHON,
    broker_url: Annotated[str | None, typer.Option(
        "--broker-url", metavar="URL", help="RabbitMQ URL the hook publishes to (default: keep / amqp://guest:guest@127.0.0.1:5672/).")] = None,
    queue_prefix: Annotated[str | None, typer.Option(
        "--queue-prefix", help="Queue prefix the hook publishes to (default: keep / stash2plex).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", file_okay=False, help="Folder of the hook's spool (default: <plugin>/data).")] = None,
    hook_events: Annotated[str | None, typer.Option(
        "--hook-events", help="Which edits queue a sync: all (default) or identify.")] = None,
) -> None:
    """Install the stash2plex plugin into Stash's plugins folder (manifest, entry script, hook settings)."""
    try:
        from plugin.install import install_plugin
    except ImportError as exc:
        raise CliError(f"plugin.install is not available ({exc})") from None
    try:
        target = install_plugin(stash_plugins_dir, python, broker_url, queue_prefix, data_dir, hook_events=hook_events)
    except FileNotFoundError as exc:
        raise CliError(str(exc), fix="pass --python with the venv's interpreter, e.g. .venv/bin/python") from None
    except ValueError as exc:
        raise CliError(str(exc), exit_code=2) from None
    except OSError as exc:
        raise CliError(f"cannot write to {stash_plugins_dir}: {exc.strerror or exc}") from None
    try:
        from plugin.install import format_next_steps

        render.out.print(format_next_steps(target), markup=False)
    except (ImportError, OSError, ValueError, KeyError):
        render.out.print(f"Installed the stash2plex plugin in {target}", markup=False)


def main() -> None:
    """The `stash2plex` console script."""
    app(prog_name="stash2plex")


if __name__ == "__main__":
    main()
