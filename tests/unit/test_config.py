"""Configuration: layers in the documented order, and one clear line for a bad key."""

import pytest

from pipeline.config import ConfigError, explicit_settings, load_settings
from pipeline.broker_address import redact_url


def test_defaults_are_usable():
    settings = load_settings()
    assert settings.queue_prefix == "stash2plex"
    assert settings.queue_name("fetch_scene") == "stash2plex.fetch_scene"
    assert settings.dlq_name == "stash2plex.dlq"
    assert settings.max_retries == 5 and settings.tag_mode == "merge"


def test_env_beats_file_beats_stash(tmp_path, monkeypatch):
    config = tmp_path / "s2p.toml"
    config.write_text('max_tags = 20\nmax_retries = 7\n')
    monkeypatch.setenv("STASH2PLEX_CONFIG", str(config))
    monkeypatch.setenv("STASH2PLEX_MAX_TAGS", "30")
    settings = load_settings(stash_settings={"max_tags": 10, "max_retries": 2, "dlq_retention_days": 9.0})
    assert settings.max_tags == 30
    assert settings.max_retries == 7
    assert settings.dlq_retention_days == 9


def test_lists_and_path_map_parse_from_env(monkeypatch):
    monkeypatch.setenv("STASH2PLEX_PLEX_LIBRARY", "Movies, Clips")
    monkeypatch.setenv("STASH2PLEX_PATH_MAP", "/stash=/plex;/a/b=/c")
    settings = load_settings()
    assert settings.plex_library == ["Movies", "Clips"]
    assert settings.path_map == [("/stash", "/plex"), ("/a/b", "/c")]


def test_a_bad_value_names_its_key_and_env_variable(monkeypatch):
    monkeypatch.setenv("STASH2PLEX_MAX_RETRIES", "lots")
    with pytest.raises(ConfigError, match=r"^max_retries: .*STASH2PLEX_MAX_RETRIES"):
        load_settings()


def test_an_unknown_key_in_the_file_is_an_error(tmp_path):
    config = tmp_path / "s2p.toml"
    config.write_text('max_tagz = 20\n')
    with pytest.raises(ConfigError, match="max_tagz"):
        load_settings(config_file=config)


def test_a_short_plex_token_is_rejected_without_echoing_it():
    with pytest.raises(ConfigError) as raised:
        load_settings(plex_token="abc123")
    assert "abc123" not in str(raised.value) and "plex_token" in str(raised.value)


def test_secrets_are_masked_in_repr():
    settings = load_settings(plex_token="supersecrettoken", stash_api_key="stashkey123")
    assert "supersecrettoken" not in repr(settings) and "stashkey123" not in repr(settings)


def test_redact_url_hides_passwords_and_queries():
    assert redact_url("amqp://user:pw@host:5672/vh") == "amqp://user:***@host:5672/vh"
    assert redact_url("http://h:1/x?apikey=K") == "http://h:1/x?***"


def test_outcome_log_keeps_outcome_retention_days(tmp_path) -> None:
    import time

    from pipeline.state import StateStore

    store = StateStore(tmp_path, outcome_retention_seconds=0.2)
    store.record_outcomes([("1", "updated", None)])
    time.sleep(0.3)
    store.record_outcomes([("2", "updated", None)])
    assert set(store.outcomes_since(0)) == {"2"}
    assert explicit_settings(outcome_retention_days=0.5).outcome_retention_days == 0.5
