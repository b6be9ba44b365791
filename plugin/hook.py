"""The Stash hook's fast path: turn one `Scene.*.Post` hook run into `fetch_scene` messages.

Stash runs the plugin once per edited scene and waits for it, so this module imports only the
standard library, `plugin.amqp` and `plugin.spool` (no pika, dramatiq, pydantic, requests).

Flow of one run (`handle_hook`):
  1. validate `args.hookContext`; a non-scene hook type is ignored with an info line (and an error result);
  2. settings: `<pluginDir>/stash2plex.hook.json`, then `STASH2PLEX_*` env overrides (`load_hook_settings`);
  3. scene ids from every input shape (`select_scene_ids`);
  4. with `hook_events=identify`, only stash-box identify/scrape edits go on (`is_identify_edit`);
  5. one AMQP connection (2 s deadline): flush a non-empty spool first, then publish one
     `fetch_scene(scene_id, hook_type)` message per scene with publisher confirms;
  6. whatever was not confirmed is appended to the spool and the run still succeeds, with a warning.

Stash protocol: stdout gets one `{"output": ..., "error": null|"..."}` document; stderr lines are
`\\x01<level>\\x02message`. Exit-code rule: 0 when `error` is null (queued, spooled, skipped),
1 when `error` is set (bad input, non-scene hook, nothing could be published or spooled). Stash shows
the `error` text; the non-zero code keeps the failure visible to anything that checks only the code.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from plugin import spool
from plugin.amqp import (
    AmqpPublisher,
    PublishError,
    dramatiq_queue_arguments,
    fetch_scene_message,
    fetch_scene_queue,
    redact_url,
)

TYPE_CHECKING = False  # typing costs ~5 ms to import; type checkers treat this name as True
if TYPE_CHECKING:
    from typing import Any, BinaryIO, TextIO

__all__ = [
    "DEFAULT_BROKER_URL",
    "DEFAULT_QUEUE_PREFIX",
    "HOOK_EVENTS",
    "HookInputError",
    "HookSettings",
    "SceneSelection",
    "StashLog",
    "deliver",
    "exit_code",
    "handle_hook",
    "is_identify_edit",
    "load_hook_settings",
    "read_payload",
    "select_scene_ids",
    "write_result",
]

LOG_PREFIX = "[stash2plex hook]"
SETTINGS_FILE = "stash2plex.hook.json"
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_QUEUE_PREFIX = "stash2plex"
HOOK_EVENTS = ("all", "identify")
ENV_BROKER_URL = "STASH2PLEX_BROKER_URL"
ENV_QUEUE_PREFIX = "STASH2PLEX_QUEUE_PREFIX"
ENV_DATA_DIR = "STASH2PLEX_DATA_DIR"
ENV_HOOK_EVENTS = "STASH2PLEX_HOOK_EVENTS"

HOOK_TIMEOUT = 2.0
"""Seconds for connect + spool flush + publish + confirms: past it, events go to the spool."""
HOOK_FLUSH_MAX_LINES = 1000
"""Spooled lines one hook run republishes at most (the `flush_spool` task has no such bound)."""
MAX_INPUT_BYTES = 8 * 1024 * 1024
"""Largest stdin accepted. Real hook input is a few KB (a data-URL cover image is the big exception)."""
_DRAIN_LIMIT = 64 * 1024 * 1024
_MAX_LOG_LINE = 16000
_MAX_IDS_SHOWN = 20

IDENTIFY_FIELDS = frozenset({"stash_ids"})
"""`hook_events=identify` rule: a Scene.Update.Post whose `inputFields` include one of these.

Stash's Identify task (stash-box source) and the Scene Tagger write `stash_ids` together with the
scraped fields; scans (`input: null`, no inputFields), creates and plain edits (title, tags, rating...)
do not, so they are skipped. A scraper source that is not a stash-box sets no stash id and is skipped
too: use `hook_events=all` (the default) if such scrapes must sync.
"""


class HookInputError(ValueError):
    """The hook input is unusable; the message is the one-line error returned to Stash."""


# --------------------------------------------------------------------------- Stash protocol


class StashLog:
    """Writes Stash plugin log lines (`\\x01<level>\\x02message`) to a text stream. Callable as `log(level, msg)`."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr

    def __call__(self, level: str, message: str) -> None:
        text = message.replace("\r", " ").replace("\n", " ")
        if len(text) > _MAX_LOG_LINE:
            text = text[:_MAX_LOG_LINE] + "..."
        self._stream.write(f"\x01{level}\x02{text}\n")
        self._stream.flush()

    def progress(self, fraction: float) -> None:
        """Report task progress (0..1) to Stash."""
        self._stream.write(f"\x01p\x02{min(max(fraction, 0.0), 1.0):.3f}\n")
        self._stream.flush()

    def hook(self, level: str, message: str) -> None:
        """A line with the `[stash2plex hook]` prefix."""
        self(level, f"{LOG_PREFIX} {message}")


def read_payload(stream: BinaryIO, *, max_bytes: int = MAX_INPUT_BYTES) -> dict[str, Any]:
    """Read the one JSON document Stash writes on stdin; raises HookInputError with a one-line reason."""
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        drained = 0
        while drained < _DRAIN_LIMIT and stream.read(1 << 20):  # let Stash finish writing, no EPIPE
            drained += 1 << 20
        raise HookInputError(f"input too large: more than {max_bytes // (1024 * 1024)} MiB on stdin")
    if not data.strip():
        raise HookInputError("empty input: expected one JSON document on stdin")
    try:
        payload = json.loads(data)
    except RecursionError:
        raise HookInputError("malformed JSON input: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise HookInputError(f"malformed JSON input: {_one_line(str(exc))}") from None
    if not isinstance(payload, dict):
        raise HookInputError(f"input must be a JSON object, got {type(payload).__name__}")
    return payload


def write_result(stream: TextIO, output: Any, error: str | None) -> None:
    """Write Stash's result document `{"output": ..., "error": ...}` on stdout."""
    stream.write(json.dumps({"output": output, "error": error}) + "\n")
    stream.flush()


def exit_code(error: str | None) -> int:
    """The exit-code rule: 0 when there is no error, 1 when `error` is set."""
    return 0 if error is None else 1


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- settings


class HookSettings:
    """What the hook needs, without Stash's GraphQL: broker, queue prefix, spool folder, event filter.

    (Plain classes rather than dataclasses on the fast path: dataclasses costs ~10 ms to import.)
    """

    __slots__ = ("broker_url", "queue_prefix", "data_dir", "hook_events", "warnings")

    def __init__(
        self,
        broker_url: str = DEFAULT_BROKER_URL,
        queue_prefix: str = DEFAULT_QUEUE_PREFIX,
        data_dir: Path = Path("data"),
        hook_events: str = "all",
        warnings: tuple[str, ...] = (),
    ) -> None:
        self.broker_url = broker_url
        self.queue_prefix = queue_prefix
        self.data_dir = data_dir
        self.hook_events = hook_events
        self.warnings = warnings

    def __repr__(self) -> str:
        return (f"HookSettings(broker_url={redact_url(self.broker_url)!r}, queue_prefix={self.queue_prefix!r}, "
                f"data_dir={str(self.data_dir)!r}, hook_events={self.hook_events!r})")


def load_hook_settings(plugin_dir: Path, environ: Mapping[str, str] | None = None) -> HookSettings:
    """`<plugin_dir>/stash2plex.hook.json` if present, then `STASH2PLEX_*` env overrides, then defaults.

    A relative `data_dir` is taken relative to `plugin_dir`; the default is `<plugin_dir>/data`.
    Problems (unreadable file, unknown hook_events) become `warnings`, never exceptions.
    """
    env = os.environ if environ is None else environ
    plugin_dir = Path(plugin_dir)
    warnings: list[str] = []
    values: dict[str, str] = {}
    path = plugin_dir / SETTINGS_FILE
    try:
        with open(path, "rb") as handle:
            loaded = json.loads(handle.read())
        if isinstance(loaded, dict):
            values = {k: str(v) for k, v in loaded.items() if isinstance(v, (str, int, float)) and str(v) != ""}
        else:
            warnings.append(f"{path} is not a JSON object; using defaults")
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        warnings.append(f"cannot read {path} ({_one_line(str(exc))}); using defaults")
    for key, env_name in (("broker_url", ENV_BROKER_URL), ("queue_prefix", ENV_QUEUE_PREFIX),
                          ("data_dir", ENV_DATA_DIR), ("hook_events", ENV_HOOK_EVENTS)):
        if env.get(env_name):
            values[key] = env[env_name]

    hook_events = values.get("hook_events", "all").strip().lower()
    if hook_events not in HOOK_EVENTS:
        warnings.append(f"unknown hook_events {hook_events!r} (expected all or identify); using all")
        hook_events = "all"
    data_dir = Path(os.path.expanduser(values.get("data_dir", "data")))
    if not data_dir.is_absolute():
        data_dir = plugin_dir / data_dir
    return HookSettings(
        broker_url=values.get("broker_url", DEFAULT_BROKER_URL),
        queue_prefix=values.get("queue_prefix", DEFAULT_QUEUE_PREFIX).strip(),
        data_dir=data_dir,
        hook_events=hook_events,
        warnings=tuple(warnings),
    )


def plugin_dir_of(payload: Mapping[str, Any], script_dir: Path) -> Path:
    """`server_connection.PluginDir` when Stash sent it, else the entry script's own folder."""
    connection = payload.get("server_connection")
    if isinstance(connection, dict):
        value = connection.get("PluginDir")
        if isinstance(value, str) and value.strip():
            return Path(value)
    return Path(script_dir)


# --------------------------------------------------------------------------- scene ids


class SceneSelection:
    """The scene ids this run must publish.

    `batch_lead` is set when this run belongs to a bulk edit whose first scene's run already
    publishes every id of the batch (so `scene_ids` is empty); `invalid` lists ignored ids.
    """

    __slots__ = ("scene_ids", "batch_lead", "batch_size", "invalid")

    def __init__(
        self,
        scene_ids: tuple[str, ...],
        batch_lead: str | None = None,
        batch_size: int = 0,
        invalid: tuple[str, ...] = (),
    ) -> None:
        self.scene_ids = scene_ids
        self.batch_lead = batch_lead
        self.batch_size = batch_size
        self.invalid = invalid

    def __repr__(self) -> str:
        return (f"SceneSelection(scene_ids={self.scene_ids!r}, batch_lead={self.batch_lead!r}, "
                f"batch_size={self.batch_size!r}, invalid={self.invalid!r})")


def _normalize_id(value: Any) -> str | None:
    """A positive scene id as a canonical decimal string, or None (0, negative, bool, junk)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value > 0 else None
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and int(text) > 0:
            return str(int(text))
    return None


def _input_ids(hook_input: Any) -> tuple[list[Any], str]:
    """Raw ids from `hookContext.input` and the shape's name."""
    if hook_input is None:
        return [], "null input"
    if isinstance(hook_input, list):  # scenesUpdate: a list of SceneUpdateInput
        return [item.get("id") if isinstance(item, dict) else item for item in hook_input], "scenesUpdate list"
    if isinstance(hook_input, dict):
        if "ids" in hook_input:  # bulkSceneUpdate
            ids = hook_input["ids"]
            return (list(ids) if isinstance(ids, list) else ([] if ids is None else [ids])), "bulk ids"
        if "id" in hook_input:  # sceneUpdate
            return [hook_input["id"]], "input.id"
        return [], "input without id"
    return [hook_input], f"{type(hook_input).__name__} input"


def select_scene_ids(hook_context: Mapping[str, Any]) -> SceneSelection:
    """Scene ids from every input shape, deduplicated, as canonical strings.

    Shapes: `sceneUpdate` (input object with `id`, plus `hookContext.id`), `bulkSceneUpdate`
    (`input.ids`), `scenesUpdate` (input is a list of objects with `id`), create/scan (`input: null`,
    `hookContext.id`). Ids may be ints or strings; 0, negatives and junk are invalid.

    Batches: Stash runs the hook once PER SCENE of a bulk edit, each time with the whole input and
    `hookContext.id` = that scene. Publishing every input id on every run would send N² messages,
    so the run for the batch's first scene (or a run without `hookContext.id`) publishes the whole
    batch and the other runs of the batch publish nothing (`batch_lead` says who did).

    Raises HookInputError when no valid scene id is left.
    """
    raw_context_id = hook_context.get("id")
    context_id = _normalize_id(raw_context_id)
    invalid: list[str] = []
    if raw_context_id not in (None, 0, "0", "") and context_id is None:
        invalid.append(repr(raw_context_id)[:40])
    raw_ids, shape = _input_ids(hook_context.get("input"))
    batch: list[str] = []
    for raw in raw_ids:
        normalized = _normalize_id(raw)
        if normalized is None:
            invalid.append(repr(raw)[:40])
        elif normalized not in batch:
            batch.append(normalized)

    if len(batch) > 1:
        if context_id is None or context_id == batch[0]:
            return SceneSelection(tuple(batch), None, len(batch), tuple(invalid))
        if context_id in batch:
            return SceneSelection((), batch[0], len(batch), tuple(invalid))
        return SceneSelection((context_id,), None, 0, tuple(invalid))

    ids = ([context_id] if context_id else []) + [i for i in batch if i != context_id]
    if not ids:
        shown = f"hookContext.id={raw_context_id!r}" if "id" in hook_context else "hookContext.id absent"
        detail = f", invalid ids: {', '.join(invalid)}" if invalid else ""
        raise HookInputError(f"no valid scene id in hook input ({shown}, {shape}{detail})")
    return SceneSelection(tuple(ids), None, 0, tuple(invalid))


def is_identify_edit(hook_context: Mapping[str, Any]) -> bool:
    """True for a Scene.Update.Post whose inputFields name a stash-box field (see IDENTIFY_FIELDS)."""
    if hook_context.get("type") != "Scene.Update.Post":
        return False
    fields = hook_context.get("inputFields")
    return isinstance(fields, list) and any(isinstance(f, str) and f in IDENTIFY_FIELDS for f in fields)


def _show_ids(ids: tuple[str, ...] | list[str]) -> str:
    noun = "scene" if len(ids) == 1 else "scenes"
    shown = ", ".join(ids[:_MAX_IDS_SHOWN])
    more = f" (+{len(ids) - _MAX_IDS_SHOWN} more)" if len(ids) > _MAX_IDS_SHOWN else ""
    return f"{noun} {shown}{more}"


# --------------------------------------------------------------------------- delivery


class Delivery:
    """Outcome of `deliver`: confirmed ids, spooled ids, the spool flush, and why publishing failed."""

    __slots__ = ("queued", "spooled", "flush", "failure", "spool_error")

    def __init__(self) -> None:
        self.queued: list[str] = []
        self.spooled: list[str] = []
        self.flush: spool.FlushResult | None = None
        self.failure: str | None = None
        self.spool_error: str | None = None


def deliver(scene_ids: tuple[str, ...], hook_type: str, settings: HookSettings, log: StashLog) -> Delivery:
    """Publish one fetch_scene message per id (after flushing a non-empty spool); spool what fails.

    Never raises for broker trouble; `spool_error` is set if the spool itself could not be written.
    """
    pending = spool.has_pending(settings.data_dir)
    delivery = Delivery()
    if not scene_ids and not pending:
        return delivery
    try:
        queue = fetch_scene_queue(settings.queue_prefix)
        with AmqpPublisher(settings.broker_url, timeout=HOOK_TIMEOUT) as publisher:
            if not publisher.declare_queue(queue, arguments=dramatiq_queue_arguments(queue)):
                log.hook("w", f"queue {queue} exists with other arguments than dramatiq's defaults; "
                              "publishing to it as it is")
            if pending:
                delivery.flush = _flush_pending(publisher, settings, log)
            if scene_ids:
                bodies = [fetch_scene_message(scene_id, hook_type, settings.queue_prefix) for scene_id in scene_ids]
                reasons = []
                for scene_id, outcome in zip(scene_ids, publisher.publish(queue, bodies)):
                    if outcome is None:
                        delivery.queued.append(scene_id)
                    else:
                        reasons.append(f"scene {scene_id}: {outcome}")
                if reasons:
                    delivery.failure = "; ".join(reasons[:3]) + (" ..." if len(reasons) > 3 else "")
    except PublishError as exc:
        delivery.failure = str(exc)

    unconfirmed = [scene_id for scene_id in scene_ids if scene_id not in delivery.queued]
    if unconfirmed:
        try:
            spool.append_events(settings.data_dir, [(scene_id, hook_type) for scene_id in unconfirmed],
                                log=_spool_log(log))
            delivery.spooled = unconfirmed
        except OSError as exc:
            delivery.spool_error = f"{exc.strerror or exc} ({spool.spool_path(settings.data_dir)})"
    return delivery


def _spool_log(log: StashLog) -> spool.LogFn:
    return log.hook


def _flush_pending(publisher: AmqpPublisher, settings: HookSettings, log: StashLog) -> spool.FlushResult | None:
    """Republish spooled events on the hook's connection; a busy lock means another run is on it."""
    try:
        result = spool.flush_with_publisher(publisher, settings.queue_prefix, settings.data_dir,
                                            max_lines=HOOK_FLUSH_MAX_LINES, log=_spool_log(log))
    except OSError as exc:
        log.hook("w", f"could not flush the spool in {settings.data_dir}: {exc.strerror or exc}")
        return None
    if result is not None and (result.published or result.skipped_corrupt or result.remaining):
        log.hook("i", f"flushed the spool: {result.published} event(s) published, "
                      f"{result.skipped_corrupt} corrupt line(s) skipped, {result.remaining} still spooled")
    return result


# --------------------------------------------------------------------------- one run


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def handle_hook(
    payload: Mapping[str, Any],
    *,
    script_dir: Path,
    log: StashLog,
    started: float,
    environ: Mapping[str, str] | None = None,
) -> tuple[Any, str | None]:
    """Run the hook for one Stash payload; returns `(output, error)` for `write_result`.

    Never raises for bad input or broker trouble: those become an error result or a spooled event.
    """
    args = payload.get("args")
    hook_context = args.get("hookContext") if isinstance(args, dict) else None
    if not isinstance(hook_context, dict):
        return _fail(log, started, "hook run without args.hookContext (expected Stash's hook input)")
    hook_type = hook_context.get("type")
    if not isinstance(hook_type, str) or not hook_type:
        return _fail(log, started, "hookContext.type is missing")
    if not hook_type.startswith("Scene."):
        message = f"ignored {hook_type[:80]} hook: not a scene hook (stash2plex handles Scene.* hooks only)"
        log.hook("i", f"{message} ({_elapsed_ms(started)} ms)")
        return None, message
    try:
        selection = select_scene_ids(hook_context)
    except HookInputError as exc:
        return _fail(log, started, str(exc))

    settings = load_hook_settings(plugin_dir_of(payload, script_dir), environ)
    for warning in settings.warnings:
        log.hook("w", warning)
    if selection.invalid:
        log.hook("w", f"ignored invalid scene id(s): {', '.join(selection.invalid[:_MAX_IDS_SHOWN])}")

    skipped: str | None = None
    scene_ids = selection.scene_ids
    if selection.batch_lead is not None:
        skipped = f"batch of {selection.batch_size} queued by the run for scene {selection.batch_lead}"
    elif settings.hook_events == "identify" and not is_identify_edit(hook_context):
        fields = hook_context.get("inputFields")
        shown = ",".join(str(f) for f in fields[:10]) if isinstance(fields, list) else "none"
        skipped = f"hook_events=identify and this is not an identify/scrape edit (inputFields: {shown})"
        scene_ids = ()

    delivery = deliver(scene_ids if skipped is None else (), hook_type, settings, log)
    elapsed = _elapsed_ms(started)
    output = {
        "queued": delivery.queued,
        "spooled": delivery.spooled,
        "flushed": delivery.flush.published if delivery.flush else 0,
        "skipped": skipped,
        "handler_ms": elapsed,
    }
    if skipped is not None:
        subject = _show_ids(selection.scene_ids) if selection.scene_ids else f"scene {hook_context.get('id')}"
        log.hook("i", f"skipped {subject} ({hook_type}): {skipped} ({elapsed} ms)")
        return output, None
    if delivery.spool_error is not None:
        lost = [scene_id for scene_id in scene_ids if scene_id not in delivery.queued]
        message = (f"could not publish {_show_ids(lost)} ({delivery.failure}) nor write the spool "
                   f"({delivery.spool_error}); run a reconcile task to catch up")
        log.hook("e", f"{message} ({elapsed} ms)")
        return None, message
    if delivery.spooled:
        log.hook("w", f"broker unavailable ({delivery.failure}); spooled {_show_ids(delivery.spooled)} "
                      f"({hook_type}) to {spool.spool_path(settings.data_dir)} in {elapsed} ms; "
                      "the next hook run or the Flush spool task sends it")
    if delivery.queued:
        queue = fetch_scene_queue(settings.queue_prefix)
        log.hook("i", f"queued {_show_ids(delivery.queued)} ({hook_type}) on {queue} in {elapsed} ms")
    return output, None


def _fail(log: StashLog, started: float, message: str) -> tuple[None, str]:
    log.hook("e", f"{message} ({_elapsed_ms(started)} ms)")
    return None, message
