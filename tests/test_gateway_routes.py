"""HTTP routes, validation and access control, with Starlette's TestClient and no broker.

Rows are put into the hub directly, the way the Kafka readers do.
"""

from __future__ import annotations

import json
import string
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    # Starlette 1.10 asks for httpx2 under its TestClient; httpx (pinned) still works.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient` is deprecated")
    from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.hub import Hub
from gateway.rows import to_entry
from gateway.sample_feed import load as load_recording
from gateway.settings import Settings


def feed(hub: Hub, stream: str, rows: list[dict], partition: int = 0) -> None:
    """Ingest rows as if a reader had read them from `partition`."""
    state = hub.streams[stream]
    if not state.position:
        hub.on_assigned(stream, {0: 0, 1: 0, 2: 0}, {0: 0, 1: 0, 2: 0})
    offset = state.position[partition]
    entries = []
    for i, row in enumerate(rows):
        entry = to_entry(
            state.spec, partition, offset + i, row["ticker"].encode(), json.dumps(row).encode()
        )
        assert entry is not None
        entries.append(entry)
    hub.ingest(stream, entries, {partition: offset + len(rows)})


RECORDING = load_recording()


def candle(ticker: str, minute: int) -> dict:
    """The ticker's `minute`-th candle of the job's recorded session."""
    return [r for r in RECORDING.rows["candles_1m"] if r["ticker"] == ticker][minute]


@pytest.fixture
def base_settings(tmp_path: Path) -> Settings:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(RECORDING.catalog))
    return Settings(bootstrap=None, catalog=catalog, heartbeat_s=15)


@pytest.fixture
def client(base_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(base_settings)) as test_client:
        yield test_client


def hub_of(client: TestClient) -> Hub:
    return client.app.state.hub  # type: ignore[attr-defined]


def test_pages_when_requested_then_overview_at_root_and_ticker_page_at_its_own_url(
    client: TestClient,
) -> None:
    overview = client.get("/")
    assert overview.status_code == 200
    assert 'id="connection"' in overview.text and 'id="rows"' in overview.text
    assert '<base href="./">' in overview.text
    assert 'data-heartbeat-s="15' in overview.text
    assert "default-src 'self'" in overview.headers["content-security-policy"]
    page = client.get("/ticker/SBER")
    assert page.status_code == 200
    assert '<base href="../">' in page.text and "<title>MOEX live — SBER</title>" in page.text
    assert 'src="static/plotly.min.js"' in page.text and "cdn" not in page.text.lower()
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_pages_when_old_address_or_bad_ticker_then_redirect_or_422(client: TestClient) -> None:
    moved = client.get("/?ticker=GAZP", follow_redirects=False)
    assert moved.status_code == 307 and moved.headers["location"] == "ticker/GAZP"
    assert client.get("/?ticker=gazp").status_code == 422
    assert client.get("/ticker/sber").status_code == 422
    assert client.get("/ticker/SBER/extra").status_code == 404


@pytest.mark.parametrize(
    ("accept_language", "cookie", "lang"),
    [
        (None, None, "en"),
        ("ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7", None, "ru"),
        ("en-US,en;q=0.9,ru;q=0.8", None, "en"),
        ("de-DE,de;q=0.9,ru;q=0.5", None, "ru"),
        ("fr", None, "en"),
        ("ru;q=oops, en;q=0.2", None, "en"),
        ("ru-RU", "en", "en"),
        (None, "ru", "ru"),
        ("ru", "xx", "ru"),
    ],
)
def test_pages_when_language_preferred_then_html_lang_follows_cookie_then_accept_language(
    client: TestClient, accept_language: str | None, cookie: str | None, lang: str
) -> None:
    headers = {"Accept-Language": accept_language} if accept_language else {}
    if cookie:
        client.cookies.set("lang", cookie)
    try:
        for path in ("/", "/ticker/SBER"):
            page = client.get(path, headers=headers)
            assert f'<html lang="{lang}">' in page.text, path
            assert "Accept-Language" in page.headers["vary"]
    finally:
        client.cookies.clear()


def test_static_when_plotly_and_page_scripts_requested_then_served_from_this_host(
    client: TestClient,
) -> None:
    plotly_js = client.get("/static/plotly.min.js")
    assert plotly_js.status_code == 200
    assert plotly_js.headers["content-type"].startswith("text/javascript")
    assert "plotly.js v" in plotly_js.text[:200]
    for name in (
        "i18n.js",
        "common.js",
        "overview.js",
        "ticker.js",
        "dashboard.css",
        "columns.json",
    ):
        assert client.get(f"/static/{name}").status_code == 200, name
    assert client.get("/static/../gateway/app.py").status_code == 404


def test_streams_when_listed_then_catalog_with_builtin_market_status(client: TestClient) -> None:
    body = client.get("/api/streams").json()
    by_name = {s["name"]: s for s in body["streams"]}
    assert set(by_name) == {o["name"] for o in RECORDING.catalog["outputs"]} | {"market_status"}
    signals = by_name["signals"]
    assert (signals["topic"], signals["source_topic"], signals["dedup_key"]) == (
        "moex.signals",
        "moex.signals_live",
        "event_id",
    )
    assert by_name["candles_1m"]["grain"] == ["ticker", "window_end"]
    assert {"name": "close", "type": "DECIMAL(18, 6)"} in by_name["candles_1m"]["columns"]
    assert by_name["market_status"]["topic"] == "moex.market_status"


def test_history_when_rows_buffered_then_latest_of_the_ticker_in_order_with_cursor(
    client: TestClient,
) -> None:
    hub = hub_of(client)
    feed(hub, "candles_1m", [candle("SBER", m) for m in range(5)], partition=1)
    feed(hub, "candles_1m", [candle("GAZP", m) for m in range(3)], partition=1)
    body = client.get("/api/streams/candles_1m?ticker=SBER&limit=2").json()
    assert [r["close"] for r in body["rows"]] == [candle("SBER", m)["close"] for m in (3, 4)]
    assert body["rows"][0]["window_start"] == candle("SBER", 3)["window_start"][:-1] + ".000Z"
    assert body["cursor"] == "candles_1m:0.8.0"
    everything = client.get("/api/streams/candles_1m?limit=5000").json()["rows"]
    assert [r["ticker"] for r in everything] == ["SBER"] * 5 + ["GAZP"] * 3
    assert client.get("/api/tickers").json() == {"tickers": ["GAZP", "SBER"]}


def test_history_when_market_wide_status_then_included_for_every_ticker(client: TestClient) -> None:
    hub = hub_of(client)
    feed(
        hub,
        "market_status",
        [{"event_id": "1", "ticker": "*", "ts": 1764140400000, "phase": "trading"}],
    )
    feed(
        hub,
        "market_status",
        [{"event_id": "2", "ticker": "SBER", "ts": 1764140460000, "phase": "halted"}],
    )
    rows = client.get("/api/streams/market_status?ticker=SBER").json()["rows"]
    assert [(r["ticker"], r["phase"], r["ts"]) for r in rows] == [
        ("*", "trading", "2025-11-26T07:00:00.000Z"),
        ("SBER", "halted", "2025-11-26T07:01:00.000Z"),
    ]
    assert [
        r["ticker"] for r in client.get("/api/streams/market_status?ticker=GAZP").json()["rows"]
    ] == ["*"]


@pytest.mark.parametrize(
    "path", ["/api/streams/nope", "/api/streams/nope/events", "/api/events?streams=candles_1m,nope"]
)
def test_api_when_stream_unknown_then_404_json_naming_known_streams(
    client: TestClient, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"] == "unknown stream 'nope'"
    assert "candles_1m" in response.json()["streams"]


@pytest.mark.parametrize(
    "query",
    [
        "ticker=sber",
        "ticker=SB-ER",
        "ticker=ABCDEFGHIJKLM",
        "ticker=SBER&ticker=GAZP",
        "limit=0",
        "limit=5001",
        "limit=abc",
        "limit=1.5",
        "limit=-1",
        "limit=%EF%BC%95",
    ],
)
def test_history_when_ticker_or_limit_malformed_then_422_json_message(
    client: TestClient, query: str
) -> None:
    response = client.get(f"/api/streams/candles_1m?{query}")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("streams=", {}),
        ("streams=candles_1m&ticker=x", {}),
        ("streams=candles_1m&last_event_id=candles_1m:abc", {}),
        ("streams=candles_1m", {"Last-Event-ID": "candles_1m:1.2,candles_1m:3"}),
        ("streams=candles_1m", {"Last-Event-ID": "x" * 5000}),
    ],
)
def test_events_when_parameters_malformed_then_422_before_streaming(
    client: TestClient, query: str, headers: dict
) -> None:
    response = client.get(f"/api/events?{query}", headers=headers)
    assert response.status_code == 422
    assert "error" in response.json()


def test_events_when_client_cap_reached_then_503_with_retry_after(base_settings: Settings) -> None:
    with TestClient(create_app(base_settings.model_copy(update={"max_clients": 0}))) as full:
        response = full.get("/api/events?streams=candles_1m&ticker=SBER")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "too many" in response.json()["error"]


def test_api_when_token_configured_then_bearer_or_query_token_required(
    base_settings: Settings,
) -> None:
    with TestClient(create_app(base_settings.model_copy(update={"token": "s3cret"}))) as guarded:
        assert guarded.get("/api/streams").status_code == 401
        assert (
            guarded.get("/api/streams", headers={"Authorization": "Bearer wrong"}).status_code
            == 401
        )
        assert (
            guarded.get("/api/streams", headers={"Authorization": "Bearer s3cret"}).status_code
            == 200
        )
        assert guarded.get("/api/streams?token=s3cret").status_code == 200
        assert guarded.get("/api/streams").json() == {"error": "missing or wrong token"}
        # The page and the health probe stay open: the page passes ?token= on to its API calls.
        assert guarded.get("/").status_code == 200
        assert guarded.get("/healthz").status_code == 503


def test_cors_when_not_configured_then_no_cross_origin_access(
    client: TestClient, base_settings: Settings
) -> None:
    response = client.get("/api/streams", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in response.headers
    with TestClient(
        create_app(base_settings.model_copy(update={"cors_origins": ("https://desk.example",)}))
    ) as open_client:
        allowed = open_client.get("/api/streams", headers={"Origin": "https://desk.example"})
        refused = open_client.get("/api/streams", headers={"Origin": "https://elsewhere.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://desk.example"
    assert "access-control-allow-origin" not in refused.headers


def test_healthz_when_broker_never_answered_then_503_json(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["broker"]["reachable"] is False
    assert body["streams"]["candles_1m"]["topic"] == "moex.candles_1m"


def test_routes_when_unknown_path_or_method_then_json_errors(client: TestClient) -> None:
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    wrong_method = client.post("/api/streams")
    assert wrong_method.status_code == 405


# --- fuzzing: no input a client can send gives a 5xx (or a traceback) ---

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_tickerish = st.text(alphabet=string.ascii_letters + string.digits + "*-_. ", max_size=14)
_value = st.one_of(
    _text,
    _tickerish,
    st.integers(-10, 10**6).map(str),
    st.sampled_from(["candles_1m", "signals,nope", "candles_1m:1.2", ""]),
)
_params = st.dictionaries(
    st.sampled_from(["ticker", "limit", "streams", "last_event_id", "token", "x"]),
    _value,
    max_size=4,
)
_paths = st.one_of(
    st.sampled_from(
        [
            "/",
            "/healthz",
            "/api/streams",
            "/api/tickers",
            "/api/events",
            "/api/streams/candles_1m",
            "/api/streams/candles_1m/events",
        ]
    ),
    _text.map(lambda s: "/api/streams/" + quote(s, safe="")),
    _text.map(lambda s: "/api/streams/" + quote(s, safe="") + "/events"),
    _text.map(lambda s: "/static/" + quote(s, safe="/")),
    _text.map(lambda s: "/" + quote(s, safe="/")),
)


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    catalog = tmp_path_factory.mktemp("fuzz") / "catalog.json"
    catalog.write_text(json.dumps(RECORDING.catalog))
    # No live clients allowed: a request that passes validation answers 503 instead of streaming.
    app = create_app(Settings(bootstrap=None, catalog=catalog, max_clients=0))
    feed(app.state.hub, "candles_1m", [candle("SBER", m) for m in range(3)])
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=_paths,
    params=_params,
    last_event_id=st.one_of(
        st.none(), _tickerish, _text.filter(lambda s: "\n" not in s and "\r" not in s)
    ),
)
def test_api_when_fuzzed_paths_params_and_headers_then_never_5xx_except_full(
    fuzz_client: TestClient, path: str, params: dict, last_event_id: str | None
) -> None:
    headers = {"Last-Event-ID": last_event_id.encode()} if last_event_id is not None else {}
    response = fuzz_client.get(path, params=params, headers=headers)
    if response.status_code == 503:
        assert path in ("/healthz", "/api/events") or path.endswith("/events")
    else:
        assert response.status_code < 500, (path, params, response.text[:300])
    if path.startswith("/api/") and response.status_code >= 400:
        assert "error" in response.json()
