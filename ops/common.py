"""What every operator command shares: exit codes, typed CLI failures, settings loading, durations.

Exit codes (the same for the CLI and documented in `stash2plex --help`):

    0  done
    1  the command ran and something failed (a scene failed, a doctor check failed, credentials refused)
    2  bad usage or a bad setting (the message names the key)
    3  a service is unreachable (RabbitMQ, Stash or Plex; the message names its URL, without secrets)

No message built here ever holds a secret: URLs go through `redact_url`, text through `scrub`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pipeline.config import ConfigError, Settings, load_settings
from pipeline.errors import (
    AuthError,
    PlexDown,
    StashDown,
    SyncError,
    TransientError,
    register_secrets,
    scrub,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 something failed (a scene, a check, refused credentials); "
    "2 bad usage or a bad setting (the message names the key); "
    "3 RabbitMQ, Stash or Plex unreachable (the message names the URL, never a secret)."
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

T = TypeVar("T")


class CliError(Exception):
    """An expected failure: one line for the user, an optional fix, and the exit code."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, fix: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(scrub(message))
        self.message = scrub(message)
        self.fix = scrub(fix) if fix else None
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class BadSetting(CliError):
    """A setting is missing or malformed (exit 2)."""

    exit_code = EXIT_USAGE


class Unreachable(CliError):
    """RabbitMQ, Stash or Plex cannot be reached (exit 3)."""

    exit_code = EXIT_UNREACHABLE


def as_cli_error(exc: BaseException) -> CliError | None:
    """The expected-failure form of `exc`, or None for a bug (which should show its traceback)."""
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, ConfigError):
        return BadSetting(str(exc))
    if isinstance(exc, AuthError):
        return CliError(str(exc))
    if isinstance(exc, (PlexDown, StashDown, TransientError)):
        return Unreachable(str(exc))
    if isinstance(exc, SyncError):
        return CliError(str(exc))
    return None


_logging_choice: dict[str, Any] = {"json_lines": False, "level": "WARNING", "obfuscate_paths": False}


def setup_cli_logging(*, json_lines: bool | None = None, level: str | None = None,
                      obfuscate_paths: bool | None = None) -> None:
    """Route the `stash2plex` loggers to stderr (text, or JSON lines with --log-json); remembers the choice."""
    from pipeline.logs import setup_logging

    for key, value in (("json_lines", json_lines), ("level", level), ("obfuscate_paths", obfuscate_paths)):
        if value is not None:
            _logging_choice[key] = value
    setup_logging(_logging_choice["level"], json_lines=_logging_choice["json_lines"],
                  obfuscate_paths=_logging_choice["obfuscate_paths"])


def load_cli_settings(config_file: Path | None = None, *, with_stash: bool = True, **overrides: Any) -> Settings:
    """Settings as the workers see them (env > TOML file > Stash plugin settings > defaults).

    `with_stash=False` skips reading Stash's saved plugin settings. Registers the secrets with the
    log scrubber. Raises `ConfigError` naming the first bad key.
    """
    if with_stash:
        from pipeline.stash import load_settings_with_stash

        settings = load_settings_with_stash(config_file=config_file, **overrides)
    else:
        settings = load_settings(config_file=config_file, **overrides)
    register_secrets(settings.secrets())
    return settings


def parse_duration(text: str) -> float:
    """`30m`, `24h`, `7d`, `2w`, `90s` -> seconds. Raises ValueError for anything else."""
    found = _DURATION.match(text or "")
    if not found:
        raise ValueError(f"{text!r} is not a duration like 30m, 24h or 7d")
    seconds = float(found.group(1)) * _UNIT_SECONDS[found.group(2).lower()]
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return seconds


def human_age(seconds: float | None) -> str:
    """`42 s`, `5 min`, `3 h`, `2 d` (or `-` when unknown)."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def batches(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """`items` in consecutive chunks of at most `size`."""
    for start in range(0, len(items), max(1, size)):
        yield list(items[start:start + size])


def split_ids(values: Sequence[str] | None) -> list[str]:
    """Scene ids from `--scene 1 2`, `--scene 1 --scene 2` or `--scene 1,2`, duplicates dropped, order kept."""
    ids: list[str] = []
    for value in values or []:
        ids.extend(part.strip() for part in str(value).split(",") if part.strip())
    return list(dict.fromkeys(ids))
