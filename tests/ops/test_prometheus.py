"""Prometheus rules and dashboard against the real thing: `promtool test rules`, and Debian's `prometheus`
scraping a real `dramatiq actors` worker and RabbitMQ's own exporter, where every dashboard and alert
expression must return data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import requests
import yaml

from ops.rabbit_definitions import queue_definitions
from pipeline.config import explicit_settings
from tests.conftest import RABBIT_URL, ROOT, WorkerProcess, emulator_env, stop_process_group, wait_for
from tests.ops.metrics_helpers import free_port, scrape
from tests.ops.test_rabbit_definitions import import_definitions
from tests.test_actor_chain import enqueue, synced

PROMETHEUS_DIR = ROOT / "ops" / "prometheus"
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "stash2plex.json"
RABBIT_METRICS = "127.0.0.1:15692"
SELECTOR = re.compile(r"\b((?:stash2plex|dramatiq|rabbitmq)_[a-zA-Z0-9_]+|up)\b(\{[^}]*\})?")
MISSING = "Debian's prometheus/promtool are not installed (apt-get install -y prometheus; .ci/run does it)"


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(MISSING)
    return path


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def selectors(expr: str) -> list[str]:
    """Every series selector an expression reads (`name{matchers}`), without functions or thresholds."""
    return sorted({name + (matchers or "") for name, matchers in SELECTOR.findall(expr)})


def test_alert_rules_pass_their_promtool_unit_tests():
    promtool = need("promtool")
    result = subprocess.run([promtool, "test", "rules", str(PROMETHEUS_DIR / "alerts_test.yml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_required_alert_has_a_rule_and_a_unit_test():
    names = {rule["alert"] for rule in alert_rules()}
    assert names == {"Stash2plexBreakerOpen", "Stash2plexStashBreakerOpen", "Stash2plexDeadLetterQueueGrowing",
                     "Stash2plexBacklogNotDraining", "Stash2plexNoWorkerUp", "Stash2plexSyncLatencyHigh", "RabbitMQDown"}
    tested = {case["alertname"] for test in yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
              for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert tested == names


def test_dashboard_shows_queue_and_dlq_depth_from_rabbitmq():
    exprs = dashboard_exprs()
    assert any("rabbitmq_queue_messages_ready" in e and "dlq" in e for e in exprs)
    assert any("rabbitmq_queue_messages_ready" in e and "push_metadata" in e for e in exprs)


@pytest.fixture
def prometheus(tmp_path):
    """Start Debian's prometheus with the project's rules and this test's scrape targets; yields its query function."""
    binary = need("prometheus")
    port = free_port()
    started: list[subprocess.Popen] = []

    def start(worker_port: int):
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(PROMETHEUS_DIR / "alerts.yml")]
        for job in config["scrape_configs"]:  # same jobs and paths; the compose DNS names become local addresses
            if job["job_name"] == "stash2plex-workers":
                del job["dns_sd_configs"]
                job["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
            else:
                job["static_configs"] = [{"targets": [RABBIT_METRICS]}]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = open(tmp_path / "prometheus.log", "ab")
        started.append(subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

        def query(expr: str) -> list[dict]:
            body = requests.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr}, timeout=10).json()
            assert body["status"] == "success", (expr, body)
            return list(body["data"]["result"])

        def ready() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, timeout=60, message="prometheus ready")
        return query, port

    yield start
    for proc in started:
        stop_process_group(proc)


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_every_dashboard_and_alert_expression_returns_data_from_a_real_worker_and_rabbitmq(
        prometheus, plex, stash, dataset, queue_prefix, tmp_path):
    if requests.get(f"http://{RABBIT_METRICS}/metrics", timeout=5).status_code != 200:
        pytest.fail("RabbitMQ's Prometheus endpoint is off: rabbitmq-plugins enable rabbitmq_prometheus")
    import_definitions(queue_definitions(explicit_settings(broker_url=RABBIT_URL, queue_prefix=queue_prefix)))
    worker_port = free_port()
    env = emulator_env(plex, stash, tmp_path / "data", queue_prefix=queue_prefix, broker_url=RABBIT_URL,
                       metrics_port=worker_port)
    env["dramatiq_prom_db"] = str(tmp_path / "prom")
    worker = WorkerProcess(env, 1, 4, log_path=tmp_path / "worker.log").start()
    try:
        wait_for(lambda: scrape(worker_port), timeout=30, message="the worker's exporter")
        query, _port = prometheus(worker_port)
        wait_for(lambda: [r["value"][1] for r in query("sum(up)")] == ["2"], timeout=30, message="both targets up")
        for batch in (dataset.scenes[:3], dataset.scenes[3:6]):  # the second one after Prometheus saw the first,
            ids = [scene["id"] for scene in batch]               # so rate() and increase() see a change
            enqueue(queue_prefix, ids)
            wait_for(lambda: synced(plex, dataset, ids), timeout=60, message="the scenes synced")
            wait_for(lambda: query("stash2plex_plex_requests_total") != [], timeout=30, message="the Plex requests scraped")
        wait_for(lambda: query("sum(rate(stash2plex_plex_requests_total[1m])) > 0") != [], timeout=30,
                 message="the Plex requests in a rate")

        for expr in dashboard_exprs():
            result = query(expr)
            assert result, f"dashboard expression returned no data: {expr}"
            if "by (queue)" in expr:
                assert any(r["metric"].get("queue", "").startswith(queue_prefix + ".") for r in result), expr

        for rule in alert_rules():
            query(rule["expr"])  # evaluates (status success)
            for selector in selectors(rule["expr"]):
                assert query(selector), f"alert {rule['alert']} reads {selector}, which has no data"
        rules = requests.get(f"http://127.0.0.1:{_port}/api/v1/rules", timeout=10).json()["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"] if r["health"] in ("ok", "unknown")} == \
            {rule["alert"] for rule in alert_rules()}
    finally:
        worker.stop()
