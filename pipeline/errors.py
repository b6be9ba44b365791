"""Typed failures. Every error the pipeline raises carries an `ErrorClass` that decides what happens next.

| class         | examples                                   | what the actors do                                  |
|---------------|--------------------------------------------|-----------------------------------------------------|
| permanent     | 401, 400, ambiguous match, bad data        | straight to the DLQ, no retries                     |
| transient     | 5xx, timeouts, 429 (with its Retry-After)  | backoff with jitter up to `max_retries`, then DLQ   |
| plex_down     | Plex refuses connections, breaker open     | deferred without spending retries, up to a max age  |
| stash_down    | Stash unreachable / 502-504 / timeouts,    | deferred like plex_down (a Stash breaker of its own)|
|               | Stash breaker open                         |                                                     |
| not_in_plex   | the file is not in a Plex library yet      | slow retries (optionally a scan), then DLQ          |
| internal      | a malformed message                        | straight to the DLQ (it cannot get better)          |

`classify(exc)` turns any exception into one of these (an unforeseen one is transient: retried,
then dead-lettered with its text). The decision itself is `pipeline.policy.decide`.

Messages never hold a secret: `scrub()` removes known secrets and token-looking query values.
"""

from __future__ import annotations

import re
from enum import StrEnum


class ErrorClass(StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    PLEX_DOWN = "plex_down"
    STASH_DOWN = "stash_down"
    NOT_IN_PLEX = "not_in_plex"
    INTERNAL = "internal"


_SECRET_QUERY = re.compile(r"(?i)((?:x-plex-token|apikey|api_key|token)=)[^&\s'\"]+")
_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]+:)[^@\s]+@")
_registered_secrets: set[str] = set()


def register_secrets(values: list[str]) -> None:
    """Remember the configured secrets so `scrub` can remove them from any text."""
    _registered_secrets.update(v for v in values if v and len(v) >= 4)


def scrub(text: str) -> str:
    """`text` with every known secret, token-looking query value and URL password replaced by ***."""
    for secret in _registered_secrets:
        text = text.replace(secret, "***")
    text = _SECRET_QUERY.sub(r"\1***", text)
    return _URL_PASSWORD.sub(r"\1***@", text)


class SyncError(Exception):
    """Base of every classified failure. `stage` is filled in by the step that raised it."""

    error_class: ErrorClass = ErrorClass.PERMANENT

    def __init__(self, message: str, *, stage: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(scrub(message))
        self.message = scrub(message)
        self.stage = stage
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class PermanentError(SyncError):
    """Retrying cannot help: bad credentials, a request Plex rejects, data we cannot map."""

    error_class = ErrorClass.PERMANENT


class AuthError(PermanentError):
    """401/403 from Plex or Stash: the token or API key is wrong or expired."""


class AmbiguousMatch(PermanentError):
    """Several Plex items hold the scene's file name and strict matching is on."""

    def __init__(self, message: str, candidates: list[str], **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.candidates = candidates


class SceneNotFound(PermanentError):
    """Stash has no scene with that id (deleted since the event)."""


class NoFiles(PermanentError):
    """The scene has no file, so there is nothing to match in Plex."""


class TransientError(SyncError):
    """Worth retrying soon: 5xx, timeouts, 429, a flaky network."""

    error_class = ErrorClass.TRANSIENT


class RateLimited(TransientError):
    """429: wait `retry_after` seconds before the next try."""


class PlexDown(SyncError):
    """Plex refuses connections, or the breaker is open: defer, do not spend retries."""

    error_class = ErrorClass.PLEX_DOWN


class BreakerRefusal(SyncError):
    """A circuit breaker refused the call; `retry_after` is when it may half-open. Never counted by a breaker."""


class BreakerOpen(BreakerRefusal, PlexDown):
    """The Plex circuit breaker is open."""


class StashDown(SyncError):
    """Stash refuses connections, answers 502/503/504, times out, or its breaker is open: defer, do not spend retries."""

    error_class = ErrorClass.STASH_DOWN


class StashBreakerOpen(BreakerRefusal, StashDown):
    """The Stash circuit breaker is open."""


class NotInPlexYet(SyncError):
    """No Plex item holds the scene's file (yet: Plex may still be scanning)."""

    error_class = ErrorClass.NOT_IN_PLEX


class MalformedMessage(SyncError):
    """A message whose arguments do not describe jobs (hand-written, or from an incompatible version)."""

    error_class = ErrorClass.INTERNAL


class BrokerUnreachable(TransientError):
    """RabbitMQ cannot be reached (refused, timed out, connection lost); the message names the redacted URL."""


class BrokerRefused(AuthError):
    """RabbitMQ refused broker_url's user, password or virtual host."""


def classify(exc: BaseException) -> SyncError:
    """The typed form of any exception: ours as they are, a pydantic validation error as a malformed
    message, anything else (a bug, an unforeseen library error) as transient with its text."""
    if isinstance(exc, SyncError):
        return exc
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return MalformedMessage(f"malformed message: {type(exc).__name__}: {exc}")
    return TransientError(f"unexpected {type(exc).__name__}: {exc}")


DEFERRED_CLASSES = (ErrorClass.PLEX_DOWN, ErrorClass.STASH_DOWN)


def counts_for_breaker(error: BaseException) -> bool:
    """Only signs of a sick server open a breaker; a missing item or a bad request never does."""
    if isinstance(error, (BreakerRefusal, RateLimited)):
        return False  # a breaker's own refusal, or the server pacing us: Retry-After handles that
    return isinstance(error, SyncError) and error.error_class in (ErrorClass.TRANSIENT, *DEFERRED_CLASSES)
