"""Every query parameter, path parameter and header the API reads is parsed and checked here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import Request

from gateway import cursor as cursors
from gateway.cursor import Cursor
from gateway.hub import Hub

TICKER = re.compile(r"[A-Z0-9]{1,12}")
LIMIT = re.compile(r"[0-9]{1,4}")
MAX_LIMIT = 5000
DEFAULT_LIMIT = 500


class BadRequest(Exception):
    """Client input the API cannot use: answered 422 with the message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownStream(Exception):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known


@dataclass(frozen=True)
class HistoryQuery:
    stream: str
    ticker: str | None
    limit: int


@dataclass(frozen=True)
class EventsQuery:
    streams: list[str]
    ticker: str | None
    cursor: Cursor | None


def _single(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"{name} given {len(values)} times; give it once")
    return values[0] if values else None


def _ticker(request: Request) -> str | None:
    ticker = _single(request, "ticker")
    if ticker is None or ticker == "":
        return None
    if not TICKER.fullmatch(ticker):
        raise BadRequest("ticker must be 1 to 12 capital letters or digits, e.g. SBER")
    return ticker


def _limit(request: Request) -> int:
    raw = _single(request, "limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _stream(hub: Hub, name: str) -> str:
    if name not in hub.streams:
        raise UnknownStream(name, sorted(hub.streams))
    return name


def _cursor(request: Request) -> Cursor | None:
    # The header wins: EventSource re-sends its original URL (with the first last_event_id)
    # and puts the newest id in the header.
    raw = request.headers.get("last-event-id")
    if raw is None:
        raw = _single(request, "last_event_id")
    if raw is None:
        return None
    try:
        return cursors.decode(raw)
    except cursors.CursorError as exc:
        raise BadRequest(f"bad event id: {exc}") from None


def history_query(request: Request, hub: Hub) -> HistoryQuery:
    return HistoryQuery(
        _stream(hub, request.path_params["name"]), _ticker(request), _limit(request)
    )


def events_query(request: Request, hub: Hub) -> EventsQuery:
    if "name" in request.path_params:
        names = [request.path_params["name"]]
    else:
        raw = _single(request, "streams")
        if not raw:
            raise BadRequest(
                "streams is required: a comma-separated list, e.g. streams=candles_1m,signals"
            )
        names = list(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
        if not names:
            raise BadRequest("streams names no stream")
    return EventsQuery([_stream(hub, n) for n in names], _ticker(request), _cursor(request))


# --- the pages ---

PAGE_LANGUAGES = ("en", "ru")
_LANGUAGE_RANGE = re.compile(
    r"\s*([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]{1,5}))?\s*"
)


def page_ticker(request: Request) -> str:
    ticker = request.path_params["ticker"]
    if not TICKER.fullmatch(ticker):
        raise BadRequest("ticker must be 1 to 12 capital letters or digits, e.g. /ticker/SBER")
    return ticker


def old_page_ticker(request: Request) -> str | None:
    return _ticker(request)


def page_language(request: Request) -> str:
    """The `lang` cookie the page's toggle sets, else the best of Accept-Language, else English."""
    chosen = request.cookies.get("lang")
    if chosen in PAGE_LANGUAGES:
        return chosen
    best, best_q = "en", 0.0
    for part in request.headers.get("accept-language", "")[:500].split(","):
        match = _LANGUAGE_RANGE.fullmatch(part)
        if not match:
            continue
        try:
            q = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            continue
        language = match.group(1).lower()
        if language in PAGE_LANGUAGES and q > best_q:
            best, best_q = language, q
    return best
