"""`stash2plex doctor`: check everything the sync depends on, and say how to fix what fails.

Checks, in order (a check whose prerequisite failed is skipped): the settings (environment and TOML
file), RabbitMQ (connect, and whether its management API answers: never waits on Stash), Stash
(auth and version; then the plugin settings saved there are layered in), Plex (auth:
machineIdentifier and version; the library sections to sync), and how many of a sample of Stash
files resolve to a Plex item under the current `path_map`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ops.broker import check_broker
from ops.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, load_cli_settings
from ops.status import management_depths
from pipeline.config import ConfigError, Settings, env_name
from pipeline.broker_address import redact_url
from pipeline.errors import AmbiguousMatch, AuthError, NoFiles, NotInPlexYet, SyncError
from pipeline.matching import Matcher, PathIndex, map_path
from pipeline.plex import PlexClient
from pipeline.stash import StashClient
from pipeline.state import StateStore

SAMPLE_SIZE = 50
OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"


@dataclass
class Check:
    """One line of the doctor's report."""

    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class Context:
    """What the checks learn on the way (settings, clients), so later checks can build on it."""

    settings: Settings | None = None
    config_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    plex: PlexClient | None = None
    stash_ok: bool = False
    plex_ok: bool = False


def exit_code(checks: list[Check]) -> int:
    """2 when the settings are bad, 1 when any other check failed, else 0."""
    if any(c.name == "settings" and c.status == FAIL for c in checks):
        return EXIT_USAGE
    return EXIT_FAILED if any(c.status == FAIL for c in checks) else EXIT_OK


# --- the checks -------------------------------------------------------------------------------------
def check_settings(ctx: Context, config_file: Path | None, overrides: dict[str, Any]) -> list[Check]:
    try:
        ctx.settings = load_cli_settings(config_file, with_stash=False, **overrides)
    except ConfigError as error:
        key = str(error).split(":", 1)[0]
        return [Check("settings", FAIL, str(error), f"fix {key}: see `stash2plex --help` and the README's settings table")]
    source = f"config file {config_file}" if config_file else "environment"
    return [Check("settings", OK, f"valid ({source})")]


def check_rabbitmq(ctx: Context) -> list[Check]:
    settings = ctx.settings
    assert settings is not None
    if settings.uses_stub_broker:
        return [Check("rabbitmq", WARN, "broker_url is stub:// (in-process broker): only the demo can use it",
                      "set broker_url to your RabbitMQ, e.g. amqp://guest:guest@127.0.0.1:5672/")]
    try:
        version = check_broker(settings)
    except CliError as error:
        return [Check("rabbitmq", FAIL, error.message, error.fix or "")]
    found = [Check("rabbitmq", OK, f"RabbitMQ {version} at {redact_url(settings.broker_url)}")]
    depths, why_not = management_depths(settings)
    if depths is None:
        found.append(Check("rabbitmq management", WARN, f"{why_not}: status cannot count unacked messages",
                           "run `rabbitmq-plugins enable rabbitmq_management`, set broker_management_url, "
                           "or give broker_url's user the monitoring tag"))
    else:
        found.append(Check("rabbitmq management", OK, f"API at {redact_url(settings.broker_management_url)}"))
    return found


def check_stash(ctx: Context) -> list[Check]:
    settings = ctx.settings
    assert settings is not None
    where = redact_url(settings.stash_url)
    try:
        version = StashClient(settings).version()
    except AuthError as error:
        return [Check("stash", FAIL, str(error),
                      "set stash_api_key to the key in Stash > Settings > Security > API Key (STASH2PLEX_STASH_API_KEY)")]
    except SyncError as error:
        return [Check("stash", FAIL, str(error), f"check stash_url ({where}) and that Stash runs and is reachable from here")]
    ctx.stash_ok = True
    found = [Check("stash", OK, f"Stash {version} at {where}, credentials accepted")]
    try:
        ctx.settings = load_cli_settings(ctx.config_file, **ctx.overrides)  # with the plugin settings saved in Stash
    except ConfigError as error:
        key = str(error).split(":", 1)[0]
        found.append(Check("stash plugin settings", FAIL, str(error),
                           f"fix {key} on Stash's plugin settings page, or override it with {env_name(key)}"))
    return found


def check_plex(ctx: Context) -> list[Check]:
    settings = ctx.settings
    assert settings is not None
    where = redact_url(settings.plex_url)
    if settings.plex_token is None:
        return [Check("plex", FAIL, "plex_token is not set",
                      "set plex_token (STASH2PLEX_PLEX_TOKEN or the Stash plugin setting) to your X-Plex-Token")]
    try:
        ctx.plex = PlexClient(settings, StateStore(settings.data_dir).client_identifier())
        server = ctx.plex.server()
    except AuthError as error:
        return [Check("plex", FAIL, str(error),
                      "set plex_token to a valid X-Plex-Token (Plex Web: an item's Get Info > View XML shows it in the URL)")]
    except SyncError as error:
        return [Check("plex", FAIL, str(error), f"check plex_url ({where}) and that Plex Media Server runs")]
    ctx.plex_ok = True
    name = getattr(server, "friendlyName", "") or "Plex"
    return [Check("plex", OK, f"{name} {server.version} (machineIdentifier {server.machineIdentifier}) at {where}")]


def check_sections(ctx: Context) -> list[Check]:
    if not ctx.plex_ok or ctx.plex is None:
        return [Check("plex sections", SKIP, "needs a working Plex connection")]
    try:
        sections = ctx.plex.sections()
    except SyncError as error:
        return [Check("plex sections", FAIL, str(error), "set plex_library to section titles Plex has (comma separated)")]
    if not sections:
        return [Check("plex sections", FAIL, "Plex has no movie library to sync",
                      "create a Movies library in Plex for the Stash files, or name it in plex_library")]
    shown = ", ".join(f"{s.title} ({', '.join(s.locations) or 'no folder'})" for s in sections)
    return [Check("plex sections", OK, shown)]


def sample_files(stash: StashClient, size: int = SAMPLE_SIZE) -> list[tuple[str, list[str]]]:
    """(scene id, file paths) of the first `size` scenes that have files."""
    found: list[tuple[str, list[str]]] = []
    for _total, page in stash.iter_scene_paths(per_page=size):
        found += [(str(s["id"]), [f["path"] for f in s.get("files") or []]) for s in page if s.get("files")]
        if len(found) >= size or len(page) < size:
            break
    return found[:size]


def check_paths(ctx: Context, size: int = SAMPLE_SIZE) -> list[Check]:
    settings = ctx.settings
    if settings is None or not ctx.stash_ok or not ctx.plex_ok or ctx.plex is None:
        return [Check("path matching", SKIP, "needs working Stash and Plex connections")]
    try:
        sample = sample_files(StashClient(settings), size)
        if not sample:
            return [Check("path matching", WARN, "Stash has no scene with a file yet", "scan your library in Stash")]
        matcher = Matcher(PathIndex(ctx.plex, StateStore(settings.data_dir)), settings)
        tally = {"path": 0, "basename": 0, "ambiguous": 0, "missing": 0}
        for scene_id, files in sample:
            tally[_resolve(matcher, scene_id, files)] += 1
    except SyncError as error:
        return [Check("path matching", FAIL, str(error), "fix the Stash or Plex connection first")]
    return [_path_verdict(tally, len(sample), sample, ctx)]


def _resolve(matcher: Matcher, scene_id: str, files: list[str]) -> str:
    try:
        return matcher.match(scene_id, files).how
    except AmbiguousMatch:
        return "ambiguous"
    except (NotInPlexYet, NoFiles):
        return "missing"


def _path_verdict(tally: dict[str, int], total: int, sample: list[tuple[str, list[str]]], ctx: Context) -> Check:
    resolved = tally["path"] + tally["basename"]
    detail = (f"{resolved}/{total} sampled Stash files found in Plex ({tally['path']} by path, "
              f"{tally['basename']} by file name); {tally['ambiguous']} ambiguous, {tally['missing']} not in Plex")
    assert ctx.settings is not None and ctx.plex is not None
    if resolved == total and tally["basename"] == 0:
        return Check("path matching", OK, detail)
    if resolved == total:
        return Check("path matching", WARN, detail,
                     f"{tally['basename']} file(s) matched only by file name (slower, and ambiguous once two files share "
                     "a name): set path_map=<stash prefix>=<plex prefix> so the full paths line up")
    example = sample[0][1][0]
    mapped = map_path(example, ctx.settings.path_map)
    locations = sorted({loc for s in ctx.plex.sections() for loc in s.locations})
    fix = (f"Stash sees e.g. {posixpath.dirname(example)}/ (mapped to {posixpath.dirname(mapped)}/), Plex's libraries are at "
           f"{', '.join(locations) or '?'}: set path_map=<stash prefix>=<plex prefix> so the paths line up, "
           "or scan the missing files in Plex")
    if tally["ambiguous"]:
        fix += "; ambiguous file names need path_map (exact paths) or strict_matching=false"
    return Check("path matching", FAIL if resolved == 0 else WARN, detail, fix)


def run_checks(config_file: Path | None = None, overrides: dict[str, Any] | None = None,
               on_check: Callable[[Check], None] | None = None, sample_size: int = SAMPLE_SIZE) -> list[Check]:
    """Every check in order; `on_check` sees each as it finishes."""
    ctx = Context(config_file=config_file, overrides=overrides or {})
    checks: list[Check] = []

    def record(found: list[Check]) -> None:
        for check in found:
            checks.append(check)
            if on_check is not None:
                on_check(check)

    record(check_settings(ctx, config_file, overrides or {}))
    if ctx.settings is None:
        return checks
    for step in (check_rabbitmq, check_stash, check_plex, check_sections):
        record(step(ctx))
    record(check_paths(ctx, sample_size))
    return checks


def as_dicts(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]
