"""`stash2plex status`: queue depths, the DLQ, breaker state, recent outcomes and the last error.

Queue depths come from the RabbitMQ management API (`broker_management_url`, with broker_url's
user and password) when it answers: ready and unacked counts, consumers. The API refreshes its
counts every 5 s, so the ready counts are then taken from AMQP passive declares (real time) too.
Without the API only AMQP is asked, which knows ready counts and consumers but not unacked
messages (reported as unknown: null in JSON, `?` in the table).
The local part (breakers, outcomes, last error) is read from the state file in `data_dir`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

import requests

from ops.broker import broker_failure
from ops.common import CliError
from pipeline import rabbit
from pipeline.broker_address import parse_broker_url
from pipeline.config import Settings
from pipeline.broker_address import redact_url
from pipeline.errors import BrokerRefused, BrokerUnreachable
from pipeline.stages import queue_roles
from pipeline.state import StateStore

MANAGEMENT_TIMEOUT_SECONDS = 3.0
RECENT_SECONDS = 3600.0


@dataclass
class QueueDepth:
    """One queue's counts; None means unknown (queue absent counts as zero, `exists` False)."""

    name: str
    role: str
    ready: int | None
    unacked: int | None
    consumers: int | None
    exists: bool


@dataclass
class Depths:
    """Where the counts came from (`management`, `amqp` or None when the broker is unreachable)."""

    source: str | None
    queues: list[QueueDepth]
    error: str | None = None
    management_error: str | None = None

    @property
    def unacked_known(self) -> bool:
        return self.source == "management"

    def idle(self) -> bool | None:
        """True when every stage and delay queue is empty and nothing is unacked; None if unknowable."""
        if not self.unacked_known:
            return None
        work = [q for q in self.queues if q.role in ("stage", "delay")]
        return all((q.ready or 0) == 0 and (q.unacked or 0) == 0 for q in work)


@contextmanager
def _admin(settings: Settings) -> Iterator[Any]:
    """A short pika connection (pipeline.rabbit); broker errors become CLI errors."""
    try:
        with rabbit.connection(settings) as opened:
            yield opened
    except (BrokerUnreachable, BrokerRefused) as error:
        raise broker_failure(settings, error) from None


# --- depths -----------------------------------------------------------------------------------------
def management_depths(settings: Settings) -> tuple[list[QueueDepth] | None, str]:
    """(counts from the management API, "") or (None, why not) when it is unreachable or refuses us."""
    address = parse_broker_url(settings.broker_url)
    user, password, vhost = address.username, address.password, address.vhost
    base = settings.broker_management_url.rstrip("/")
    where = redact_url(base)
    try:
        response = requests.get(f"{base}/api/queues/{quote(vhost, safe='')}", auth=(user, password),
                                timeout=MANAGEMENT_TIMEOUT_SECONDS,
                                params={"columns": "name,messages_ready,messages_unacknowledged,consumers"})
    except requests.RequestException as exc:
        return None, f"the management API at {where} did not answer ({type(exc).__name__})"
    if response.status_code in (401, 403):
        return None, (f"the management API at {where} refused broker_url's user ({response.status_code}): "
                      "it needs the monitoring or management tag")
    if response.status_code != 200:
        return None, f"the management API at {where} answered {response.status_code}"
    try:
        listed = {q["name"]: q for q in response.json()}
    except (ValueError, KeyError, TypeError):
        return None, f"the management API at {where} sent something that is not a queue list"
    depths = []
    for name, role in queue_roles(settings.queue_prefix):
        found = listed.get(name)
        depths.append(QueueDepth(name, role, int(found.get("messages_ready") or 0) if found else 0,
                                 int(found.get("messages_unacknowledged") or 0) if found else 0,
                                 int(found.get("consumers") or 0) if found else 0, found is not None))
    return depths, ""


def amqp_depths(settings: Settings) -> list[QueueDepth]:
    """Ready counts and consumers by passive declare (a missing queue is reported as empty)."""
    depths = []
    with _admin(settings) as connection:
        for name, role in queue_roles(settings.queue_prefix):
            method = rabbit.passive_declare(connection, name)
            if method is None:
                depths.append(QueueDepth(name, role, 0, None, 0, False))
            else:
                depths.append(QueueDepth(name, role, method.message_count, None, method.consumer_count, True))
    return depths


def queue_depths(settings: Settings) -> Depths:
    """Management API first, AMQP second; an unreachable broker gives `source=None` and the reason."""
    if settings.uses_stub_broker:
        return Depths(None, [], "broker_url is stub:// (the in-process broker has no queues to inspect)")
    found, why_not = management_depths(settings)
    try:
        live = amqp_depths(settings)
    except CliError as error:
        return Depths("management", found) if found is not None else Depths(None, [], str(error), why_not)
    if found is None:
        return Depths("amqp", live, management_error=why_not)
    for managed, fresh in zip(found, live):
        managed.ready, managed.exists = fresh.ready, managed.exists or fresh.exists
    return Depths("management", found)


# --- the DLQ's oldest entry -------------------------------------------------------------------------
def peek_oldest_dlq(settings: Settings) -> dict[str, Any] | None:
    """The DLQ's first entry, read without removing it (it goes back when the channel closes)."""
    try:
        body = rabbit.peek_first(settings, settings.dlq_name)
    except (BrokerUnreachable, BrokerRefused) as error:
        raise broker_failure(settings, error) from None
    if body is None:
        return None
    try:
        entry = json.loads(body)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    keys = ("id", "scene_id", "stage", "error_class", "message", "dead_lettered_at")
    oldest = {key: entry.get(key) for key in keys}
    stamp = entry.get("dead_lettered_at")
    oldest["age_seconds"] = round(time.time() - stamp, 1) if isinstance(stamp, (int, float)) else None
    return oldest


# --- everything -------------------------------------------------------------------------------------
def local_state(settings: Settings, now: float | None = None) -> dict[str, Any]:
    """Breakers, outcomes of the last hour and the last error, from the state file."""
    store = StateStore(settings.data_dir)
    now = time.time() if now is None else now
    counts = store.outcome_counts(now - RECENT_SECONDS)
    return {
        "breakers": store.breakers(),
        "synced_last_hour": {"total": sum(counts.values()), "by_outcome": counts},
        "last_error": store.last_error(),
    }


def gather_status(settings: Settings) -> dict[str, Any]:
    """The whole status as a JSON-ready dict (see `STATUS_SCHEMA` in the tests for the keys and types)."""
    depths = queue_depths(settings)
    dlq_depth = next((q for q in depths.queues if q.role == "dlq"), None)
    oldest = None
    if depths.source is not None and dlq_depth is not None and dlq_depth.ready:
        try:
            oldest = peek_oldest_dlq(settings)
        except CliError:
            oldest = None
    dlq_size = None
    if dlq_depth is not None and dlq_depth.ready is not None:
        dlq_size = dlq_depth.ready + (dlq_depth.unacked or 0)
    return {
        "generated_at": round(time.time(), 3),
        "broker": {
            "url": redact_url(settings.broker_url),
            "management_url": redact_url(settings.broker_management_url),
            "reachable": depths.source is not None,
            "source": depths.source,
            "unacked_known": depths.unacked_known,
            "error": depths.error,
            "management_error": depths.management_error,
        },
        "queue_prefix": settings.queue_prefix,
        "queues": [asdict(q) for q in depths.queues],
        "dlq": {"name": settings.dlq_name, "size": dlq_size, "oldest": oldest},
        **local_state(settings),
    }


def breaker_summary(breakers: list[dict[str, Any]], service: str) -> str:
    """"Plex breaker closed" or "Stash breaker open in 2 worker(s)"."""
    opened = [b for b in breakers if b["service"] == service and b["state"] != "closed"]
    name = "breaker" if service == "plex" else "Stash breaker"
    return f"{name} {'open in ' + str(len(opened)) + ' worker(s)' if opened else 'closed'}"


def one_line(status: dict[str, Any]) -> str:
    """The status in one line (for the Stash plugin task and logs)."""
    broker = status["broker"]
    if not broker["reachable"]:
        queues = f"broker unreachable ({broker['error']})"
    else:
        stages = [q for q in status["queues"] if q["role"] == "stage"]
        waiting = sum((q["ready"] or 0) for q in status["queues"] if q["role"] in ("stage", "delay"))
        unacked = sum((q["unacked"] or 0) for q in stages) if broker["unacked_known"] else None
        consumers = max((q["consumers"] or 0) for q in stages) if stages else 0
        queues = f"{waiting} queued, {unacked if unacked is not None else '?'} in progress, {consumers} worker consumer(s)"
    dlq = status["dlq"]
    dlq_text = f"DLQ {dlq['size'] if dlq['size'] is not None else '?'}"
    breaker = "; ".join(breaker_summary(status["breakers"], service) for service in ("plex", "stash"))
    synced = status["synced_last_hour"]
    return f"{queues}; {dlq_text}; {breaker}; {synced['total']} scene outcome(s) in the last hour"
