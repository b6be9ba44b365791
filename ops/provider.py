"""`stash2plex provider`: the Plex custom metadata provider over HTTP (Starlette on uvicorn).

Routes (the contract in the README's "Plex metadata provider" section):

    GET  /                                   MediaProvider (identifier tv.plex.agents.custom.stash2plex)
    POST /library/metadata/matches           match by guid, path (path_map reversed), relative path, file name
    GET  /library/metadata/{ratingKey}       one scene's Metadata (404 when Stash has no such scene)
    GET  /library/metadata/{ratingKey}/images
    GET  /images/scene/{id}/screenshot       image bytes, fetched from Stash with the ApiKey header
    GET  /images/performer/{id}
    GET  /healthz                            index size and Stash state (the container healthcheck)

Index hits are answered on the event loop; anything that may ask Stash runs in a worker thread
and is bounded by `provider_stash_timeout`. Nothing here logs a request line: misses and
failures are logged as events by `pipeline.provider.service`.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ops.common import CliError
from pipeline.broker_address import redact_url
from pipeline.config import Settings
from pipeline.logs import log_event
from pipeline.provider.documents import media_provider
from pipeline.provider.matching import MatchRequest
from pipeline.provider.service import DEFAULT_PAGE, RATING_KEY, ImageUnavailable, Page, ProviderService

logger = logging.getLogger("stash2plex.provider")

JSON_TYPE = "application/json"
MAX_BODY_BYTES = 64 * 1024
_ROOT = json.dumps(media_provider()).encode()


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=JSON_TYPE)


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _page(request: Request) -> Page:
    """X-Plex-Container-Start / -Size from the headers or the query (Plex sends either); size 20 by default."""
    values: dict[str, int] = {}
    for name, default in (("X-Plex-Container-Start", 0), ("X-Plex-Container-Size", DEFAULT_PAGE.size)):
        raw = request.headers.get(name) or request.query_params.get(name)
        try:
            values[name] = default if raw in (None, "") else int(raw)
        except ValueError:
            raise ValueError(f"{name} must be a whole number") from None
        if values[name] < 0:
            raise ValueError(f"{name} must not be negative")
    return Page(values["X-Plex-Container-Start"], values["X-Plex-Container-Size"])


def create_app(service: ProviderService, *, manage_service: bool = True) -> Starlette:
    """The ASGI app. With `manage_service`, the app starts and stops the service with the server."""
    settings = service.settings

    def base_url(request: Request) -> str:
        """Where Plex reaches us (for image URLs): `provider_public_url`, else the URL it used."""
        if settings.provider_public_url:
            return settings.provider_public_url
        return f"{request.url.scheme}://{request.headers.get('host') or request.url.netloc}"

    async def root(request: Request) -> Response:
        return _json(_ROOT)

    async def matches(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, "match request body too large")
        try:
            raw = json.loads(body or b"null")
        except ValueError:
            return _error(400, "the match request body is not JSON")
        if not isinstance(raw, dict):
            return _error(400, "the match request body must be a JSON object")
        try:
            match_request = MatchRequest.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            return _error(400, f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}")
        try:
            page = _page(request)
        except ValueError as exc:
            return _error(400, str(exc))
        base = base_url(request)
        answer = service.match_local(match_request, base, page)
        if answer is None:
            answer = await run_in_threadpool(service.match, match_request, base, page)
        return _json(answer)

    async def metadata(request: Request) -> Response:
        rating_key = request.path_params["rating_key"]
        if not RATING_KEY.match(rating_key):
            return _error(404, "no such item")
        base = base_url(request)
        answer = service.metadata_local(rating_key, base)
        if answer is None:
            answer = await run_in_threadpool(service.metadata, rating_key, base)
        return _json(answer) if answer is not None else _error(404, "no such item")

    async def images(request: Request) -> Response:
        rating_key = request.path_params["rating_key"]
        if not RATING_KEY.match(rating_key):
            return _error(404, "no such item")
        answer = await run_in_threadpool(service.images, rating_key, base_url(request))
        return _json(answer) if answer is not None else _error(404, "no such item")

    async def image(request: Request) -> Response:
        kind = "scene" if request.url.path.startswith("/images/scene/") else "performer"
        object_id = request.path_params["object_id"]
        if not RATING_KEY.match(object_id):
            return _error(404, "no such image")
        try:
            found = await run_in_threadpool(service.image, kind, object_id)
        except ImageUnavailable:
            return _error(502, "Stash did not hand over the image; try again later")
        if found is None:
            return _error(404, "no such image")
        return Response(found.content, media_type=found.content_type, headers={"Cache-Control": "public, max-age=3600"})

    async def healthz(request: Request) -> Response:
        return JSONResponse(service.health())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_service:
            await run_in_threadpool(service.start)
        log_event(logger, "provider_ready", scenes=len(service.index))
        try:
            yield
        finally:
            if manage_service:
                await run_in_threadpool(service.stop)

    routes = [
        Route("/", root, methods=["GET"]),
        Route("/library/metadata/matches", matches, methods=["POST"]),
        Route("/library/metadata/{rating_key}", metadata, methods=["GET"]),
        Route("/library/metadata/{rating_key}/images", images, methods=["GET"]),
        Route("/images/scene/{object_id}/screenshot", image, methods=["GET"]),
        Route("/images/performer/{object_id}", image, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def uvicorn_config(app: Any, host: str, port: int) -> Any:
    """uvicorn with httptools and uvloop when installed, no access log (one line per request is noise)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning",
                          loop="auto", http="auto", lifespan="on", timeout_keep_alive=75,
                          server_header=False)


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the provider in the foreground until SIGINT/SIGTERM."""
    import uvicorn

    listener = bind(host, port)
    service = ProviderService(settings)
    log_event(logger, "provider_starting", host=host, port=port, stash=redact_url(settings.stash_url))
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler that was
    # there before it: ours ends the process with status 0 (a stop asked for is not a failure).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _exit_quietly)
    try:
        uvicorn.Server(uvicorn_config(create_app(service), host, port)).run(sockets=[listener])
    finally:
        log_event(logger, "provider_stopped", host=host, port=port)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts: a busy port is one clear error, exit code 2."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                       fix="pick another --port (or provider_port), or stop what listens there", exit_code=2) from None
    listener.set_inheritable(True)
    return listener


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
