"""Shared plumbing for the test emulators: a threaded HTTP server with fault injection.

Each emulator subclasses `EmulatorHandler` and registers routes; `EmulatorServer` runs it on a
background thread on 127.0.0.1 and can be taken down and brought back up on the same port
(connection refused while down), which is how tests simulate an outage.

An emulator run as its own process (`python -m tests.emulators.plex|stash`, see `serve_until_stopped`)
is controlled with signals, so no HTTP route exists that a client could hit by accident: SIGUSR1 takes
it down (connection refused, keep-alive connections dropped, state kept) or brings it back up on the
same port, and prints `<name> emulator down|up` once it has; SIGTERM/SIGINT stop it. Its data is
edited through its own API (Stash's `sceneUpdate` mutation) and read the same way (Plex's
`/library/metadata/{ids}`), as a user and a client would.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Self
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Fault:
    """One injected fault: answer `status` (or stall `delay` seconds) for the next `remaining` matches."""

    remaining: int
    status: int | None = None
    delay: float = 0.0
    path_prefix: str = ""
    method: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method != method:
            return False
        return path.startswith(self.path_prefix)


class FaultInjector:
    """Thread-safe list of pending faults, consumed in order by matching requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        *,
        path_prefix: str = "",
        method: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `count` matching requests with `status` (e.g. 401, 404, 429, 500, 503)."""
        with self._lock:
            self._faults.append(Fault(count, status, 0.0, path_prefix, method, headers or {}))

    def rate_limit_next(self, count: int = 1, retry_after: float = 1, *, path_prefix: str = "") -> None:
        """Answer the next `count` matching requests with 429 and a Retry-After header."""
        self.fail_next(count, 429, path_prefix=path_prefix, headers={"Retry-After": f"{retry_after:g}"})

    def stall_next(self, count: int = 1, delay: float = 5.0, *, path_prefix: str = "", method: str | None = None) -> None:
        """Hold the next `count` matching requests for `delay` seconds before answering normally (a timeout)."""
        with self._lock:
            self._faults.append(Fault(count, None, delay, path_prefix, method))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None


@dataclass
class Request:
    """What the emulator saw, for assertions: method, path, query pairs and body size."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes

    def param(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None


Route = Callable[["EmulatorHandler", Request], tuple[int, dict[str, str], bytes]]


class EmulatorHandler(BaseHTTPRequestHandler):
    """Dispatches to `server.emulator.handle(request)`, after faults and request logging."""

    protocol_version = "HTTP/1.1"
    # Without this a keep-alive client waits ~40 ms per request (Nagle meets delayed ACK).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return  # tests read `emulator.requests`, not stderr

    def _dispatch(self) -> None:
        emulator: Emulator = self.server.emulator  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qsl(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        emulator.record(request)
        fault = emulator.faults.take(request.method, request.path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            self._send(fault.status, {"Content-Type": "text/plain", **fault.headers}, b"")
            return
        try:
            status, headers, payload = emulator.handle(request)
        except Exception as exc:  # an emulator bug must show up as a 500 with its text, not a hung client
            status, headers, payload = 500, {"Content-Type": "text/plain"}, repr(exc).encode()
        self._send(status, headers, payload)

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload and self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up (its timeout fired); nothing to answer

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _dispatch


SHUTDOWN_POLL_SECONDS = 0.05  # stop()/go_down() take ~50 ms instead of the default 0.5 s


class _Server(ThreadingHTTPServer):
    """Threaded server that remembers open client sockets, so an outage also drops keep-alive ones."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        with self.sockets_lock:
            self.open_sockets.add(conn)
        return conn, address

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for conn in sockets:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue  # already closed by the client


class Emulator:
    """Base for a stateful emulator: subclasses implement `handle(request)`."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.faults = FaultInjector()
        self.requests: list[Request] = []
        self.request_counts: Counter[str] = Counter()
        self._record_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> Self:
        server = _Server((self.host, self.port), EmulatorHandler)
        server.emulator = self  # type: ignore[attr-defined]
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
                                        name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and open connections: refused until `start()` again."""
        server = self._server
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.drop_connections()
        self._server = None

    def go_down(self) -> None:
        self.stop()

    def come_up(self) -> None:
        self.start()

    @property
    def is_up(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- bookkeeping -----------------------------------------------------------------------
    def record(self, request: Request) -> None:
        with self._record_lock:
            self.requests.append(request)
            self.request_counts[f"{request.method} {self.route_name(request)}"] += 1

    def route_name(self, request: Request) -> str:
        """A short name for counting requests by kind; subclasses refine it."""
        return request.path

    def reset_requests(self) -> None:
        with self._record_lock:
            self.requests.clear()
            self.request_counts.clear()

    def handle(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError


def json_response(status: int, payload: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_until_stopped(emulator: Emulator, name: str, poll_seconds: float = 0.05) -> None:
    """Serve `emulator` in the foreground: SIGUSR1 toggles down/up (an outage), SIGTERM/SIGINT stop it."""
    stopping = threading.Event()
    toggle = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    signal.signal(signal.SIGUSR1, lambda *_: toggle.set())
    emulator.start()
    print(f"{name} emulator listening on {emulator.url}", flush=True)
    try:
        while not stopping.wait(poll_seconds):
            if toggle.is_set():
                toggle.clear()
                if emulator.is_up:
                    emulator.go_down()
                else:
                    emulator.come_up()
                print(f"{name} emulator {'up' if emulator.is_up else 'down'}", flush=True)
    finally:
        emulator.stop()
