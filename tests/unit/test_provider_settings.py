"""The provider's and push_mode's settings: defaults, env names, validation naming the key."""

import pytest

from pipeline.config import ConfigError, explicit_settings, load_settings


def test_defaults():
    settings = explicit_settings()
    assert settings.push_mode == "fields"
    assert (settings.provider_host, settings.provider_port) == ("127.0.0.1", 8787)
    assert settings.provider_adult is True and settings.provider_public_url is None
    assert settings.provider_stash_timeout == 2.0


def test_push_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("STASH2PLEX_PUSH_MODE", "refresh")
    monkeypatch.setenv("STASH2PLEX_PROVIDER_ADULT", "false")
    settings = load_settings()
    assert settings.push_mode == "refresh" and settings.provider_adult is False


def test_push_mode_from_the_stash_plugin_settings():
    assert load_settings(stash_settings={"push_mode": "refresh"}).push_mode == "refresh"


def test_a_bad_push_mode_names_the_key():
    with pytest.raises(ConfigError, match=r"^push_mode: .*STASH2PLEX_PUSH_MODE"):
        explicit_settings(push_mode="sometimes")


def test_provider_public_url_must_be_http_and_loses_its_trailing_slash():
    assert explicit_settings(provider_public_url="http://nas:8787/").provider_public_url == "http://nas:8787"
    with pytest.raises(ConfigError, match=r"^provider_public_url:"):
        explicit_settings(provider_public_url="nas:8787")
