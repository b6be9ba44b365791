"""The Dockerfile, read as text (the development machines have no Docker engine to build it)."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def index_of(keyword: str, contains: str) -> int:
    return next(i for i, (kw, rest) in enumerate(instructions()) if kw == keyword and contains in rest)


def test_dockerfile_runs_as_a_non_root_user():
    users = [(i, rest) for i, (kw, rest) in enumerate(instructions()) if kw == "USER"]
    assert users and users[-1][1] not in ("root", "0", "0:0")
    last_run = max(i for i, (kw, _) in enumerate(instructions()) if kw == "RUN")
    assert users[-1][0] > last_run


def test_dependencies_install_from_pyproject_before_the_code_is_copied():
    deps = index_of("RUN", "pip install -r")
    assert index_of("COPY", "pyproject.toml") < deps
    for package in ("pipeline", "actors", "ops", "plugin"):
        assert deps < index_of("COPY", package)


def test_dependency_layer_command_lists_exactly_the_projects_dependencies():
    run = instructions()[index_of("RUN", "pip install -r")][1]
    script = run.split('python -c "', 1)[1].split('"', 1)[0]
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert out.splitlines() == expected


def test_dockerfile_has_a_healthcheck():
    assert "ops.healthcheck" in instructions()[index_of("HEALTHCHECK", "CMD")][1]


def test_dockerignore_keeps_secrets_venvs_and_git_out():
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in (".env", ".git", ".venv", "**/__pycache__"):
        assert entry in ignored
