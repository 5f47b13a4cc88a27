"""The page in a real headless Chromium, driven over the DevTools protocol, against a real gateway."""

from __future__ import annotations

import base64
import json
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from gateway.sample_feed import load as load_recording
from gateway.sample_feed import publish as publish_recorded
from gateway.sample_feed import split_at
from stack.kafka import free_port
from tests.processes import Group
from tests.test_gateway_helpers import GatewayProcess, create_topics, delete_topics, wait_for

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.browser,
    # kafka-python 3.0.12 loads its protocol schemas with deprecated importlib.resources calls
    pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning"),
]

CHROMIUM = "/usr/bin/chromium"
STRATEGIES = ["ema_cross_12_26", "rsi_reversion_14", "bollinger_breakout_20"]
SUPER_CANDLES = [
    "tradestats_5m",
    "obstats_5m",
    "alerts_1m",
    "alerts_1m_outcomes",
    "alerts_1m_stats",
]
STREAMS = [
    "candles_1m",
    "indicators_1m",
    "signals",
    "anomalies",
    "liquidity_1s",
    "market_status",
    *SUPER_CANDLES,
    *STRATEGIES,
]
HEARTBEAT_S = 2
# How long a page may take to load and draw its history. Generous: on a machine shared with
# other jobs (load average 40-140 measured here) Chromium alone can take 20 s to answer one
# DevTools call; this is no speed test (the spike test's 2 s is measured in the browser).
PAGE_READY_S = 60
TOPIC_KEYS = [
    "candles_1m",
    "indicators_1m",
    "signals",
    "signals_live",
    "anomalies",
    "anomalies_live",
    "liquidity_1s",
    "market_status",
    *SUPER_CANDLES,
    "alerts_1m_live",
    *STRATEGIES,
]


class Page:
    """One tab, over its DevTools websocket; keeps every console error and uncaught exception."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.errors: list[str] = []
        self.requests: list[str] = []  # URLs the page requested (with the Network domain on)
        self.last_state: dict = {}  # the last state a wait looked at, for failure messages

    def send(self, method: str, timeout_s: float = 20.0, **params: Any) -> dict:
        self.next_id += 1
        call_id = self.next_id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._note(message)

    def _note(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(
                f"exception: {details.get('exception', {}).get('description') or details.get('text')}"
            )
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(
                "console.error: "
                + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def state(self) -> dict:
        return json.loads(self.evaluate("JSON.stringify(window.dashboardState || {})"))


class Chromium:
    def __init__(self, log_dir: Path) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="moex-test-chromium-"))
        self.port = free_port()
        self.log_file = log_dir / "chromium.log"
        self.group = Group(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--no-default-browser-check", "--window-size=1440,960",
                f"--user-data-dir={self.profile}", f"--remote-debugging-port={self.port}", "about:blank",
            ],
            self.log_file,
            # Chromium leaves an org.chromium.Chromium.* folder in $TMPDIR per start: keep it in
            # the profile, which close() removes.
            env={"TMPDIR": str(self.profile)},
        ).start()  # fmt: skip
        self.process = self.group.process

    def page_websocket(self) -> str:
        def page_target() -> str | None:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"chromium exited {self.process.returncode}: {self.log_file.read_text()[-2000:]}"
                )
            targets = httpx.get(f"http://127.0.0.1:{self.port}/json/list", timeout=2).json()
            return next((t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page"), None)

        return wait_for(page_target, 30, "chromium's DevTools endpoint")

    def close(self) -> None:
        self.group.stop(10)  # the browser and every helper process it started
        shutil.rmtree(self.profile, ignore_errors=True)


HELD_MINUTES = 1  # the recorded session's last minute, sent by the tests as "live" rows (the
# per-second streams are recorded for the last 90 s only: most of them stay in the history)


@dataclass
class Feed:
    """Topics filled with the job's recorded rows up to now, and the minutes held back."""

    catalog_file: Path
    catalog: dict
    bootstrap: str
    published: dict[str, list[dict]]
    held: dict[str, list[dict]]

    def count(self, stream: str, ticker: str) -> int:
        return sum(1 for row in self.published.get(stream, []) if row["ticker"] == ticker)

    def publish_next_minute(self, ticker: str) -> None:
        """The ticker's next recorded candle and its indicator row."""
        candle = min(
            (r for r in self.held["candles_1m"] if r["ticker"] == ticker),
            key=lambda r: r["window_end"],
        )
        step = {
            stream: [
                r
                for r in self.held[stream]
                if r["ticker"] == ticker and r["window_end"] == candle["window_end"]
            ]
            for stream in ("candles_1m", "indicators_1m")
        }
        for stream, rows in step.items():
            self.held[stream] = [r for r in self.held[stream] if r not in rows]
            self.published[stream] += rows
        publish_recorded(self.bootstrap, self.catalog, step)


@pytest.fixture(scope="module")
def sample_feed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Feed]:
    topics = dict(zip(TOPIC_KEYS, create_topics(kafka_bootstrap, len(TOPIC_KEYS)), strict=True))
    recording = load_recording()
    catalog = recording.catalog_for(topics)
    catalog_file = tmp_path_factory.mktemp("dashboard") / "catalog.json"
    catalog_file.write_text(json.dumps(catalog))
    now = datetime.now(UTC)
    rows = recording.shifted(now + timedelta(minutes=HELD_MINUTES))
    published, held = split_at(rows, int(now.timestamp() * 1000))
    publish_recorded(kafka_bootstrap, catalog, published)
    try:
        yield Feed(catalog_file, catalog, kafka_bootstrap, published, held)
    finally:
        delete_topics(kafka_bootstrap, list(topics.values()))


def start_gateway(feed: Feed, port: int | None = None) -> GatewayProcess:
    # Its log goes beside the catalog, in pytest's temporary folder.
    gateway = GatewayProcess(
        feed.bootstrap,
        feed.catalog_file,
        feed.catalog_file.parent,
        "--heartbeat",
        str(HEARTBEAT_S),
        port=port,
    ).start()
    gateway.wait_live(STREAMS)
    return gateway


@pytest.fixture
def chromium(test_output_dir: Path) -> Iterator[Chromium]:
    browser = Chromium(test_output_dir)
    try:
        yield browser
    finally:
        browser.close()


@contextmanager
def dashboard(chromium: Chromium, url: str, accept_language: str | None = None) -> Iterator[Page]:
    with connect(chromium.page_websocket(), max_size=None, open_timeout=10) as ws:
        page = Page(ws)
        for domain in ("Runtime", "Log", "Page", "Network"):
            page.send(f"{domain}.enable")
        if accept_language:
            page.send("Network.setExtraHTTPHeaders", headers={"Accept-Language": accept_language})
        page.send("Page.navigate", url=url)
        yield page


def drawn(page: Page, feed: Feed, ticker: str) -> dict | None:
    """The page's state once it shows every recorded row of `ticker` sent so far."""
    state = page.last_state = page.state()
    ready = (
        state.get("connection") == "live"
        and state.get("candles", 0) == feed.count("candles_1m", ticker) > 20
        and state.get("indicators", 0) == feed.count("indicators_1m", ticker)
        and state.get("liquidity") == 1
        and state.get("feed", 0) > 0
        and state.get("phase") == "trading"
    )
    return state if ready else None


def wait_drawn(page: Page, feed: Feed, ticker: str, what: str) -> dict:
    try:
        return wait_for(lambda: drawn(page, feed, ticker), PAGE_READY_S, what, every_s=0.1)
    except AssertionError as exc:
        want = {s: feed.count(s, ticker) for s in ("candles_1m", "indicators_1m")}
        raise AssertionError(
            f"{exc}; page state {page.last_state}; sent {want}; errors {page.errors}"
        ) from None


def connection_text(page: Page) -> str:
    return page.evaluate("document.getElementById('connection').textContent")


def test_dashboard_when_loaded_against_live_gateway_then_draws_everything_and_goes_live(
    sample_feed: Feed, chromium: Chromium, test_output_dir: Path
) -> None:
    gateway = start_gateway(sample_feed)
    try:
        navigated = time.monotonic()
        with dashboard(chromium, f"{gateway.url}/ticker/SBER") as page:
            state = wait_drawn(page, sample_feed, "SBER", "the page to draw history and go live")
            load_s = time.monotonic() - navigated
            assert state["ticker"] == "SBER"
            assert connection_text(page) == "live"

            # A row published now reaches the chart through the page's one EventSource.
            sample_feed.publish_next_minute("SBER")
            wait_for(
                lambda: page.state()["candles"] == state["candles"] + 1,
                15,
                "the live candle on the chart",
            )
            plotted = page.evaluate(
                "(() => { const d = document.getElementById('chart').data[0]; return [d.type, d.x.length]; })()"
            )
            assert plotted == ["candlestick", state["candles"] + 1]

            shot = page.send("Page.captureScreenshot", format="png")
            (test_output_dir / "dashboard.png").write_bytes(base64.b64decode(shot["data"]))
            measured = {"navigate_to_live_s": round(load_s, 2), **page.state()}
            (test_output_dir / "dashboard-state.json").write_text(json.dumps(measured, indent=1))
            assert page.errors == []
    finally:
        gateway.stop()


def test_dashboard_when_gateway_freezes_then_restarts_then_stale_reconnecting_live_without_repeats(
    sample_feed: Feed, chromium: Chromium, test_output_dir: Path
) -> None:
    gateway = start_gateway(sample_feed)
    try:
        with dashboard(chromium, f"{gateway.url}/ticker/GAZP") as page:
            wait_drawn(page, sample_feed, "GAZP", "the page to go live")
            # Frozen: the connection stays open but nothing arrives, not even a heartbeat.
            gateway.signal(signal.SIGSTOP)
            wait_for(
                lambda: connection_text(page) == "stale",
                4 * HEARTBEAT_S + 3,
                "'stale'",
                every_s=0.2,
            )
            gateway.signal(signal.SIGCONT)
            wait_for(
                lambda: connection_text(page) == "live",
                2 * HEARTBEAT_S + 3,
                "'live' again",
                every_s=0.2,
            )
            assert page.errors == []

            # Gone: the browser retries on its own; a new gateway resumes from the page's last id.
            before = page.state()
            gateway.stop()
            wait_for(
                lambda: connection_text(page) == "reconnecting", 10, "'reconnecting'", every_s=0.2
            )
            gateway = start_gateway(sample_feed, port=gateway.port)
            wait_for(
                lambda: connection_text(page) == "live", 15, "'live' after the restart", every_s=0.2
            )
            sample_feed.publish_next_minute("GAZP")
            wanted = before["events"] + 2  # the candle and its indicator row
            wait_for(lambda: page.state()["events"] >= wanted, 15, "the next candle and indicators")
            # Nothing was sent twice: watch for a while that no other row arrives.
            watch_until = time.monotonic() + 1.5
            while time.monotonic() < watch_until:
                state = page.state()
                assert state["events"] == wanted, [
                    (s["eventsByStream"], s["events"], s["candles"], s["lastEventId"])
                    for s in (before, state)
                ]
                assert state["candles"] == before["candles"] + 1
                time.sleep(0.1)  # poll interval
            # While the gateway was down the browser reported the refused connections; nothing else.
            assert [e for e in page.errors if "ERR_CONNECTION_REFUSED" not in e] == []
    finally:
        gateway.stop()


# --- the market overview at / ---


def msk_day(candle: dict) -> str:
    start = datetime.fromisoformat(candle["window_start"].replace("Z", "+00:00"))
    return (start + timedelta(hours=3)).date().isoformat()


def expected_overview(feed: Feed) -> dict[str, dict]:
    """Per ticker, what the overview must show, computed here from the job's rows as sent."""
    expected: dict[str, dict] = {}
    for ticker in sorted({r["ticker"] for r in feed.published["candles_1m"]}):
        candles = sorted(
            (r for r in feed.published["candles_1m"] if r["ticker"] == ticker),
            key=lambda r: r["window_start"],
        )
        # The session: the candles of the last candle's day in Moscow.
        candles = [r for r in candles if msk_day(r) == msk_day(candles[-1])]
        rsi = [
            r["rsi_14"]
            for r in sorted(feed.published["indicators_1m"], key=lambda r: r["window_end"])
            if r["ticker"] == ticker and r["rsi_14"] is not None
        ]
        spreads = [
            r["spread_bps"]
            for r in sorted(feed.published.get("liquidity_1s", []), key=lambda r: r["window_end"])
            if r["ticker"] == ticker
        ]
        expected[ticker] = {
            "last": candles[-1]["close"],
            "change": 100 * (candles[-1]["close"] - candles[0]["open"]) / candles[0]["open"],
            "volume": sum(r["volume"] for r in candles),
            "rsi": rsi[-1] if rsi else None,
            "spread": spreads[-1] if spreads else None,
            "candles": len(candles),
            "phase": "trading",
        }
    return expected


def overview_filled(page: Page, expected: dict[str, dict]) -> dict | None:
    state = page.last_state = page.state()
    shown = {row["ticker"]: row for row in state.get("tickers", [])}
    if state.get("connection") != "live" or set(shown) != set(expected):
        return None
    for ticker, want in expected.items():
        if shown[ticker]["candles"] != want["candles"] or shown[ticker]["spread"] is None:
            return None
    return state


def wait_overview(page: Page, expected: dict[str, dict], what: str) -> dict:
    try:
        return wait_for(lambda: overview_filled(page, expected), PAGE_READY_S, what, every_s=0.1)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; page state {page.last_state}; want {expected}; errors {page.errors}"
        ) from None


def event_sources(page: Page) -> int:
    page.state()  # reads the protocol messages queued so far
    return sum(1 for url in page.requests if "/api/events" in url)


def test_overview_when_loaded_then_every_ticker_with_values_from_the_jobs_rows_over_one_connection(
    sample_feed: Feed, chromium: Chromium, test_output_dir: Path
) -> None:
    expected = expected_overview(sample_feed)
    assert len(expected) == 4
    gateway = start_gateway(sample_feed)
    try:
        with dashboard(chromium, f"{gateway.url}/") as page:
            state = wait_overview(page, expected, "every ticker's row")
            shown = {row["ticker"]: row for row in state["tickers"]}
            for ticker, want in expected.items():
                got = shown[ticker]
                assert got["last"] == pytest.approx(want["last"], abs=1e-9), ticker
                assert got["change"] == pytest.approx(want["change"], rel=1e-9), ticker
                assert got["volume"] == want["volume"], ticker
                assert got["rsi"] == pytest.approx(want["rsi"], rel=1e-12), ticker
                assert got["spread"] == pytest.approx(want["spread"], rel=1e-12), ticker
                assert got["phase"] == "trading"
            # The table shows them: one row per ticker, its last price as text, a sparkline.
            cells = page.evaluate(
                "[...document.querySelectorAll('#rows tr')].map(tr => [tr.dataset.ticker,"
                " tr.querySelector('td.last').textContent,"
                " tr.querySelector('.spark polyline')?.getAttribute('points').split(' ').length])"
            )
            assert sorted(c[0] for c in cells) == sorted(expected)
            for ticker, last_text, points in cells:
                assert float(last_text.replace(",", "")) == pytest.approx(
                    expected[ticker]["last"], abs=0.051
                )
                assert points == expected[ticker]["candles"]
            assert event_sources(page) == 1, "the overview must use one SSE connection"
            # Sorting: by change, biggest first, then the other way round.
            page.evaluate("document.querySelector('th[data-sort=change]').click()")
            by_change = sorted(expected, key=lambda t: -expected[t]["change"])
            wait_for(lambda: page.state()["order"] == by_change, 5, "rows sorted by change")
            page.evaluate("document.querySelector('th[data-sort=change]').click()")
            wait_for(lambda: page.state()["order"] == by_change[::-1], 5, "the order reversed")
            shot = page.send("Page.captureScreenshot", format="png")
            (test_output_dir / "overview.png").write_bytes(base64.b64decode(shot["data"]))
            assert page.errors == []
    finally:
        gateway.stop()


def test_overview_when_a_row_is_clicked_then_the_tickers_page_opens_at_its_own_url(
    sample_feed: Feed, chromium: Chromium
) -> None:
    gateway = start_gateway(sample_feed)
    try:
        with dashboard(chromium, f"{gateway.url}/") as page:
            wait_overview(page, expected_overview(sample_feed), "rows")
            page.evaluate("document.querySelector('#rows tr[data-ticker=GAZP] td.phase').click()")
            wait_for(
                lambda: page.evaluate("location.pathname") == "/ticker/GAZP",
                PAGE_READY_S,
                "/ticker/GAZP",
            )
            state = wait_drawn(page, sample_feed, "GAZP", "GAZP's page drawn")
            assert state["ticker"] == "GAZP" and state["page"] == "ticker"
            # The address can be reloaded (bookmarked) and shows the same ticker.
            page.send("Page.reload")
            wait_drawn(page, sample_feed, "GAZP", "GAZP's page after reload")
            assert page.errors == []
    finally:
        gateway.stop()


def test_overview_when_a_spike_reaches_kafka_then_highlighted_within_2s_with_a_link_to_its_candle(
    sample_feed: Feed, chromium: Chromium, test_output_dir: Path
) -> None:
    recording = load_recording()
    spike = next(r for r in recording.rows["anomalies"] if r["kind"].startswith("spike"))
    gateway = start_gateway(sample_feed)
    try:
        with dashboard(chromium, f"{gateway.url}/") as page:
            wait_overview(page, expected_overview(sample_feed), "rows")
            assert page.state()["alerts"] == []
            # The job's spike row, moved to now (its id follows, so it is a new event).
            end_ms = int(time.time() * 1000)
            delta = end_ms - int(
                datetime.fromisoformat(spike["end_ts"].replace("Z", "+00:00")).timestamp() * 1000
            )
            injected = recording.moved(delta)["anomalies"][recording.rows["anomalies"].index(spike)]
            publish_recorded(sample_feed.bootstrap, sample_feed.catalog, {"anomalies": [injected]})
            in_kafka_ms = time.time() * 1000  # flushed: the broker has acknowledged it

            def alerted() -> dict | None:
                alerts = page.state()["alerts"]
                return next((a for a in alerts if a["id"] == injected["event_id"]), None)

            alert = wait_for(alerted, PAGE_READY_S, "the spike on the overview", every_s=0.05)
            latency_ms = alert["arrivedAt"] - in_kafka_ms
            (test_output_dir / "overview-spike.json").write_text(
                json.dumps({"kafka_to_overview_ms": round(latency_ms)})
            )
            assert latency_ms < 2000, f"spike shown {latency_ms:.0f} ms after reaching Kafka"
            row = next(r for r in page.state()["tickers"] if r["ticker"] == spike["ticker"])
            assert row["flash"] and row["event_kind"] == spike["kind"]
            assert (
                page.evaluate(
                    f"document.querySelector('#rows tr[data-ticker={spike['ticker']}]').className"
                )
                == "flash"
            )
            candle = (end_ms - 1) // 60_000 * 60_000
            candle_iso = datetime.fromtimestamp(candle / 1000, UTC).isoformat(
                timespec="milliseconds"
            )
            assert alert["href"] == f"ticker/{spike['ticker']}?at=" + candle_iso.replace(
                "+00:00", "Z"
            ).replace(":", "%3A")
            shot = page.send("Page.captureScreenshot", format="png")
            (test_output_dir / "overview-alert.png").write_bytes(base64.b64decode(shot["data"]))
            # The link opens that candle on the ticker page.
            page.evaluate("document.querySelector('#alerts a').click()")
            state = wait_for(
                lambda: (s := page.state()).get("page") == "ticker" and s.get("focus") and s,
                PAGE_READY_S,
                "the ticker page at the candle",
            )
            assert state["ticker"] == spike["ticker"]
            assert state["focus"] == candle_iso.replace("+00:00", "Z")
            wait_for(lambda: page.state().get("candles", 0) > 20, PAGE_READY_S, "the candles drawn")
            shot = page.send("Page.captureScreenshot", format="png")
            (test_output_dir / "ticker-focus.png").write_bytes(base64.b64decode(shot["data"]))
            assert page.errors == []
    finally:
        gateway.stop()


# --- Russian and English ---

# Latin words a Russian page may show: tickers, indicator names, the language buttons.
LATIN_ALLOWED = {"RSI", "EMA", "SMA", "MACD", "UTC", "RU", "EN", "SBER", "GAZP", "LKOH", "YDEX"}
PAGE_TEXTS = """(() => {
  const texts = [document.title];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement.closest('script, style')) continue;
    if (node.textContent.trim()) texts.push(node.textContent.trim());
  }
  for (const el of document.querySelectorAll('[title], [aria-label], [data-title]'))
    for (const name of ['title', 'aria-label', 'data-title'])
      if (el.getAttribute(name)) texts.push(el.getAttribute(name));
  return texts;
})()"""


def english_words(page: Page) -> list[str]:
    """Texts on the page (text, SVG text, tooltips, aria labels) with a Latin word beyond
    LATIN_ALLOWED."""
    return sorted(
        {
            text
            for text in page.evaluate(PAGE_TEXTS)
            if set(re.findall(r"[A-Za-z]{2,}", text)) - LATIN_ALLOWED
        }
    )


def test_pages_when_browser_prefers_russian_then_no_english_label_russian_numbers_and_a_toggle(
    sample_feed: Feed, chromium: Chromium, test_output_dir: Path
) -> None:
    expected = expected_overview(sample_feed)
    gateway = start_gateway(sample_feed)
    try:
        url = f"{gateway.url}/"
        with dashboard(chromium, url, accept_language="ru-RU,ru;q=0.9,en;q=0.5") as page:
            wait_overview(page, expected, "the Russian overview")
            assert page.state()["lang"] == "ru"
            assert english_words(page) == []
            # Decimal comma, thin-space thousands: LKOH trades above 1,000 roubles.
            last = page.evaluate(
                "document.querySelector('#rows tr[data-ticker=LKOH] td.last').textContent"
            )
            assert "\u202f" in last and "," in last, repr(last)
            assert float(last.replace("\u202f", "").replace(",", ".")) == pytest.approx(
                expected["LKOH"]["last"], abs=0.051
            )
            volume = page.evaluate(
                "document.querySelector('#rows tr[data-ticker=SBER] td:nth-child(5)').textContent"
            )
            assert volume == f"{expected['SBER']['volume']:,}".replace(",", "\u202f")
            # Times in Moscow time: the last row's time is the last candle's end, UTC+3.
            last_end = max(r["window_end"] for r in sample_feed.published["candles_1m"])
            msk = datetime.fromisoformat(last_end.replace("Z", "+00:00")) + timedelta(hours=3)
            assert page.evaluate("document.getElementById('last-update').textContent") == (
                f"последняя строка {msk:%H:%M:%S} МСК"
            )
            shot = page.send("Page.captureScreenshot", format="png")
            (test_output_dir / "overview-ru.png").write_bytes(base64.b64decode(shot["data"]))

            page.send("Page.navigate", url=f"{gateway.url}/ticker/SBER")
            wait_drawn(page, sample_feed, "SBER", "the Russian ticker page")
            assert page.state()["lang"] == "ru"
            assert english_words(page) == []
            shot = page.send("Page.captureScreenshot", format="png")
            (test_output_dir / "ticker-ru.png").write_bytes(base64.b64decode(shot["data"]))

            # The toggle: English, and it sticks on reload although the browser prefers Russian.
            page.evaluate("document.querySelector('[data-lang=en]').click()")
            wait_for(lambda: page.state().get("lang") == "en", 15, "the page in English")
            wait_drawn(page, sample_feed, "SBER", "the English ticker page")
            assert "Liquidity" in page.evaluate("document.body.textContent")
            page.send("Page.navigate", url=url)
            wait_overview(page, expected, "the English overview")
            assert page.state()["lang"] == "en"
            assert page.evaluate("document.documentElement.lang") == "en"
            assert page.errors == []
    finally:
        gateway.stop()


# --- the super candle and strategy panels ---


def latest(feed: Feed, stream: str, ticker: str, time_column: str = "window_end") -> dict:
    return max(
        (r for r in feed.published[stream] if r["ticker"] == ticker), key=lambda r: r[time_column]
    )


def en_number(value: float, digits: int = 0, signed: bool = False) -> str:
    """The page's English number format (Intl en-US): comma thousands, fixed decimals, and with
    `signed` a sign except on zero."""
    if round(value, digits) == 0:
        return f"{0:,.{digits}f}"
    return f"{value:{'+' if signed else ''},.{digits}f}"


def test_ticker_page_when_algopack_and_strategy_rows_sent_then_panels_show_the_latest_values(
    sample_feed: Feed, chromium: Chromium, test_output_dir: Path
) -> None:
    trades = latest(sample_feed, "tradestats_5m", "SBER")
    book = latest(sample_feed, "obstats_5m", "SBER")
    alerts = [r for r in sample_feed.published["alerts_1m"] if r["ticker"] == "SBER"]
    outcomes = [r for r in sample_feed.published["alerts_1m_outcomes"] if r["ticker"] == "SBER"]
    assert alerts and outcomes  # the recording has SBER alerts and their outcomes
    gateway = start_gateway(sample_feed)
    try:
        with dashboard(chromium, f"{gateway.url}/ticker/SBER") as page:
            wait_drawn(page, sample_feed, "SBER", "the ticker page")

            def panels_filled() -> dict | None:
                state = page.last_state = page.state()
                ready = (
                    state.get("superWindows") == sample_feed.count("tradestats_5m", "SBER")
                    and state.get("bookWindows") == sample_feed.count("obstats_5m", "SBER")
                    and state.get("alerts") == len(alerts)
                    and state.get("outcomes") == len(outcomes)
                    and all(state.get("strategies", {}).get(s) for s in STRATEGIES)
                )
                return state if ready else None

            wait_for(panels_filled, PAGE_READY_S, "both panels filled with every SBER row")

            def text(css: str) -> str:
                return page.evaluate(f"document.querySelector({json.dumps(css)}).textContent")

            assert text("#sc-vol-b") == en_number(trades["vol_b"])
            assert text("#sc-vol-s") == en_number(trades["vol_s"])
            assert text("#sc-disb") == en_number(trades["disb"], 2, signed=True)
            assert text("#sc-spread-bbo") == f"{book['spread_bbo']:.1f} bps"
            assert text("#sc-spread-1mio") == f"{book['spread_1mio']:.1f} bps"
            # The newest alerts, each with the outcomes the job wrote for it ("…" until then).
            newest_first = sorted(alerts, key=lambda r: r["alert_time"], reverse=True)
            shown = page.evaluate(
                "[...document.querySelectorAll('#sc-alerts tbody tr')].map((tr) =>"
                " [tr.dataset.alert, ...[...tr.cells].map((c) => c.textContent)])"
            )
            assert len(shown) == min(8, len(alerts))
            assert shown[0][0] in {
                a["event_id"] for a in alerts if a["alert_time"] == newest_first[0]["alert_time"]
            }
            by_alert = {(o["alert_id"], o["horizon_min"]): o["change_pct"] for o in outcomes}
            for alert_id, *cells in shown:
                assert alert_id in {a["event_id"] for a in newest_first[: len(shown) + 8]}
                for i, horizon in enumerate([5, 15, 30, 60]):
                    change = by_alert.get((alert_id, horizon))
                    want = "…" if change is None else en_number(change, 2, signed=True)
                    assert cells[3 + i] == want, (alert_id, horizon, cells)

            # The type's tooltip: the latest alerts_1m_stats row of each horizon, as the job wrote it.
            alert_id = shown[0][0]
            alert_type = next(a["alert_type"] for a in alerts if a["event_id"] == alert_id)
            stats = [r for r in sample_feed.published["alerts_1m_stats"] if r["ticker"] == "SBER"]
            tooltip = page.evaluate(
                f"document.querySelector('#sc-alerts tr[data-alert=\"{alert_id}\"] td.wrap').title"
            )
            for horizon in [5, 15, 30, 60]:
                rows = [
                    r
                    for r in stats
                    if r["alert_type"] == alert_type and r["horizon_min"] == horizon
                ]
                if rows:
                    st = max(rows, key=lambda r: r["outcome_time"])
                    assert f"after {horizon} min, this session: {st['rises']} rises" in tooltip
                    assert f"{st['falls']} falls" in tooltip
                else:
                    assert f"after {horizon} min" not in tooltip

            for strategy in STRATEGIES:
                own = latest(sample_feed, strategy, "SBER")
                portfolio = latest(sample_feed, strategy, "*")
                row = f'#st-table tr[data-strategy="{strategy}"]'
                assert text(f"{row} td.equity") == en_number(own["equity"])
                assert text(f"{row} td.position") == en_number(own["position"])
                assert text(f"{row} td.portfolio").startswith(en_number(portfolio["equity"]) + " (")
                fills = [
                    r
                    for r in sample_feed.published[strategy]
                    if r["ticker"] == "SBER" and r["fill_lots"]
                ]
                if fills:
                    fill = max(fills, key=lambda r: r["window_end"])
                    side = "buy" if fill["fill_lots"] > 0 else "sell"
                    assert text(f"{row} td.fill").startswith(f"{side} {abs(fill['fill_lots'])} × ")
            # A taller window for the picture (docs/ticker-panels.png): every panel in view.
            page.send(
                "Emulation.setDeviceMetricsOverride",
                width=1440,
                height=1500,
                deviceScaleFactor=1,
                mobile=False,
            )
            time.sleep(1)  # Plotly redraws on resize
            shot = page.send("Page.captureScreenshot", format="png")
            (test_output_dir / "ticker-panels.png").write_bytes(base64.b64decode(shot["data"]))
            assert page.errors == []
    finally:
        gateway.stop()


# --- the job health banner ---

BANNER = "(() => { const b = document.getElementById('banner'); return b.hidden ? null : b.textContent; })()"


def test_pages_when_healthz_job_not_running_or_restarted_then_banner_else_none(
    sample_feed: Feed, chromium: Chromium
) -> None:
    gateway = start_gateway(sample_feed)
    try:
        for path in ("/", "/ticker/SBER"):
            with dashboard(chromium, gateway.url + path) as page:
                wait_for(
                    lambda: page.state().get("connection") == "live", PAGE_READY_S, f"{path} live"
                )
                # No runner runs beside this gateway: /healthz says so, and so does the page
                # (its first health poll is at load).
                job = httpx.get(f"{gateway.url}/healthz", timeout=5).json()["job"]
                assert job == {"state": "NOT_RUNNING", "restarts": 0, "last_exception": None}
                wait_for(lambda: page.evaluate(BANNER) is not None, PAGE_READY_S, f"{path} banner")
                assert page.evaluate(BANNER).startswith("The Flink job is not running")
                # The field as /healthz carries it, handed to the page's own check.
                check = "window.MOEX.checkJob({job: %s})"
                page.evaluate(check % '{"state": "RUNNING", "restarts": 0, "last_exception": null}')
                assert page.evaluate(BANNER) is None
                page.evaluate(
                    check % '{"state": "RESTARTING", "restarts": 1, "last_exception": "boom"}'
                )
                assert page.evaluate(BANNER) == (
                    "The Flink job is restarting (1 restarts since start). Last error: boom"
                )
                page.evaluate(check % '{"state": "RUNNING", "restarts": 2, "last_exception": "x"}')
                assert page.evaluate(BANNER).startswith(
                    "The Flink job restarted 2 time(s) while this page was open; it is running now."
                )
                assert page.errors == []
    finally:
        gateway.stop()
