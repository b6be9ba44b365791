"""Where messages go: the broker URL (parsed, redacted) and every queue name, in one place.

Used by the settings, the workers, the CLI and the Stash hook. The hook imports it on its fast path,
so this module uses the standard library's cheapest parts only: no `urllib.parse` (~5 ms with
`ipaddress`), no `typing`, no `dataclasses`. The URL parser agrees with `urllib.parse` and pika on
every URL the tests throw at it (tests/plugin/test_amqp.py).

Queue names (`<prefix>` is the `queue_prefix` setting):

    <prefix>.<actor>       a stage or maintenance actor's queue (dramatiq also makes .DQ and .XQ)
    <prefix>.<actor>.DQ    dramatiq's delay queue for it
    <prefix>.<actor>.XQ    dramatiq's own dead letters for it
    <prefix>.dlq           our dead-letter queue (entries with the reason, see pipeline/dlq.py)
"""

from __future__ import annotations

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
STUB_SCHEME = "stub"
DELAY_SUFFIX = ".DQ"
DEAD_SUFFIX = ".XQ"
DLQ_SUFFIX = "dlq"


class BrokerUrlError(ValueError):
    """The broker URL cannot be used; the message never repeats the URL (it may hold a password)."""


class BrokerAddress:
    """The parts of an `amqp://user:pass@host:port/vhost` URL, URL-decoded."""

    __slots__ = ("host", "port", "username", "password", "vhost", "tls")

    def __init__(self, host: str, port: int, username: str, password: str, vhost: str, tls: bool = False) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.vhost = vhost
        self.tls = tls

    def __repr__(self) -> str:
        return f"BrokerAddress({self.redacted()!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BrokerAddress):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def redacted(self) -> str:
        """The address as a URL with the password replaced by `***` (safe to log)."""
        scheme = "amqps" if self.tls else "amqp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        vhost = "" if self.vhost == "/" else self.vhost
        return f"{scheme}://{self.username}:***@{host}:{self.port}/{vhost}"


def unquote(text: str) -> str:
    """Percent-decode like `urllib.parse.unquote` (UTF-8, invalid escapes left as they are)."""
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    raw = text.encode("utf-8")
    while i < len(raw):
        if raw[i] == 0x25 and i + 2 < len(raw) and _is_hex(raw[i + 1:i + 3]):
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def is_stub(url: str) -> bool:
    """True for `stub://`: dramatiq's in-process broker (the demo without RabbitMQ)."""
    return url.strip().lower().startswith(STUB_SCHEME + "://")


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse an AMQP URL the way pika does (default guest/guest, port 5672/5671, vhost `/`).

    Raises `BrokerUrlError` (without echoing the URL) when it is unusable.
    """
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("amqp", "amqps"):
        raise BrokerUrlError("invalid broker URL: it must start with amqp:// or amqps://")
    for stop in "?#":
        rest = rest.partition(stop)[0]
    netloc, _slash, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        userinfo, hostport = "", netloc
    username, colon, password = userinfo.partition(":")
    if hostport.startswith("["):
        host, bracket, after = hostport[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise BrokerUrlError("invalid broker URL: bad IPv6 host")
        port_text = after[1:]
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        raise BrokerUrlError("invalid broker URL: no host")
    tls = scheme == "amqps"
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            raise BrokerUrlError("invalid broker URL: bad port")
        port = int(port_text)
    else:
        port = 5671 if tls else 5672
    return BrokerAddress(
        host=host.lower(),
        port=port,
        username=unquote(username) if at else "guest",
        password=unquote(password) if at and colon else "guest",
        vhost=unquote(path) if path else "/",
        tls=tls,
    )


def url_password(url: str) -> str | None:
    """The URL-decoded password of any `scheme://user:password@host` URL, or None when it has none."""
    _scheme, sep, rest = url.partition("://")
    netloc = rest.partition("/")[0].partition("?")[0].partition("#")[0] if sep else ""
    userinfo, at, _host = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    return unquote(password) if at and colon else None


def redact_url(url: str) -> str:
    """Any URL with its password and query string hidden, fit for logs and error messages.

    `amqp://bob:s%3Acret@rabbit/prod?x=1` -> `amqp://bob:***@rabbit/prod?***`; URLs without a
    password keep their user; a URL that cannot be a URL becomes `<invalid URL>`.
    """
    scheme, sep, rest = url.strip().partition("://")
    if not sep or not scheme:
        return "<invalid URL>"
    rest, hash_mark, _fragment = rest.partition("#")
    rest, question, _query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if colon else f"{user}@{hostport}"
    return f"{scheme}://{netloc}{slash}{path}{'?***' if question else ''}"


def check_queue_prefix(prefix: str) -> str:
    """`prefix` when dramatiq accepts queue names built from it (`[a-zA-Z_][a-zA-Z0-9._-]*`), else `BrokerUrlError`."""
    ok = bool(prefix) and prefix[0].isascii() and (prefix[0].isalpha() or prefix[0] == "_")
    ok = ok and all(c.isascii() and (c.isalnum() or c in "._-") for c in prefix)
    if not ok:
        raise BrokerUrlError(f"invalid queue prefix {prefix!r}: use letters, digits, '.', '_' or '-', "
                             "starting with a letter or '_'")
    return prefix


def queue_name(prefix: str, actor_name: str) -> str:
    """`<prefix>.<actor_name>`: the queue an actor listens on."""
    return f"{prefix}.{actor_name}"


def delay_queue(queue: str) -> str:
    return queue + DELAY_SUFFIX


def dead_queue(queue: str) -> str:
    return queue + DEAD_SUFFIX


def dlq_name(prefix: str) -> str:
    """`<prefix>.dlq`: our dead-letter queue."""
    return f"{prefix}.{DLQ_SUFFIX}"
