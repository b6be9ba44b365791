"""A no-op four-actor chain a -> b -> c -> d with the product's broker settings (publisher confirms):
the ceiling that bench_chain compares the real chain against. Run by bench_chain as
`dramatiq ops.bench.noop_chain -p 2 -t 4` with NOOP_PREFIX and NOOP_DONE_FILE set."""

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

PREFIX = os.environ.get("NOOP_PREFIX", "noop")
DONE_FILE = os.environ.get("NOOP_DONE_FILE", "/tmp/noop-done")
broker = RabbitmqBroker(url=os.environ.get("NOOP_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/"), confirm_delivery=True)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=f"{PREFIX}.d", max_retries=0)
def d(n: int) -> None:
    fd = os.open(DONE_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, b".")
    os.close(fd)


@dramatiq.actor(queue_name=f"{PREFIX}.c", max_retries=0)
def c(n: int) -> None:
    d.send(n)


@dramatiq.actor(queue_name=f"{PREFIX}.b", max_retries=0)
def b(n: int) -> None:
    c.send(n)


@dramatiq.actor(queue_name=f"{PREFIX}.a", max_retries=0)
def a(n: int) -> None:
    b.send(n)
