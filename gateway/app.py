"""Routes, handlers, the lifespan that starts one Kafka reader per topic, and error handling."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import plotly
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.catalog import load_catalog
from gateway.hub import Hub
from gateway.job_health import job_health
from gateway.kafka_io import TopicReader
from gateway.params import (
    BadRequest,
    UnknownStream,
    events_query,
    history_query,
    old_page_ticker,
    page_language,
    page_ticker,
)
from gateway.settings import Settings
from gateway.sse import SseResponse, watch_sends

log = logging.getLogger("gateway")

WEB = Path(__file__).resolve().parent.parent / "web"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
CATALOG_POLL_S = 5.0
ASSIGN_WAIT_S = 5.0  # a resuming client waits this long for a reader that is still starting
templates = Jinja2Templates(directory=WEB / "templates")


def _hub(request: Request) -> Hub:
    return request.app.state.hub


def _rows_json(rows: list[str]) -> str:
    return "[" + ",".join(rows) + "]"


# --- handlers ---


def _page(request: Request, template: str, base: str, **context: object) -> Response:
    settings: Settings = request.app.state.settings
    context = {
        "heartbeat_s": settings.heartbeat_s,
        "lang": page_language(request),
        "base": base,  # pages use relative URLs: they work behind a path prefix too
        **context,
    }
    headers = {**_PAGE_HEADERS, "Vary": "Accept-Language, Cookie"}
    return templates.TemplateResponse(request, template, context, headers=headers)


async def overview(request: Request) -> Response:
    ticker = old_page_ticker(request)
    if ticker:  # the old address of a ticker's page, `/?ticker=SBER`, still bookmarked
        return RedirectResponse(f"ticker/{ticker}", status_code=307)
    return _page(request, "overview.html", "./")


async def ticker_page(request: Request) -> Response:
    return _page(request, "ticker.html", "../", ticker=page_ticker(request))


async def plotly_js(request: Request) -> Response:
    return FileResponse(
        PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )


async def list_streams(request: Request) -> Response:
    hub = _hub(request)
    return JSONResponse({"streams": [s.spec.public() for s in hub.streams.values()]})


async def list_tickers(request: Request) -> Response:
    return JSONResponse({"tickers": _hub(request).tickers()})


async def history(request: Request) -> Response:
    query = history_query(request, _hub(request))
    rows, cursor = _hub(request).history(query.stream, query.ticker, query.limit)
    head = json.dumps(
        {"stream": query.stream, "ticker": query.ticker, "cursor": cursor}, separators=(",", ":")
    )
    # Rows are kept as JSON text: splice them in instead of parsing and encoding them again.
    body = head[:-1] + ',"rows":' + _rows_json([r.data for r in rows]) + "}"
    return Response(body, media_type="application/json")


async def events(request: Request) -> Response:
    hub = _hub(request)
    query = events_query(request, hub)
    if hub.clients >= hub.settings.max_clients:
        return _error(
            503,
            f"too many live clients (limit {hub.settings.max_clients}); retry later",
            {"Retry-After": "5"},
        )
    if query.cursor:
        await hub.wait_assigned(query.streams, ASSIGN_WAIT_S)
        await hub.wait_caught_up(query.cursor, ASSIGN_WAIT_S)
    return SseResponse(hub, hub.subscribe(query.streams, query.ticker, query.cursor))


async def healthz(request: Request) -> Response:
    ok, body = _hub(request).health()
    body["job"] = await job_health(request.app)  # does not change the status: streams still serve
    return JSONResponse(body, status_code=200 if ok else 503)


routes = [
    Route("/", overview),
    Route("/ticker/{ticker}", ticker_page),
    Route("/healthz", healthz),
    Route("/api/streams", list_streams),
    Route("/api/tickers", list_tickers),
    Route("/api/events", events),
    Route("/api/streams/{name}", history),
    Route("/api/streams/{name}/events", events),
    Route("/static/plotly.min.js", plotly_js),
    Mount("/static", StaticFiles(directory=WEB / "static"), name="static"),
]

_PAGE_HEADERS = {
    # Everything the page needs comes from this origin; plotly sets inline styles.
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:",
    "X-Content-Type-Options": "nosniff",
}


# --- errors: JSON for every failure, never a traceback ---


def _error(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: object
) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


async def _bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return _error(422, exc.message)


async def _unknown_stream(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UnknownStream)
    return _error(404, f"unknown stream {exc.name[:80]!r}", streams=exc.known)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path)
    return _error(500, "internal error; see the gateway log")


# --- middleware ---


class TokenAuth:
    """When a token is set, /api/* needs `Authorization: Bearer <token>` or `?token=<token>`."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token and scope["type"] == "http" and scope["path"].startswith("/api/"):
            request = Request(scope)
            header = request.headers.get("authorization", "")
            given = (
                header[7:]
                if header[:7].lower() == "bearer "
                else request.query_params.get("token", "")
            )
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                response = _error(401, "missing or wrong token", {"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# --- lifespan: readers per topic, catalog reloads ---


class Readers:
    def __init__(self, hub: Hub, loop: asyncio.AbstractEventLoop) -> None:
        self.hub = hub
        self.loop = loop
        self.readers: dict[str, TopicReader] = {}

    def start_missing(self) -> None:
        if not self.hub.settings.bootstrap:
            return
        for name, state in self.hub.streams.items():
            if name not in self.readers:
                self.readers[name] = reader = TopicReader(state.spec, self.hub, self.loop)
                reader.start()

    def stop(self, timeout_s: float = 3.0) -> None:
        for reader in self.readers.values():
            reader.stop()
        # A reader stuck connecting to a dead broker is a daemon thread: do not wait it out.
        deadline = time.monotonic() + timeout_s
        for reader in self.readers.values():
            reader.join(max(0.0, deadline - time.monotonic()))


async def _watch_catalog(hub: Hub, readers: Readers, path: Path) -> None:
    """Start readers for streams the runner adds later (`make reload`); changes need a restart."""
    seen = _mtime(path)
    while True:
        await asyncio.sleep(CATALOG_POLL_S)
        mtime = _mtime(path)
        if mtime == seen:
            continue
        seen = mtime
        added = hub.add_streams(load_catalog(path).values())
        if added:
            log.info("catalog: new streams %s", ", ".join(s.spec.name for s in added))
            readers.start_missing()


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    hub: Hub = app.state.hub
    readers = Readers(hub, asyncio.get_running_loop())
    readers.start_missing()
    watcher = asyncio.create_task(_watch_catalog(hub, readers, app.state.settings.catalog))
    send_watcher = asyncio.create_task(watch_sends(hub))
    try:
        yield
    finally:
        watcher.cancel()
        send_watcher.cancel()
        hub.close_all("gateway shutting down")
        await asyncio.to_thread(readers.stop)


def create_app(settings: Settings) -> Starlette:
    middleware = [Middleware(TokenAuth, token=settings.token)]
    if settings.cors_origins:
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET"],
                allow_headers=["Authorization", "Last-Event-ID"],
            ),
        )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            BadRequest: _bad_request,
            UnknownStream: _unknown_stream,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.state.settings = settings
    app.state.hub = Hub(settings, load_catalog(settings.catalog))
    return app
