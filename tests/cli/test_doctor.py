"""`stash2plex doctor`: every check against the emulators, and an actionable fix for each failure."""

from __future__ import annotations

import pytest

WRONG_TOKEN = "wrong-plex-token-000"


@pytest.mark.rabbitmq
def test_doctor_passes_against_the_emulators(cli):
    result = cli("doctor")
    assert result.returncode == 0, result.output
    assert "FAIL" not in result.stdout
    assert "20/20 sampled Stash files found in Plex" in result.stdout


@pytest.mark.rabbitmq
def test_doctor_json_lists_every_check_with_its_status(cli):
    report = cli("doctor", "--json").json()
    assert report["ok"] is True
    names = [c["name"] for c in report["checks"]]
    assert names == ["settings", "rabbitmq", "rabbitmq management", "stash", "plex", "plex sections", "path matching"]
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in report["checks"])


@pytest.mark.rabbitmq
def test_doctor_fails_with_a_fix_line_when_the_plex_token_is_wrong(cli):
    result = cli("doctor", STASH2PLEX_PLEX_TOKEN=WRONG_TOKEN)
    assert result.returncode == 1
    assert "refused the token" in result.stdout
    fix = next(line for line in result.stdout.splitlines() if line.startswith("fix (plex)"))
    assert "plex_token" in fix
    assert WRONG_TOKEN not in result.output


@pytest.mark.rabbitmq
def test_doctor_warns_when_files_match_only_by_name_under_the_path_map(cli):
    result = cli("doctor", STASH2PLEX_PATH_MAP="/data/videos=/mnt/plex/videos")
    assert result.returncode == 0, result.output
    assert "20/20 sampled Stash files found in Plex (0 by path, 20 by file name)" in result.stdout
    fix = next(line for line in result.stdout.splitlines() if line.startswith("fix (path matching)"))
    assert "path_map" in fix


@pytest.mark.rabbitmq
def test_doctor_fails_the_path_check_when_no_sampled_file_is_in_plex(cli, plex):
    for item in plex.items():
        plex.remove_item(item["ratingKey"])
    result = cli("doctor")
    assert result.returncode == 1
    assert "0/20 sampled Stash files found in Plex" in result.stdout
    fix = next(line for line in result.stdout.splitlines() if line.startswith("fix (path matching)"))
    assert "path_map" in fix and "/data/videos" in fix


def test_doctor_reports_an_unreachable_broker_with_its_fix(cli, closed_port):
    result = cli("doctor", STASH2PLEX_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{closed_port}/")
    assert result.returncode == 1
    assert "rabbitmq-server -detached" in result.stdout


def test_doctor_reports_refused_stash_credentials(cli):
    result = cli("doctor", STASH2PLEX_STASH_API_KEY="not-the-key")
    assert result.returncode == 1
    assert "stash_api_key" in result.stdout and "not-the-key" not in result.output


def test_doctor_with_a_bad_setting_exits_2(cli):
    result = cli("doctor", STASH2PLEX_PLEX_URL="plex.local")
    assert result.returncode == 2
    assert "plex_url" in result.stdout
