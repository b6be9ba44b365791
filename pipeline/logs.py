"""Structured logs: one line per event, `key=value` for people or JSON for machines, secrets scrubbed.

    log_event(logger, "updated", scene_id="12", stage="push", changed="title,genres")
    -> 2026-11-27T13:05:01Z INFO updated scene_id=12 stage=push changed=title,genres
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
import time
from typing import Any

from pipeline.errors import scrub

_FIELDS_ATTR = "s2p_fields"
_obfuscate_paths = False


def log_event(logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={_FIELDS_ATTR: {k: v for k, v in fields.items() if v is not None}})


def show_path(path: str, settings: Any = None) -> str:
    """A file path as logs show it: hashed (keeping the extension) when `obfuscate_paths` is on."""
    if not (_obfuscate_paths or (settings is not None and getattr(settings, "obfuscate_paths", False))):
        return path
    stem, dot, ext = path.rpartition(".")
    digest = hashlib.sha256(path.encode()).hexdigest()[:10]
    return f"<path:{digest}>{'.' + ext if dot and len(ext) <= 5 else ''}"


def _format_value(value: Any) -> str:
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple, set)) else str(value)
    return json.dumps(text) if (" " in text or '"' in text or not text) else text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        fields = getattr(record, _FIELDS_ATTR, {})
        parts = [stamp, record.levelname, record.getMessage()]
        parts += [f"{key}={_format_value(value)}" for key, value in fields.items()]
        if record.exc_info:
            parts.append(f"error={_format_value(repr(record.exc_info[1]))}")
        return scrub(" ".join(parts))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **{k: (list(v) if isinstance(v, (set, tuple)) else v) for k, v in getattr(record, _FIELDS_ATTR, {}).items()},
        }
        if record.exc_info:
            payload["error"] = repr(record.exc_info[1])
        return scrub(json.dumps(payload, default=str, ensure_ascii=False))


class SerializedStream:
    """A stream whose writes are serialized by one lock, whoever writes: our handler, the root handler, print().

    In a `dramatiq actors` worker process sys.stderr is dramatiq's log pipe, and every write is one framed
    message on it. The root handler (dramatiq's) and ours each hold a lock of their own, so two threads
    could send at once, interleave the frames, and leave dramatiq's reader waiting for bytes that never
    come, with every worker thread then blocked on logging. One lock for the stream prevents that.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def serialized(stream: Any) -> SerializedStream:
    """`stream` behind one lock, shared with the root logger's handlers and sys.stdout/stderr that use it."""
    if isinstance(stream, SerializedStream):
        return stream
    wrapped = SerializedStream(stream)
    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger))]
    for handler in (h for each in loggers for h in each.handlers):
        if isinstance(handler, logging.StreamHandler) and handler.stream is stream:
            handler.setStream(wrapped)
    if sys.stderr is stream:
        sys.stderr = wrapped
    if sys.stdout is stream:
        sys.stdout = wrapped
    return wrapped


def setup_logging(level: str = "INFO", *, json_lines: bool = False, obfuscate_paths: bool = False,
                  stream: Any = None) -> None:
    """Route the `stash2plex` loggers to one handler on stderr (or `stream`), its writes serialized with
    every other writer of that stream (`SerializedStream`)."""
    global _obfuscate_paths
    _obfuscate_paths = obfuscate_paths
    handler = logging.StreamHandler(serialized(stream or sys.stderr))
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger("stash2plex")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
