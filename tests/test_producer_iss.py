"""MOEX ISS: recorded responses (tests/fixtures/iss) -> normalised records; the poller's paging,
de-duplication, spacing and backoff on a fake clock. Never touches the network."""

from __future__ import annotations

import json
import urllib.error
from decimal import Decimal
from itertools import islice
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from hypothesis import given, settings
from hypothesis import strategies as st

from producer.iss import IssPoller, parse_document, parse_text
from producer.records import Book, Reject, Status, Trade, record_json

FIXTURES = Path(__file__).parent / "fixtures" / "iss"
NOW = 1_795_676_400_000  # 2026-11-26 10:00 MSK; the fixtures are of 2026-11-25
OPEN = 1_795_590_000_000  # 2026-11-25 10:00:00 MSK in epoch ms


def parse_fixture(name: str) -> list[Trade | Book | Status | Reject]:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return list(parse_text(text, f"replay:{name}", NOW))


def test_iss_trades_when_fixture_parsed_then_expected_normalised_trades() -> None:
    assert [record_json(r) for r in parse_fixture("sber_trades_start0.json")] == [
        '{"event_id":"SBER:T:15123400001","ticker":"SBER","board":"TQBR",'
        f'"trade_id":15123400001,"ts":{OPEN},"price":306.50,"qty":1520,"side":"B"}}',
        '{"event_id":"SBER:T:15123400017","ticker":"SBER","board":"TQBR",'
        f'"trade_id":15123400017,"ts":{OPEN + 1000},"price":306.52,"qty":10,"side":"B"}}',
        '{"event_id":"SBER:T:15123400018","ticker":"SBER","board":"TQBR",'
        f'"trade_id":15123400018,"ts":{OPEN + 1000},"price":306.51,"qty":3,"side":"S"}}',
        '{"event_id":"SBER:T:15123400042","ticker":"SBER","board":"TQBR",'
        f'"trade_id":15123400042,"ts":{OPEN + 2000},"price":306.55,"qty":25,"side":"B"}}',
        '{"event_id":"SBER:T:15123400043","ticker":"SBER","board":"TQBR",'
        f'"trade_id":15123400043,"ts":{OPEN + 2000},"price":306.50,"qty":2,"side":"S"}}',
    ]


def test_iss_orderbook_when_fixture_parsed_then_sides_sorted_best_first() -> None:
    (book,) = parse_fixture("sber_orderbook.json")
    assert book == Book(
        "SBER",
        OPEN + 4000,  # from SEQNUM 20261125100004 (Moscow time)
        20261125100004,
        tuple((Decimal(p), q) for p, q in [("306.52", 150), ("306.51", 640), ("306.50", 2210),
                                           ("306.48", 75), ("306.45", 930)]),
        tuple((Decimal(p), q) for p, q in [("306.53", 87), ("306.55", 422), ("306.56", 95),
                                           ("306.58", 310), ("306.60", 1204)]),
    )  # fmt: skip


def test_iss_marketdata_when_fixture_parsed_then_phase_of_the_security() -> None:
    assert parse_fixture("sber_marketdata.json") == [Status("SBER", OPEN + 5000, "trading")]


def test_iss_bad_rows_when_parsed_then_each_rejected_with_reason_and_good_row_kept() -> None:
    items = parse_fixture("bad_trades.json")
    rejects = [i for i in items if type(i) is Reject]
    assert [(r.source.rsplit(":", 1)[-1], r.reason) for r in rejects] == [
        ("trades[0]", "PRICE: price 306.505 not on tick grid 0.01"),
        ("trades[1]", "unknown ticker 'XXXX'"),
        ("trades[2]", "qty -4 is not positive"),
        ("trades[3]", "missing PRICE"),
        ("trades[4]", "row has 5 values for 15 columns"),
        ("trades[5]", "BUYSELL must be 'B' or 'S', got 'X'"),
    ]
    # The payload is the row as received, numbers as they were written.
    assert '"PRICE":306.505,' in rejects[0].payload
    assert [i.trade_id for i in items if type(i) is Trade] == [15123400107]
    (crossed,) = parse_fixture("crossed_orderbook.json")
    assert crossed.reason == "crossed book: best bid 306.52 >= best ask 306.50"


def test_iss_document_when_no_known_block_then_one_reject() -> None:
    (reject,) = parse_document({"securities": {"columns": [], "data": []}}, "x", NOW)
    assert reject.reason == "no trades, orderbook or marketdata block"
    (reject,) = parse_text("<html>502 Bad Gateway</html>", "x", NOW)
    assert reject.reason.startswith("bad JSON")


ISS_COLUMNS = [
    "TRADENO", "TRADETIME", "BOARDID", "SECID", "PRICE", "QUANTITY", "BUYSELL", "SYSTIME",
    "TRADEDATE", "SEQNUM", "UPDATETIME", "TRADINGSTATUS",
]  # fmt: skip
iss_values = (
    st.none()
    | st.integers(-5, 20261125235959)
    | st.decimals(allow_nan=True, places=3)
    | st.text(max_size=20)
    | st.sampled_from(
        ["SBER", "TQBR", "B", "S", "T", "2026-11-25", "10:00:01", "2026-11-25 10:00:01", "306.5"]
    )
    | st.lists(st.integers(), max_size=2)
)
iss_block = st.fixed_dictionaries(
    {
        "columns": st.lists(st.sampled_from(ISS_COLUMNS), max_size=8, unique=True),
        "data": st.lists(st.lists(iss_values, max_size=9), max_size=5),
    }
) | st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.none(), max_size=2))
iss_docs = st.dictionaries(
    st.sampled_from(["trades", "orderbook", "marketdata", "dataversion"]), iss_block, max_size=3
) | st.lists(st.dictionaries(st.just("trades"), iss_block), max_size=2)


@settings(max_examples=400, deadline=None)
@given(iss_docs)
def test_iss_parser_when_arbitrary_documents_then_records_or_rejects_only(doc: object) -> None:
    for item in parse_document(doc, "prop", NOW):
        assert type(item) in (Trade, Book, Status, Reject)
        if type(item) is Reject:
            assert item.reason and item.source.startswith("prop")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_iss_parser_when_arbitrary_text_then_records_or_rejects_only(text: str) -> None:
    for item in parse_text(text, "prop", NOW):
        assert type(item) in (Trade, Book, Status, Reject)


# --- the poller --------------------------------------------------------------------------


class FakeClock:
    """Monotonic time that only moves when the poller waits; stops the run at `until`."""

    def __init__(self, until: float) -> None:
        self.now = 0.0
        self.until = until

    def monotonic(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        return self.now > self.until


class RecordedIss:
    """Serves tests/fixtures/iss/<secid>_<what>.json for the URLs the poller asks for."""

    def __init__(self, clock: FakeClock, failures: int = 0) -> None:
        self.clock = clock
        self.failures = failures
        self.calls: list[tuple[float, str]] = []

    def __call__(self, url: str, timeout: float) -> bytes:
        self.calls.append((self.clock.now, url))
        if self.failures:
            self.failures -= 1
            raise urllib.error.HTTPError(url, 503, "Service Unavailable", {}, None)
        parsed = urlparse(url)
        query = parse_qs(parsed.query)
        assert query["iss.meta"] == ["off"]
        parts = parsed.path.split("/")
        if parts[-1] == "trades.json":
            name = f"{parts[-2].lower()}_trades_start{query['start'][0]}.json"
        else:
            assert query["iss.only"] == ["marketdata"]
            name = f"{parts[-1].removesuffix('.json').lower()}_marketdata.json"
        return (FIXTURES / name).read_bytes()


def poller(clock: FakeClock, fetch: RecordedIss, errors: list[str]) -> IssPoller:
    return IssPoller(
        ["SBER", "GAZP"],
        fetch,
        clock=clock.monotonic,
        wait=clock.wait,
        wall_ms=lambda: NOW,
        on_error=errors.append,
    )


def test_iss_poller_when_paging_then_each_trade_once_and_requests_spaced() -> None:
    clock = FakeClock(until=70)
    fetch, errors = RecordedIss(clock), []
    items = list(poller(clock, fetch, errors).records())

    trades = [(i.ticker, i.trade_id) for i in items if type(i) is Trade]
    assert trades == [
        *(("SBER", n) for n in (15123400001, 15123400017, 15123400018, 15123400042)),
        ("SBER", 15123400043),
        *(("GAZP", n) for n in (15123400005, 15123400020, 15123400044)),
        ("SBER", 15123400060),  # page start=5 repeats 15123400043: published once
        ("SBER", 15123400061),
    ]
    # Phases are published once per change, though marketdata is polled every 30 s.
    assert [(i.ticker, i.phase) for i in items if type(i) is Status] == [
        ("SBER", "trading"),
        ("GAZP", "trading"),
    ]
    assert not errors and not [i for i in items if type(i) is Reject]
    starts = [parse_qs(urlparse(u).query).get("start") for _, u in fetch.calls if "SBER" in u]
    assert [s[0] for s in starts if s][:4] == ["0", "5", "8", "8"]
    every = [t for t, _ in fetch.calls]
    assert all(b - a >= 0.25 for a, b in zip(every, every[1:], strict=False))  # <= 4/s overall
    for secid in ("SBER", "GAZP"):
        times = [t for t, url in fetch.calls if f"/{secid}" in url]
        assert all(b - a >= 1.0 for a, b in zip(times, times[1:], strict=False))
        assert sum("iss.only=marketdata" in u for _, u in fetch.calls if f"/{secid}" in u) == 3


def test_iss_poller_when_server_fails_then_exponential_backoff_and_recovery() -> None:
    clock = FakeClock(until=40)
    fetch, errors = RecordedIss(clock, failures=4), []
    feed = poller(clock, fetch, errors)
    feed.securities = feed.securities[:1]  # SBER alone: every failure is its own
    items = list(islice(feed.records(), 6))
    assert len(errors) == 4 and "HTTPError" in errors[0] and "retry in 2 s" in errors[0]
    gaps = [b - a for (a, _), (b, _) in zip(fetch.calls, fetch.calls[1:], strict=False)]
    assert gaps[:4] == [2.0, 4.0, 8.0, 16.0]
    assert [type(i) for i in items] == [Status, Trade, Trade, Trade, Trade, Trade]


def test_iss_fixtures_when_loaded_then_real_iss_layout() -> None:
    doc = json.loads((FIXTURES / "sber_trades_start0.json").read_text())
    assert set(doc) == {"trades", "dataversion", "trades_yields"}
    assert doc["trades"]["columns"][:6] == [
        "TRADENO", "TRADETIME", "BOARDID", "SECID", "PRICE", "QUANTITY",
    ]  # fmt: skip
