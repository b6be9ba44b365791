"""docker-compose.yml and .env.example: valid, safe by default, scalable (no Docker engine needed)."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT

SCHEMA = ROOT.parent / "shared" / "reference" / "compose-spec" / "compose-spec.json"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
LONG_RUNNING = ("rabbitmq", "worker", "scheduler", "provider", "prometheus", "grafana")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def test_compose_file_is_valid_against_the_compose_spec_schema():
    if not SCHEMA.exists():
        pytest.skip(f"the shared Compose Specification schema is not at {SCHEMA}")
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(compose())


def test_every_published_port_is_bound_to_bind_address_defaulting_to_localhost():
    published = [(name, port) for name, service in services().items() for port in service.get("ports", [])]
    assert published, "compose publishes RabbitMQ, Prometheus and Grafana"
    for name, port in published:
        assert isinstance(port, str) and port.startswith("${BIND_ADDRESS:-127.0.0.1}:"), (name, port)
    assert env_example()["BIND_ADDRESS"] == "127.0.0.1"


def test_rabbitmq_uses_a_maintained_image_and_never_guest():
    assert re.fullmatch(r"rabbitmq:4[.\d]*-management", services()["rabbitmq"]["image"])
    assert "guest" not in COMPOSE.read_text().replace("loopback", "")
    assert "guest" not in ENV_EXAMPLE.read_text().replace("there is no guest account", "")


def test_workers_reach_rabbitmq_with_the_user_and_password_from_env():
    for name in ("worker", "scheduler"):
        url = services()[name]["environment"]["STASH2PLEX_BROKER_URL"]
        assert url.startswith("amqp://${RABBITMQ_USER:?") and ":${RABBITMQ_PASSWORD:?" in url and url.endswith("@rabbitmq:5672/")


def test_rabbitmq_loads_definitions_written_from_env_before_it_starts():
    rabbit = services()["rabbitmq"]
    assert rabbit["depends_on"]["rabbitmq-definitions"]["condition"] == "service_completed_successfully"
    assert "rabbitmq-definitions:/etc/rabbitmq/definitions:ro" in rabbit["volumes"]
    conf = (ROOT / "ops" / "rabbitmq" / "rabbitmq.conf").read_text()
    assert re.search(r"^load_definitions = /etc/rabbitmq/definitions$", conf, re.M)
    job = services()["rabbitmq-definitions"]
    assert job["command"][:3] == ["python", "-m", "ops.rabbit_definitions"]
    assert set(job["environment"]) == {"RABBITMQ_USER", "RABBITMQ_PASSWORD"}


def test_rabbitmq_enables_its_prometheus_endpoint():
    plugins = (ROOT / "ops" / "rabbitmq" / "enabled_plugins").read_text()
    assert "rabbitmq_prometheus" in plugins and "rabbitmq_management" in plugins


def test_grafana_admin_password_comes_from_env_and_sign_up_is_off():
    env = services()["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_healthcheck(name):
    check = services()[name].get("healthcheck", {})
    assert not check.get("disable") and check.get("test"), name


def test_worker_publishes_no_host_port_so_it_scales():
    worker = services()["worker"]
    assert "ports" not in worker and "container_name" not in worker


def test_persistent_data_lives_in_named_volumes():
    named = set(compose()["volumes"])
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                assert volume.endswith(":ro") and source.startswith("./ops/"), (name, volume)  # config only
            else:
                assert source in named, (name, volume)
    assert {"rabbitmq-data", "stash2plex-data", "prometheus-data", "grafana-data"} <= named


def test_env_example_names_only_what_compose_uses():
    text = COMPOSE.read_text()
    interpolated = set(re.findall(r"\$\{([A-Z_]+)", text))
    keys = set(env_example())
    assert interpolated <= keys, interpolated - keys
    for key in keys - interpolated:
        assert key.startswith("STASH2PLEX_"), key  # read by the services with env_file: .env
    with_env_file = [name for name, service in services().items() if service.get("env_file")]
    assert set(with_env_file) == {"rabbitmq-definitions", "worker", "scheduler", "provider"}


def test_compose_env_example_of_unknown_services_is_gone():
    assert not (ROOT / "ops" / "compose.env.example").exists()


def test_prometheus_scrapes_every_worker_replica_and_rabbitmq():
    config = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    workers = jobs["stash2plex-workers"]["dns_sd_configs"][0]
    assert workers["names"] == ["worker"] and workers["port"] == 9191
    rabbit = jobs["rabbitmq"]
    assert rabbit["static_configs"][0]["targets"] == ["rabbitmq:15692"]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_provider_serves_on_8787_bound_to_bind_address_and_keeps_its_snapshot():
    provider = services()["provider"]
    assert provider["command"] == ["stash2plex", "provider", "--host", "0.0.0.0", "--port", "8787"]
    assert provider["ports"] == ["${BIND_ADDRESS:-127.0.0.1}:8787:8787"]
    assert "stash2plex-data:/data" in provider["volumes"]
    assert provider["healthcheck"]["test"] == ["CMD", "python", "-m", "ops.healthcheck", "provider"]
