"""Settings: one pydantic-settings model, read from env, an optional TOML file and Stash's plugin settings.

Precedence, highest first: `STASH2PLEX_*` environment variables > the TOML file named by
`STASH2PLEX_CONFIG` > the values saved in Stash's plugin settings page > the defaults below.
A bad value fails at start with one line naming the key (`ConfigError`).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pipeline.broker_address import (
    DEFAULT_BROKER_URL,
    BrokerUrlError,
    check_queue_prefix,
    dlq_name,
    is_stub,
    parse_broker_url,
    queue_name,
    url_password,
)
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "STASH2PLEX_"
CONFIG_FILE_ENV = "STASH2PLEX_CONFIG"
PLUGIN_ID = "stash2plex"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the key and never holds a secret."""


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "stash2plex"


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _parse_path_map(value: Any) -> Any:
    """`/stash/a=/plex/a;/stash/b=/plex/b` -> [("/stash/a", "/plex/a"), ...]."""
    if not isinstance(value, str):
        return value
    pairs: list[tuple[str, str]] = []
    for chunk in value.split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        if "=" not in chunk:
            raise ValueError(f"entry {chunk!r} must look like stash_prefix=plex_prefix")
        stash_prefix, plex_prefix = (part.strip() for part in chunk.split("=", 1))
        if not stash_prefix:
            raise ValueError(f"entry {chunk!r} has an empty stash prefix")
        pairs.append((stash_prefix, plex_prefix))
    return pairs


class Settings(BaseSettings):
    """Every knob of stash2plex. Field names are the keys users set (Stash plugin settings use the same)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        validate_default=True,
        hide_input_in_errors=True,
    )

    # --- where things are -------------------------------------------------------------------
    enabled: bool = True
    broker_url: str = DEFAULT_BROKER_URL
    broker_management_url: str = "http://127.0.0.1:15672"
    queue_prefix: str = "stash2plex"
    stash_url: str = "http://127.0.0.1:9999"
    stash_api_key: SecretStr | None = None
    stash_session_cookie: SecretStr | None = None
    plex_url: str = "http://127.0.0.1:32400"
    plex_token: SecretStr | None = None
    plex_library: Annotated[list[str], NoDecode] = Field(default_factory=list)
    path_map: Annotated[list[tuple[str, str]], NoDecode] = Field(default_factory=list)
    data_dir: Path = Field(default_factory=default_data_dir)

    # --- matching and writing ---------------------------------------------------------------
    strict_matching: bool = True
    preserve_plex_edits: bool = False
    tag_mode: Literal["merge", "replace"] = "merge"
    tagline_source: Literal["code", "studio", "none"] = "code"
    sync_master: bool = True
    sync_title: bool = True
    sync_studio: bool = True
    sync_summary: bool = True
    sync_tagline: bool = True
    sync_date: bool = True
    sync_performers: bool = True
    sync_tags: bool = True
    sync_poster: bool = True
    sync_background: bool = False
    sync_collection: bool = True
    sync_rating: bool = False
    performer_thumbs: bool = True  # accepted, no effect: Plex documents no actor-photo edit (pipeline/metadata.py)
    max_tags: int = Field(100, ge=0, le=1000)
    dry_run: bool = False
    push_mode: Literal["fields", "refresh"] = "fields"

    # --- retries, breaker, pacing -----------------------------------------------------------
    max_retries: int = Field(5, ge=0, le=50)
    retry_base_seconds: float = Field(5.0, gt=0, le=600)
    not_found_base_seconds: float = Field(30.0, gt=0, le=3600)
    not_found_retries: int = Field(12, ge=0, le=100)
    trigger_plex_scan: bool = False
    skip_not_found: bool = False
    max_defer_days: float = Field(7.0, gt=0, le=60)
    plex_connect_timeout: float = Field(5.0, gt=0, le=300)
    plex_read_timeout: float = Field(30.0, gt=0, le=600)
    stash_timeout: float = Field(15.0, gt=0, le=600)
    breaker_failures: int = Field(5, ge=1, le=1000)
    breaker_reset_seconds: float = Field(60.0, gt=0, le=3600)
    plex_max_rps: float = Field(0.0, ge=0, description="0 means no limit")
    batch_size: int = Field(50, ge=1, le=500)
    dlq_retention_days: int = Field(30, ge=1, le=3650)
    outcome_retention_days: float = Field(7.0, gt=0, le=3650, description="outcome log kept in state.db")

    # --- Plex metadata provider (`stash2plex provider`) -----------------------------------------
    provider_host: str = "127.0.0.1"
    provider_port: int = Field(8787, ge=1, le=65535)
    provider_public_url: str | None = Field(None, description="base URL Plex reaches the provider at; default: the Host Plex used")
    provider_adult: bool = True
    provider_refresh_seconds: float = Field(10.0, gt=0, le=3600)
    provider_stash_timeout: float = Field(2.0, gt=0, le=30)

    # --- schedules ----------------------------------------------------------------------------
    reconcile_interval: Literal["never", "hourly", "daily", "weekly"] = "never"
    reconcile_scope: Literal["all", "24h", "7d"] = "24h"
    reconcile_missing: bool = True

    # --- observability ------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    debug_logging: bool = False
    obfuscate_paths: bool = False
    metrics_port: int = Field(9191, ge=0, le=65535)
    metrics_host: str = Field("127.0.0.1", description="address the workers' exporter binds; 0.0.0.0 in containers")
    hook_events: Literal["all", "identify"] = "all"

    @field_validator("plex_library", mode="before")
    @classmethod
    def _libraries(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("path_map", mode="before")
    @classmethod
    def _path_map(cls, value: Any) -> Any:
        return _parse_path_map(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("queue_prefix")
    @classmethod
    def _queue_prefix(cls, value: str) -> str:
        try:
            return check_queue_prefix(value)
        except BrokerUrlError:
            raise ValueError("must start with a letter or _ and hold only letters, digits, '.', '_' or '-'") from None

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        if is_stub(value):
            return value
        try:
            parse_broker_url(value)
        except BrokerUrlError as exc:
            raise ValueError(f"{exc} (or stub:// for the in-process broker)") from None
        return value

    @field_validator("provider_public_url")
    @classmethod
    def _optional_http_url(cls, value: str | None) -> str | None:
        return None if not value else cls._http_url(value)

    @field_validator("stash_url", "plex_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value.rstrip("/")

    @field_validator("plex_token")
    @classmethod
    def _token_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value() and len(value.get_secret_value()) < 10:
            raise ValueError("looks too short for a Plex token (10 characters at least)")
        return value

    @field_validator("stash_api_key", "stash_session_cookie", "plex_token", mode="before")
    @classmethod
    def _empty_secret_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init kwargs carry the lower layers (file, Stash) merged by `load_settings`; env wins over them.
        return (env_settings, init_settings)

    # --- derived values ---------------------------------------------------------------------
    def queue_name(self, actor_name: str) -> str:
        """`<queue_prefix>.<actor_name>` (see pipeline/broker_address.py)."""
        return queue_name(self.queue_prefix, actor_name)

    @property
    def dlq_name(self) -> str:
        return dlq_name(self.queue_prefix)

    @property
    def uses_stub_broker(self) -> bool:
        """`broker_url` is stub:// (dramatiq's in-process broker, for the demo)."""
        return is_stub(self.broker_url)

    def secrets(self) -> list[str]:
        """Every secret value, for the log and message scrubbers (the broker password both decoded and as written)."""
        values = [self.stash_api_key, self.stash_session_cookie, self.plex_token]
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        password = url_password(self.broker_url)
        if password and password != "guest":
            found.append(password)
            raw = self.broker_url.partition("://")[2].rpartition("@")[0].partition(":")[2]
            if raw and raw != password:
                found.append(raw)
        return found

    def field_enabled(self, name: str) -> bool:
        """Whether a `sync_<name>` switch is on (the master switch gates all)."""
        return self.sync_master and bool(getattr(self, f"sync_{name}"))


def env_name(key: str) -> str:
    return f"{ENV_PREFIX}{key.upper()}"


def read_toml(path: Path) -> dict[str, Any]:
    """The settings in a TOML file (top level, or under a [stash2plex] table). Unknown keys are errors."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{CONFIG_FILE_ENV}: config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{CONFIG_FILE_ENV}: config file {path} is not valid TOML: {exc}") from exc
    data = data.get(PLUGIN_ID, data)
    unknown = sorted(set(data) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown setting in {path} (known: see the README's configuration table)")
    return data


def clean_stash_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """Stash returns only saved values, NUMBERs sometimes as floats; keep known keys, drop empty strings."""
    cleaned: dict[str, Any] = {}
    for key, value in saved.items():
        if key not in Settings.model_fields or value is None or value == "":
            continue
        annotation = Settings.model_fields[key].annotation
        if annotation is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        cleaned[key] = value
    return cleaned


def load_settings(
    stash_settings: dict[str, Any] | None = None,
    config_file: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build and validate the settings; raise `ConfigError` naming the first bad key.

    `stash_settings` are the plugin settings saved in Stash (lowest layer above defaults);
    `config_file` defaults to `$STASH2PLEX_CONFIG`; `overrides` win over everything but env
    (they are how the CLI passes flags such as --dry-run).
    """
    layers: dict[str, Any] = {}
    layers.update(clean_stash_settings(stash_settings or {}))
    file_name = config_file or (Path(os.environ[CONFIG_FILE_ENV]) if os.environ.get(CONFIG_FILE_ENV) else None)
    if file_name is not None:
        layers.update(read_toml(Path(file_name)))
    layers.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**layers)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


class _ExplicitSettings(Settings):
    """Settings from the values given alone: no environment variable, no file, no Stash."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def explicit_settings(**values: Any) -> Settings:
    """Settings made of `values` and the defaults only, whatever `STASH2PLEX_*` says (the demo, tests)."""
    try:
        return _ExplicitSettings(**values)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"][:1]) or "settings"
    message = first["msg"].removeprefix("Value error, ")
    return f"{key}: {message} (set {env_name(key)}, the config file or the Stash plugin setting)"


__all__ = [
    "ConfigError",
    "Settings",
    "load_settings",
    "explicit_settings",
    "env_name",
]
