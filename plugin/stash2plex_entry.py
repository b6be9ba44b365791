"""Stash's entry point for the stash2plex plugin (raw interface: one JSON document on stdin).

- `args.mode == "hook"`: the fast path, `plugin.hook` (standard library + plugin.amqp + plugin.spool).
- any other mode: `plugin.tasks.run(mode, payload) -> dict`, imported lazily (it is heavy).

Answers on stdout `{"output": ..., "error": null|"..."}` and logs Stash-prefixed lines on stderr.
Exit code: 0 when `error` is null, 1 when it is set. Never prints a traceback dump.

The project root must be importable: `plugin.install` rewrites `_INSTALLED_PROJECT_ROOT` in the
copy it puts in Stash's plugins folder; in the source tree the root is the parent of `plugin/`.
"""

from __future__ import annotations

import sys
import time

_STARTED = time.perf_counter()

import os  # noqa: E402  (after the clock: the import time is part of what is measured)
from pathlib import Path  # noqa: E402

TYPE_CHECKING = False  # typing costs ~5 ms to import; type checkers treat this name as True
if TYPE_CHECKING:
    from typing import Any, Callable

    LogFn = Callable[[str, str], None]

_INSTALLED_PROJECT_ROOT: str | None = None  # rewritten by plugin.install; do not edit this line by hand


def _project_root() -> str:
    if _INSTALLED_PROJECT_ROOT:
        return _INSTALLED_PROJECT_ROOT
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _emit_fatal(message: str) -> int:
    """Last-resort answer when the project itself cannot be imported."""
    import json

    text = " ".join(message.split())
    sys.stderr.write(f"\x01e\x02[stash2plex] {text}\n")
    sys.stdout.write(json.dumps({"output": None, "error": text}) + "\n")
    return 1


def _run_task(mode: str, payload: dict[str, Any], log: LogFn) -> tuple[Any, str | None]:
    """Any non-hook mode: delegate to plugin.tasks.run, imported only now."""
    try:
        import plugin.tasks as tasks
    except Exception as exc:  # a missing module or a broken dependency: same answer to Stash
        log("d", f"[stash2plex] import plugin.tasks failed: {type(exc).__name__}: {exc}")
        return None, f"task {mode} is not available in this install"
    try:
        return tasks.run(mode, payload), None
    except Exception as exc:
        import traceback

        frames = " | ".join(line.strip() for line in traceback.format_exception(exc)[-4:])
        log("d", f"[stash2plex] task {mode} traceback: {frames}")
        message = f"task {mode} failed: {type(exc).__name__}: {' '.join(str(exc).split())}"
        log("e", f"[stash2plex] {message}")
        return None, message


def main() -> int:
    root = _project_root()
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        from plugin import hook
    except Exception as exc:
        return _emit_fatal(f"cannot import the stash2plex project from {root}: {type(exc).__name__}: {exc}")
    import_ms = round((time.perf_counter() - _STARTED) * 1000, 2)
    started = time.perf_counter()
    log = hook.StashLog(sys.stderr)
    script_dir = os.path.dirname(os.path.abspath(__file__))
    try:
        try:
            payload = hook.read_payload(sys.stdin.buffer)
        except hook.HookInputError as exc:
            log.hook("e", f"{exc} ({round((time.perf_counter() - started) * 1000, 2)} ms)")
            output, error = None, str(exc)
        else:
            args = payload.get("args")
            mode = args.get("mode") if isinstance(args, dict) else None
            if mode == "hook":
                output, error = hook.handle_hook(payload, script_dir=Path(script_dir), log=log, started=started)
                if isinstance(output, dict):
                    output["import_ms"] = import_ms
            elif isinstance(mode, str) and mode:
                output, error = _run_task(mode, payload, log)
            else:
                error = "missing args.mode (expected 'hook' or a task mode)"
                log("e", f"[stash2plex] {error}")
                output = None
    except Exception as exc:  # the last guard: one error line and an error result, never a traceback dump
        error = f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"
        log("e", f"[stash2plex] {error}")
        output = None
    hook.write_result(sys.stdout, output, error)
    return hook.exit_code(error)


if __name__ == "__main__":
    sys.exit(main())
