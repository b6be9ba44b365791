"""Install the stash2plex plugin into a Stash plugins folder.

`install_plugin(DIR)` writes `DIR/stash2plex/`:

- `stash2plex.yml`           the manifest, with `exec`'s first word rewritten to the absolute path of
                             the project's interpreter (its venv's python): Stash runs that as it is,
                             so nothing is pip-installed into Stash's own Python (no PEP 668 trouble);
- `stash2plex_entry.py`      a copy of the entry script that knows the project root (put on sys.path);
- `stash2plex.hook.json`     the hook's settings (broker_url, queue_prefix, data_dir, hook_events),
                             mode 0600 because the broker URL may carry a password.

It also precompiles the hook's fast-path modules, so a hook run never pays for compiling them even
where bytecode cannot be written at run time (PYTHONDONTWRITEBYTECODE, read-only checkout).

Run it as `python -m plugin.install --stash-plugins-dir DIR` or `stash2plex plugin install ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import py_compile
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from plugin.amqp import PublishError, fetch_scene_queue, parse_broker_url, redact_url
from plugin.hook import DEFAULT_BROKER_URL, DEFAULT_QUEUE_PREFIX, HOOK_EVENTS, SETTINGS_FILE

__all__ = [
    "PLUGIN_ID",
    "format_next_steps",
    "install_plugin",
    "main",
    "read_manifest_exec",
    "write_hook_settings",
]

PLUGIN_ID = "stash2plex"
MANIFEST_NAME = f"{PLUGIN_ID}.yml"
ENTRY_NAME = "stash2plex_entry.py"
PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
FAST_PATH_MODULES = ("__init__.py", "amqp.py", "spool.py", "hook.py")
_ROOT_MARKER = "_INSTALLED_PROJECT_ROOT: str | None = None"


def _atomic_write(path: Path, text: str, mode: int) -> None:
    """Write `text` to `path` through a temporary file + rename, with permissions `mode`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _manifest_with_interpreter(manifest: str, python: Path) -> str:
    """The manifest text with the first item of its `exec` list replaced by `python`."""
    lines = manifest.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.rstrip() == "exec:":
            for item in range(index + 1, len(lines)):
                stripped = lines[item].lstrip()
                if stripped.startswith("- "):
                    indent = lines[item][: len(lines[item]) - len(stripped)]
                    lines[item] = f"{indent}- {json.dumps(str(python))}\n"
                    return "".join(lines)
                if stripped.strip() and not stripped.startswith("#"):
                    break
    raise ValueError("the manifest has no block-style `exec:` list to rewrite")


def read_manifest_exec(manifest_path: Path) -> list[str]:
    """The `exec` list of a manifest written in this project's block style (no YAML library needed)."""
    words: list[str] = []
    in_exec = False
    for line in Path(manifest_path).read_text(encoding="utf-8").splitlines():
        if line.rstrip() == "exec:":
            in_exec = True
            continue
        if not in_exec:
            continue
        stripped = line.strip()
        if not stripped.startswith("- "):
            break
        word = stripped[2:].strip()
        if word.startswith('"'):
            word = json.loads(word)
        elif word.startswith("'") and word.endswith("'"):
            word = word[1:-1].replace("''", "'")
        words.append(word)
    return words


def write_hook_settings(
    plugin_dir: Path,
    *,
    broker_url: str | None = None,
    queue_prefix: str | None = None,
    data_dir: Path | None = None,
    hook_events: str | None = None,
) -> Path:
    """Write `<plugin_dir>/stash2plex.hook.json`, keeping earlier values for arguments left as None.

    Tasks may call this to copy the Stash plugin settings (broker_url, queue_prefix, hook_events)
    where the hook can read them without a GraphQL call. Raises ValueError on an invalid value.
    """
    plugin_dir = Path(plugin_dir)
    path = plugin_dir / SETTINGS_FILE
    current: dict[str, str] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                current = {k: str(v) for k, v in loaded.items() if isinstance(v, (str, int, float))}
        except (OSError, ValueError):
            current = {}
    settings = {
        "broker_url": broker_url or current.get("broker_url") or DEFAULT_BROKER_URL,
        "queue_prefix": queue_prefix or current.get("queue_prefix") or DEFAULT_QUEUE_PREFIX,
        "data_dir": str(Path(data_dir).expanduser().absolute()) if data_dir is not None
        else current.get("data_dir") or str(plugin_dir.absolute() / "data"),
        "hook_events": (hook_events or current.get("hook_events") or "all").strip().lower(),
    }
    try:
        parse_broker_url(settings["broker_url"])
        fetch_scene_queue(settings["queue_prefix"])
    except PublishError as exc:
        raise ValueError(str(exc)) from None
    if settings["hook_events"] not in HOOK_EVENTS:
        raise ValueError(f"hook_events must be one of {', '.join(HOOK_EVENTS)}, not {settings['hook_events']!r}")
    _atomic_write(path, json.dumps(settings, indent=2) + "\n", 0o600)
    return path


def _precompile_fast_path() -> None:
    """Write the .pyc files of the hook's modules next to them; a read-only tree is not an error."""
    for name in FAST_PATH_MODULES:
        try:
            py_compile.compile(str(PACKAGE_DIR / name), doraise=True)
        except (OSError, py_compile.PyCompileError) as exc:
            print(f"note: could not precompile plugin/{name} ({exc}); the hook will still work", file=sys.stderr)


def install_plugin(
    stash_plugins_dir: Path,
    python: Path = Path(sys.executable),
    broker_url: str | None = None,
    queue_prefix: str | None = None,
    data_dir: Path | None = None,
    *,
    hook_events: str | None = None,
    project_root: Path | None = None,
) -> Path:
    """Write `<stash_plugins_dir>/stash2plex/` (manifest, entry script, hook settings); return that folder.

    `python` is the interpreter Stash will run: keep the default (the project's venv python) so the
    hook and tasks find their dependencies. It is made absolute but not resolved (resolving a venv's
    symlink would bypass the venv). Settings left as None keep the values of an earlier install.
    Raises FileNotFoundError for a missing interpreter, ValueError for an invalid setting.
    """
    python = Path(os.path.abspath(os.path.expanduser(str(python))))
    if not python.is_file() or not os.access(python, os.X_OK):
        raise FileNotFoundError(f"interpreter {python} does not exist or is not executable")
    root = Path(os.path.abspath(project_root)) if project_root is not None else PROJECT_ROOT
    if not (root / "plugin" / "hook.py").is_file():
        raise FileNotFoundError(f"{root} is not a stash2plex project root (no plugin/hook.py)")

    target = Path(stash_plugins_dir).expanduser().absolute() / PLUGIN_ID
    target.mkdir(parents=True, exist_ok=True)

    manifest = (PACKAGE_DIR / MANIFEST_NAME).read_text(encoding="utf-8")
    _atomic_write(target / MANIFEST_NAME, _manifest_with_interpreter(manifest, python), 0o644)

    entry = (PACKAGE_DIR / ENTRY_NAME).read_text(encoding="utf-8")
    if entry.count(_ROOT_MARKER) != 1:
        raise ValueError(f"{ENTRY_NAME} lacks the project-root marker line; cannot install it")
    entry = entry.replace(_ROOT_MARKER, f"_INSTALLED_PROJECT_ROOT: str | None = {str(root)!r}")
    _atomic_write(target / ENTRY_NAME, entry, 0o755)

    write_hook_settings(target, broker_url=broker_url, queue_prefix=queue_prefix,
                        data_dir=data_dir, hook_events=hook_events)
    if root == PROJECT_ROOT:
        _precompile_fast_path()
    return target


def format_next_steps(plugin_dir: Path) -> str:
    """What the user does after installing (printed by the CLI)."""
    settings = json.loads((Path(plugin_dir) / SETTINGS_FILE).read_text(encoding="utf-8"))
    exec_words = read_manifest_exec(Path(plugin_dir) / MANIFEST_NAME)
    return "\n".join([
        f"Installed the stash2plex plugin in {plugin_dir}",
        f"  interpreter : {exec_words[0] if exec_words else '?'}",
        f"  broker      : {redact_url(settings['broker_url'])}",
        f"  hook queue  : {fetch_scene_queue(settings['queue_prefix'])}",
        f"  hook spool  : {settings['data_dir']}/hook-spool.jsonl",
        f"  hook events : {settings['hook_events']}",
        "Next steps:",
        "  1. In Stash: Settings > Plugins > Reload plugins (stash2plex appears in the list).",
        "  2. In the stash2plex plugin settings, set plex_url and plex_token (and plex_library, path_map if needed).",
        "  3. Start the workers, then run the 'Health check' task; edit a scene to see the hook queue it.",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m plugin.install --stash-plugins-dir DIR [...]`."""
    parser = argparse.ArgumentParser(prog="python -m plugin.install", description=__doc__.splitlines()[0])
    parser.add_argument("--stash-plugins-dir", required=True, type=Path,
                        help="Stash's plugins folder (e.g. ~/.stash/plugins)")
    parser.add_argument("--python", type=Path, default=Path(sys.executable),
                        help="interpreter Stash runs the plugin with (default: this one)")
    parser.add_argument("--broker-url", help="RabbitMQ URL the hook publishes to")
    parser.add_argument("--queue-prefix", help="queue prefix (default stash2plex)")
    parser.add_argument("--data-dir", type=Path, help="folder of the hook's spool (default <plugin>/data)")
    parser.add_argument("--hook-events", choices=HOOK_EVENTS, help="all (default) or identify")
    args = parser.parse_args(argv)
    try:
        target = install_plugin(args.stash_plugins_dir, args.python, args.broker_url, args.queue_prefix,
                                args.data_dir, hook_events=args.hook_events)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_next_steps(target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
