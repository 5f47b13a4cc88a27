"""The page in a real headless Chromium, driven over the DevTools protocol, against a real gateway."""

from __future__ import annotations

import base64
import json
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
STREAMS = ["candles_1m", "indicators_1m", "signals", "anomalies", "liquidity_1s", "market_status"]
HEARTBEAT_S = 2
TOPIC_KEYS = [
    "candles_1m",
    "indicators_1m",
    "signals",
    "signals_live",
    "anomalies",
    "anomalies_live",
    "liquidity_1s",
    "market_status",
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
        and "trading" in state.get("phase", "")
    )
    return state if ready else None


def wait_drawn(page: Page, feed: Feed, ticker: str, what: str) -> dict:
    try:
        return wait_for(lambda: drawn(page, feed, ticker), 30, what, every_s=0.1)
    except AssertionError as exc:
        want = {s: feed.count(s, ticker) for s in ("candles_1m", "indicators_1m")}
        raise AssertionError(f"{exc}; page state {page.last_state}; sent {want}") from None


def connection_text(page: Page) -> str:
    return page.evaluate("document.getElementById('connection').textContent")


def test_dashboard_when_loaded_against_live_gateway_then_draws_everything_and_goes_live(
    sample_feed: Feed, chromium: Chromium, test_output_dir: Path
) -> None:
    gateway = start_gateway(sample_feed)
    try:
        navigated = time.monotonic()
        with dashboard(chromium, f"{gateway.url}/?ticker=SBER") as page:
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
        with dashboard(chromium, f"{gateway.url}/?ticker=GAZP") as page:
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
                assert state["events"] == wanted and state["candles"] == before["candles"] + 1
                time.sleep(0.1)  # poll interval
            # While the gateway was down the browser reported the refused connections; nothing else.
            assert [e for e in page.errors if "ERR_CONNECTION_REFUSED" not in e] == []
    finally:
        gateway.stop()
