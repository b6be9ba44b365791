"""A minimal AMQP 0-9-1 publisher on the standard library, for the Stash hook's fast path.

Why it exists: `import pika` alone costs ~90 ms, and Stash runs one hook process per edited
scene, so the hook speaks just enough AMQP itself (socket + struct) to publish dramatiq messages
with publisher confirms:

    protocol header -> Connection.Start/StartOk (PLAIN) -> Tune/TuneOk -> Open/OpenOk
    -> Channel.Open -> Confirm.Select -> Queue.Declare -> Basic.Publish (+ header + body frames)
    -> Basic.Ack / Basic.Nack / Basic.Return per message -> Connection.Close

Every socket operation runs under one hard deadline (2 s by default, counted from `connect`).
Any failure -- connection refused, authentication refused, a Connection.Close or Channel.Close
from the broker, a nack, an unroutable message (`mandatory` + Basic.Return), the deadline --
surfaces as `PublishError`, whose message never contains the password.

The second half of the module is the dramatiq wire format (message body and queue arguments)
so that messages published here are exactly what a dramatiq `RabbitmqBroker` would enqueue.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Mapping, Sequence

from pipeline.broker_address import BrokerAddress, BrokerUrlError, check_queue_prefix, redact_url
from pipeline.broker_address import parse_broker_url as _parse_broker_url
from pipeline.stages import FETCH

# Deliberately not imported (fast path): dataclasses (~10 ms with inspect), typing (~5 ms),
# urllib.parse (~5 ms with ipaddress).

__all__ = [
    "AmqpPublisher",
    "BrokerAddress",
    "PublishError",
    "DEFAULT_TIMEOUT",
    "dramatiq_message_body",
    "dramatiq_queue_arguments",
    "fetch_scene_message",
    "fetch_scene_queue",
    "parse_broker_url",
    "redact_url",
    "uuid4_str",
]

DEFAULT_TIMEOUT = 2.0
"""Seconds allowed for connect + handshake + declare + publish + confirm, in total."""

_PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
_FRAME_METHOD = 1
_FRAME_HEADER = 2
_FRAME_BODY = 3
_FRAME_HEARTBEAT = 8
_FRAME_END = 0xCE
_FRAME_END_BYTE = b"\xce"
_DEFAULT_FRAME_MAX = 131072
_MIN_FRAME_MAX = 4096

# (class id, method id)
_CONNECTION_START = (10, 10)
_CONNECTION_SECURE = (10, 20)
_CONNECTION_TUNE = (10, 30)
_CONNECTION_OPEN_OK = (10, 41)
_CONNECTION_CLOSE = (10, 50)
_CONNECTION_CLOSE_OK = (10, 51)
_CONNECTION_BLOCKED = (10, 60)
_CONNECTION_UNBLOCKED = (10, 61)
_CHANNEL_OPEN_OK = (20, 11)
_CHANNEL_CLOSE = (20, 40)
_CHANNEL_CLOSE_OK = (20, 41)
_QUEUE_DECLARE_OK = (50, 11)
_BASIC_RETURN = (60, 50)
_BASIC_ACK = (60, 80)
_BASIC_NACK = (60, 120)
_CONFIRM_SELECT_OK = (85, 11)

_PRECONDITION_FAILED = 406
_PROPERTY_DELIVERY_MODE = 1 << 12  # basic properties flag bit for delivery-mode
_PERSISTENT = 2


class PublishError(Exception):
    """Publishing failed or was not confirmed. `reply_code` is the broker's code when it sent one."""

    def __init__(self, message: str, *, reply_code: int | None = None) -> None:
        super().__init__(message)
        self.reply_code = reply_code


# --------------------------------------------------------------------------- broker URL
# One parser and one redaction for the whole project: pipeline/broker_address.py (stdlib only).


def parse_broker_url(url: str) -> BrokerAddress:
    """`pipeline.broker_address.parse_broker_url`, failing with `PublishError` (the URL is never echoed)."""
    try:
        return _parse_broker_url(url)
    except BrokerUrlError as exc:
        raise PublishError(str(exc)) from None


# --------------------------------------------------------------------------- encoding helpers


def _shortstr(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 255:
        raise PublishError(f"AMQP short string longer than 255 bytes: {value[:40]!r}...")
    return bytes((len(raw),)) + raw


def _longstr(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _table(values: Mapping[str, object]) -> bytes:
    """Encode a field table with the value types pika uses (str -> 'S', bool -> 't', int -> 'I'/'l')."""
    out = bytearray()
    for key, value in values.items():
        out += _shortstr(key)
        if isinstance(value, bool):
            out += b"t" + (b"\x01" if value else b"\x00")
        elif isinstance(value, int):
            if -(2**31) <= value < 2**31:
                out += b"I" + struct.pack(">i", value)
            else:
                out += b"l" + struct.pack(">q", value)
        elif isinstance(value, str):
            out += b"S" + _longstr(value.encode("utf-8"))
        elif isinstance(value, bytes):
            out += b"S" + _longstr(value)
        elif isinstance(value, Mapping):
            out += b"F" + _table(value)
        else:
            raise PublishError(f"unsupported AMQP table value for {key!r}: {type(value).__name__}")
    return struct.pack(">I", len(out)) + bytes(out)


def _frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + _FRAME_END_BYTE


def _method(class_method: tuple[int, int], args: bytes = b"") -> bytes:
    return struct.pack(">HH", *class_method) + args


class _Reader:
    """Sequential decoder over one method frame's arguments."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, size: int) -> bytes:
        end = self._pos + size
        if end > len(self._data):
            raise PublishError("malformed frame from broker (truncated arguments)")
        chunk = self._data[self._pos:end]
        self._pos = end
        return chunk

    def octet(self) -> int:
        return self._take(1)[0]

    def short(self) -> int:
        return int(struct.unpack(">H", self._take(2))[0])

    def long(self) -> int:
        return int(struct.unpack(">I", self._take(4))[0])

    def longlong(self) -> int:
        return int(struct.unpack(">Q", self._take(8))[0])

    def shortstr(self) -> str:
        return self._take(self.octet()).decode("utf-8", "replace")

    def longstr(self) -> bytes:
        return self._take(self.long())

    def skip_table(self) -> None:
        self._take(self.long())


class _Method:
    """One method frame: its channel, (class id, method id) and an argument reader."""

    __slots__ = ("channel", "class_method", "args")

    def __init__(self, channel: int, class_method: tuple[int, int], args: _Reader) -> None:
        self.channel = channel
        self.class_method = class_method
        self.args = args


# --------------------------------------------------------------------------- publisher


class AmqpPublisher:
    """One short-lived AMQP connection with one confirm-mode channel.

    Use as a context manager::

        with AmqpPublisher(url) as publisher:           # connects (deadline starts here)
            publisher.declare_queue(name, arguments=...)
            failures = publisher.publish(name, [body1, body2])   # None = confirmed

    `publish` pipelines all bodies and then waits for their confirms; it returns one entry per
    body: `None` when the broker acked it, else the reason it was not accepted. Connection-level
    failures raise `PublishError`. Not thread-safe; meant for one process doing one job.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connection_name: str = "stash2plex hook",
    ) -> None:
        self.address = parse_broker_url(url)
        self.timeout = timeout
        self.connection_name = connection_name
        self.frame_max = _DEFAULT_FRAME_MAX
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._deadline = 0.0
        self._channel = 0
        self._next_channel = 1
        self._next_tag = 1
        self._closed_by_broker = False

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> AmqpPublisher:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def set_deadline(self, seconds: float) -> None:
        """Restart the hard deadline: every later socket operation must finish within `seconds`."""
        self._deadline = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once it has passed)."""
        return self._deadline - time.monotonic()

    def connect(self) -> None:
        """Open the TCP connection, run the AMQP handshake, open a channel in confirm mode."""
        self.set_deadline(self.timeout)
        where = self.address.redacted()
        host = self.address.host
        # an ASCII host as bytes: a str host makes getaddrinfo import the idna codec (~1 ms)
        target = (host.encode("ascii") if host.isascii() else host, self.address.port)
        try:
            sock = socket.create_connection(target, timeout=max(self.remaining(), 0.001))  # type: ignore[arg-type]
        except socket.timeout:
            raise PublishError(f"timed out connecting to {where}") from None
        except OSError as exc:
            raise PublishError(f"cannot connect to {where}: {exc.strerror or exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.address.tls:
            import ssl  # only for amqps:// URLs; it costs ~10 ms to import

            try:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.address.host)
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                raise PublishError(f"TLS handshake with {where} failed: {exc}") from None
        self._sock = sock
        try:
            self._handshake()
            self._channel = self._open_channel()
        except BaseException:
            self._abort()
            raise

    def close(self) -> None:
        """Close the connection cleanly (Connection.Close, wait briefly for Close-Ok); never raises."""
        sock = self._sock
        if sock is None:
            return
        try:
            if not self._closed_by_broker:
                self._deadline = time.monotonic() + max(min(self.remaining(), 0.5), 0.05)
                self._send(_frame(_FRAME_METHOD, 0, _method(
                    _CONNECTION_CLOSE, struct.pack(">H", 200) + _shortstr("bye") + struct.pack(">HH", 0, 0))))
                while True:
                    frame_type, channel, payload = self._read_frame()
                    if frame_type == _FRAME_METHOD and struct.unpack(">HH", payload[:4]) in (
                        _CONNECTION_CLOSE_OK, _CONNECTION_CLOSE):
                        break
        except PublishError:
            pass  # everything we sent was already confirmed (or reported); a slow Close-Ok changes nothing
        finally:
            self._abort()

    def _abort(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass  # the socket is being discarded either way
            self._sock = None

    # -- handshake -----------------------------------------------------------------------

    def _handshake(self) -> None:
        self._send(_PROTOCOL_HEADER)
        head = self._recv_exact(7)
        if head.startswith(b"AMQP"):
            self._recv_exact(1)
            raise PublishError(f"{self.address.redacted()} does not speak AMQP 0-9-1")
        start = self._expect(0, _CONNECTION_START, head=head)
        start.args.octet()
        start.args.octet()
        start.args.skip_table()  # server properties
        mechanisms = start.args.longstr().split()
        if b"PLAIN" not in mechanisms:
            raise PublishError(f"broker offers no PLAIN authentication (offers {b' '.join(mechanisms).decode()})")
        client_properties = {
            "product": "stash2plex-hook",
            "platform": "Python",
            "connection_name": self.connection_name,
            "capabilities": {
                "publisher_confirms": True,
                "basic.nack": True,
                "authentication_failure_close": True,
                "connection.blocked": True,
            },
        }
        response = b"\x00" + self.address.username.encode() + b"\x00" + self.address.password.encode()
        self._send_method(0, (10, 11), _table(client_properties) + _shortstr("PLAIN")
                          + _longstr(response) + _shortstr("en_US"))
        tune = self._expect(0, _CONNECTION_TUNE, also=_CONNECTION_SECURE)
        if tune.class_method == _CONNECTION_SECURE:
            raise PublishError("broker asked for a SASL challenge; only PLAIN is supported")
        channel_max = tune.args.short()
        frame_max = tune.args.long()
        tune.args.short()  # server heartbeat: ignored, this connection lives for milliseconds
        self.frame_max = max(min(frame_max or _DEFAULT_FRAME_MAX, _DEFAULT_FRAME_MAX), _MIN_FRAME_MAX)
        channel_max = min(channel_max or 16, 16)
        self._send_method(0, (10, 31), struct.pack(">HIH", channel_max, self.frame_max, 0))
        self._send_method(0, (10, 40), _shortstr(self.address.vhost) + _shortstr("") + b"\x00")
        self._expect(0, _CONNECTION_OPEN_OK)

    def _open_channel(self) -> int:
        channel = self._next_channel
        self._next_channel += 1
        self._send_method(channel, (20, 10), _shortstr(""))
        self._expect(channel, _CHANNEL_OPEN_OK)
        self._send_method(channel, (85, 10), b"\x00")
        self._expect(channel, _CONFIRM_SELECT_OK)
        self._next_tag = 1
        return channel

    # -- queue ---------------------------------------------------------------------------

    def declare_queue(
        self,
        queue: str,
        *,
        durable: bool = True,
        arguments: Mapping[str, object] | None = None,
        passive_on_conflict: bool = True,
    ) -> bool:
        """Declare `queue`. Returns True when declared as asked.

        If the queue already exists with other arguments (406 PRECONDITION_FAILED) and
        `passive_on_conflict` is set, the channel is reopened, the queue is checked passively
        and False is returned, so a publisher never fights the workers over queue arguments.
        """
        flags = 0x02 if durable else 0x00
        args = struct.pack(">H", 0) + _shortstr(queue) + bytes((flags,)) + _table(arguments or {})
        self._send_method(self._channel, (50, 10), args)
        try:
            self._expect(self._channel, _QUEUE_DECLARE_OK)
            return True
        except PublishError as exc:
            if exc.reply_code != _PRECONDITION_FAILED or not passive_on_conflict:
                raise
        self._channel = self._open_channel()
        passive = struct.pack(">H", 0) + _shortstr(queue) + b"\x01" + _table({})
        self._send_method(self._channel, (50, 10), passive)
        self._expect(self._channel, _QUEUE_DECLARE_OK)
        return False

    # -- publish -------------------------------------------------------------------------

    def publish(
        self,
        routing_key: str,
        bodies: Sequence[bytes],
        *,
        exchange: str = "",
        mandatory: bool = True,
    ) -> list[str | None]:
        """Publish persistent messages and wait for every confirm.

        Returns, per body, `None` if the broker confirmed it, else why not (nack, unroutable).
        Raises `PublishError` when the connection fails or the deadline passes first.
        """
        if not bodies:
            return []
        channel = self._channel
        max_body = self.frame_max - 8
        method_frame = _frame(_FRAME_METHOD, channel, _method(
            (60, 40), struct.pack(">H", 0) + _shortstr(exchange) + _shortstr(routing_key)
            + bytes((1 if mandatory else 0,))))
        out = bytearray()
        pending: dict[int, int] = {}
        by_body: dict[bytes, int] = {}
        for index, body in enumerate(bodies):
            out += method_frame
            out += _frame(_FRAME_HEADER, channel, struct.pack(
                ">HHQHB", 60, 0, len(body), _PROPERTY_DELIVERY_MODE, _PERSISTENT))
            for start in range(0, len(body), max_body):
                out += _frame(_FRAME_BODY, channel, body[start:start + max_body])
            pending[self._next_tag] = index
            by_body.setdefault(body, index)
            self._next_tag += 1
        self._send(bytes(out))

        results: list[str | None] = [None] * len(bodies)
        returned: dict[int, str] = {}
        while pending:
            method = self._expect(channel, _BASIC_ACK, also=_BASIC_NACK, also2=_BASIC_RETURN)
            if method.class_method == _BASIC_RETURN:
                code = method.args.short()
                text = method.args.shortstr()
                returned_exchange = method.args.shortstr()
                returned_key = method.args.shortstr()
                body = self._read_content(channel)
                reason = (f"unroutable: {code} {text} (exchange {returned_exchange!r}, "
                          f"routing key {returned_key!r})")
                if body in by_body:
                    returned[by_body[body]] = reason
                continue
            tag = method.args.longlong()
            multiple = bool(method.args.octet() & 0x01)
            done = [t for t in pending if t <= tag] if multiple else ([tag] if tag in pending else [])
            for t in done:
                index = pending.pop(t)
                if method.class_method == _BASIC_NACK:
                    results[index] = "nacked by the broker"
                else:
                    results[index] = returned.get(index)
        return results

    def _read_content(self, channel: int) -> bytes:
        """Read the content header + body frames that follow a Basic.Return."""
        frame_type, _, payload = self._read_frame()
        if frame_type != _FRAME_HEADER or len(payload) < 12:
            raise PublishError("malformed returned message from broker")
        size = int(struct.unpack(">Q", payload[4:12])[0])
        body = bytearray()
        while len(body) < size:
            frame_type, _, payload = self._read_frame()
            if frame_type != _FRAME_BODY:
                raise PublishError("malformed returned message body from broker")
            body += payload
        return bytes(body)

    # -- frame I/O -------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        sock = self._require_socket()
        remaining = self.remaining()
        if remaining <= 0:
            raise self._timeout_error()
        try:
            sock.settimeout(remaining)
            sock.sendall(data)
        except socket.timeout:
            raise self._timeout_error() from None
        except OSError as exc:
            raise PublishError(f"connection to {self.address.redacted()} lost while sending: "
                               f"{exc.strerror or exc}") from None

    def _send_method(self, channel: int, class_method: tuple[int, int], args: bytes) -> None:
        self._send(_frame(_FRAME_METHOD, channel, _method(class_method, args)))

    def _require_socket(self) -> socket.socket:
        if self._sock is None:
            raise PublishError("not connected to the broker")
        return self._sock

    def _timeout_error(self) -> PublishError:
        return PublishError(f"no answer from {self.address.redacted()} within {self.timeout:g} s")

    def _recv_exact(self, size: int) -> bytes:
        sock = self._require_socket()
        while len(self._buf) < size:
            remaining = self.remaining()
            if remaining <= 0:
                raise self._timeout_error()
            try:
                sock.settimeout(remaining)
                chunk = sock.recv(max(65536, size - len(self._buf)))
            except socket.timeout:
                raise self._timeout_error() from None
            except OSError as exc:
                raise PublishError(f"connection to {self.address.redacted()} lost: "
                                   f"{exc.strerror or exc}") from None
            if not chunk:
                raise PublishError(f"{self.address.redacted()} closed the connection "
                                   "(wrong credentials or vhost, or the broker is shutting down)")
            self._buf += chunk
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def _read_frame(self, head: bytes | None = None) -> tuple[int, int, bytes]:
        if head is None:
            head = self._recv_exact(7)
        frame_type, channel, size = struct.unpack(">BHI", head)
        payload = self._recv_exact(size + 1)
        if payload[-1] != _FRAME_END:
            raise PublishError("malformed frame from broker (bad frame end)")
        return frame_type, channel, payload[:-1]

    def _expect(
        self,
        channel: int,
        wanted: tuple[int, int],
        *,
        also: tuple[int, int] | None = None,
        also2: tuple[int, int] | None = None,
        head: bytes | None = None,
    ) -> _Method:
        """Read frames until the wanted method arrives, turning broker closes into PublishError."""
        accepted = {wanted, also, also2}
        while True:
            frame_type, frame_channel, payload = self._read_frame(head)
            head = None
            if frame_type == _FRAME_HEARTBEAT:
                continue
            if frame_type != _FRAME_METHOD:
                raise PublishError(f"unexpected frame type {frame_type} from broker")
            class_method = (int.from_bytes(payload[0:2], "big"), int.from_bytes(payload[2:4], "big"))
            reader = _Reader(payload[4:])
            if class_method == _CONNECTION_CLOSE:
                code, text = reader.short(), reader.shortstr()
                self._closed_by_broker = True
                try:
                    self._send_method(0, _CONNECTION_CLOSE_OK, b"")
                except PublishError:
                    pass  # the broker is closing anyway; the close reason is what matters
                raise PublishError(f"broker closed the connection: {code} {text}", reply_code=code)
            if class_method == _CONNECTION_BLOCKED:
                raise PublishError(f"broker is blocking publishers: {reader.shortstr()}")
            if class_method == _CONNECTION_UNBLOCKED:
                continue
            if class_method == _CHANNEL_CLOSE:
                code, text = reader.short(), reader.shortstr()
                self._send_method(frame_channel, _CHANNEL_CLOSE_OK, b"")
                raise PublishError(f"broker closed the channel: {code} {text}", reply_code=code)
            if class_method in accepted and frame_channel == channel:
                return _Method(frame_channel, class_method, reader)
            raise PublishError(f"unexpected AMQP method {class_method} on channel {frame_channel}")


# --------------------------------------------------------------------------- dramatiq wire format

def uuid4_str() -> str:
    """A random RFC 4122 version-4 UUID string (what `str(uuid.uuid4())` gives, without importing uuid)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def dramatiq_queue_arguments(queue_name: str) -> dict[str, object]:
    """The arguments dramatiq's RabbitmqBroker declares `queue_name` with (no max_priority)."""
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{queue_name}.XQ"}


def dramatiq_message_body(
    queue_name: str,
    actor_name: str,
    args: Sequence[object],
    *,
    message_id: str | None = None,
    timestamp_ms: int | None = None,
) -> bytes:
    """Encode a message the way `dramatiq.Message.encode()` does with the default JSON encoder."""
    fields = {
        "queue_name": queue_name,
        "actor_name": actor_name,
        "args": list(args),
        "kwargs": {},
        "options": {},
        "message_id": message_id or uuid4_str(),
        "message_timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
    }
    return json.dumps(fields, separators=(",", ":")).encode("utf-8")


def fetch_scene_queue(queue_prefix: str) -> str:
    """The queue the `fetch_scene` actor listens on: `<prefix>.fetch_scene`.

    Raises `PublishError` when the prefix would make a name dramatiq rejects.
    """
    try:
        return FETCH.queue(check_queue_prefix(queue_prefix))
    except BrokerUrlError as exc:
        raise PublishError(str(exc)) from None


def fetch_scene_message(scene_id: str, hook_type: str, queue_prefix: str) -> bytes:
    """The body of one `fetch_scene(scene_id, hook_type)` message."""
    return dramatiq_message_body(fetch_scene_queue(queue_prefix), FETCH.actor_name, [scene_id, hook_type])
