"""RabbitMQ definitions loaded at boot (compose): the account from `.env` and every queue of a prefix.

    python -m ops.rabbit_definitions --out DIR     # writes DIR/00-account.json and DIR/10-queues.json

RabbitMQ's `load_definitions` (ops/rabbitmq/rabbitmq.conf) points at that folder. When definitions
are loaded at boot RabbitMQ creates no default user, so `guest` never exists: the one account is
`RABBITMQ_USER` / `RABBITMQ_PASSWORD` (salted SHA-256, RabbitMQ's own hashing; the password itself
is never written). The queues are declared with exactly the arguments the code declares them with
(dramatiq's stage queues with their `.DQ`/`.XQ`, and the durable `<prefix>.dlq` of pipeline/dlq.py),
so a worker's or the CLI's declaration never fails with PRECONDITION_FAILED.
`ops/rabbitmq/definitions.json` is the output for the default settings (checked by a test).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from pipeline.broker_address import dead_queue, delay_queue, dlq_name, queue_name
from pipeline.config import Settings, load_settings
from pipeline.dlq import dlq_arguments, synced_queue_arguments
from pipeline.stages import MAINTENANCE_QUEUE, STAGES

VHOST = "/"
ACCOUNT_FILE = "00-account.json"
QUEUES_FILE = "10-queues.json"


def dramatiq_dead_message_ttl() -> int:
    """The `x-message-ttl` dramatiq gives its `.XQ` queues (env `dramatiq_dead_message_ttl`, default 7 days)."""
    from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL

    return int(DEAD_MESSAGE_TTL)


def rabbit_password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt + sha256(salt + password)), 4-byte salt."""
    salt = secrets.token_bytes(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def account_definitions(user: str, password: str, vhost: str = VHOST) -> dict[str, Any]:
    """The vhost and one administrator with every permission on it."""
    if not user or not password:
        raise ValueError("RABBITMQ_USER and RABBITMQ_PASSWORD must both be set (there is no guest account)")
    if user == "guest":
        raise ValueError("RABBITMQ_USER must not be guest")
    return {
        "users": [{"name": user, "password_hash": rabbit_password_hash(password),
                   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"], "limits": {}}],
        "vhosts": [{"name": vhost}],
        "permissions": [{"user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}],
    }


def _queue(name: str, arguments: dict[str, Any], vhost: str) -> dict[str, Any]:
    return {"name": name, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": arguments}


def queue_definitions(settings: Settings, vhost: str = VHOST) -> dict[str, Any]:
    """Every queue of `settings.queue_prefix`, with the arguments dramatiq and pipeline/dlq.py declare."""
    queues = []
    for actor in (*(stage.actor_name for stage in STAGES), MAINTENANCE_QUEUE):
        queue = queue_name(settings.queue_prefix, actor)
        dead_lettered = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead_queue(queue)}
        queues.append(_queue(queue, dead_lettered, vhost))
        queues.append(_queue(delay_queue(queue), dead_lettered, vhost))
        queues.append(_queue(dead_queue(queue), {"x-message-ttl": dramatiq_dead_message_ttl()}, vhost))
    queues.append(_queue(dlq_name(settings.queue_prefix), dlq_arguments(settings), vhost))
    queues.append(_queue(f"{dlq_name(settings.queue_prefix)}.synced", synced_queue_arguments(settings), vhost))
    return {"queues": queues}


def write_definitions(out: Path, settings: Settings, user: str, password: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in ((ACCOUNT_FILE, account_definitions(user, password)),
                          (QUEUES_FILE, queue_definitions(settings))):
        path = out / name
        path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        path.chmod(0o644)  # RabbitMQ runs as its own user; the file holds a salted hash, not the password
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write RabbitMQ boot definitions (account from the environment, queues).")
    parser.add_argument("--out", type=Path, required=True, help="folder that rabbitmq.conf's load_definitions reads")
    args = parser.parse_args(argv)
    try:
        written = write_definitions(args.out, load_settings(), os.environ.get("RABBITMQ_USER", ""),
                                    os.environ.get("RABBITMQ_PASSWORD", ""))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
