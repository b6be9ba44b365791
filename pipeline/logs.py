"""Structured logs: one line per event, `key=value` for people or JSON for machines, secrets scrubbed.

    log_event(logger, "updated", scene_id="12", stage="push", changed="title,genres")
    -> 2026-11-27T13:05:01Z INFO updated scene_id=12 stage=push changed=title,genres
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
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


def setup_logging(level: str = "INFO", *, json_lines: bool = False, obfuscate_paths: bool = False,
                  stream: Any = None) -> None:
    """Route the `stash2plex` loggers to one handler on stderr (or `stream`)."""
    global _obfuscate_paths
    _obfuscate_paths = obfuscate_paths
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger("stash2plex")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
