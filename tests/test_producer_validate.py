"""Validation and normalisation: what is published, what goes to the DLQ and why."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producer.records import (
    Book,
    Reject,
    Status,
    Trade,
    book_json,
    dlq_json,
    status_json,
    trade_json,
)
from producer.validate import (
    Invalid,
    check_book,
    check_trade,
    parse_csv_header,
    parse_ts,
    record_from_json_line,
    trade_from_csv_line,
    validated,
)

NOW = 1_795_676_400_000  # 2026-11-26 07:00:00 UTC = 10:00 MSK
TS = NOW + 123
GOOD_TRADE = {
    "event_id": "SBER:T:12345678",
    "ticker": "SBER",
    "board": "TQBR",
    "trade_id": 12345678,
    "ts": TS,
    "price": 285.43,
    "qty": 10,
    "side": "B",
}
GOOD_BOOK = {
    "event_id": "SBER:B:42",
    "ticker": "SBER",
    "ts": TS,
    "seq": 42,
    "bids": [[285.42, 120], [285.41, 5]],
    "asks": [[285.44, 80], [285.45, 7]],
}


def line(base: dict, **changes: object) -> str:
    obj = {**base, **changes}
    for key in [k for k, v in changes.items() if v is ...]:
        del obj[key]
    return json.dumps(obj)


def reason_of(text: str) -> str:
    try:
        record = record_from_json_line(text)
    except Invalid as exc:
        return str(exc)
    result = validated(record, NOW, "test")
    return result.reason if type(result) is Reject else ""


def test_trade_line_when_valid_then_published_with_exact_contract_text() -> None:
    record = record_from_json_line(line(GOOD_TRADE))
    assert validated(record, NOW, "test") is record
    assert trade_json(record) == json.dumps(GOOD_TRADE, separators=(",", ":"))


def test_trade_line_when_price_has_fewer_decimals_then_printed_with_instrument_decimals() -> None:
    record = record_from_json_line(line(GOOD_TRADE, price=285.4))
    assert '"price":285.40,' in trade_json(record)
    lkoh = record_from_json_line(
        line(GOOD_TRADE, ticker="LKOH", event_id="LKOH:T:12345678", price=6800)
    )
    assert '"price":6800.0,' in trade_json(lkoh)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"ticker": "SBER", "price": 285.4', "bad JSON"),
        ("[1, 2]", "must be a JSON object"),
        (line(GOOD_TRADE, ticker="AAPL", event_id=...), "unknown ticker 'AAPL'"),
        (line(GOOD_TRADE, price=285.437), "price 285.437 not on tick grid 0.01"),
        (line(GOOD_TRADE, price=285.43000000001), "not on tick grid 0.01"),
        (line(GOOD_TRADE, price=-285.43), "price -285.43 is not positive"),
        (line(GOOD_TRADE, price="285.43x"), "is not a number"),
        (line(GOOD_TRADE, qty=-5), "qty -5 is not positive"),
        (line(GOOD_TRADE, qty=0), "qty 0 is not positive"),
        (line(GOOD_TRADE, qty=1.5), "qty must be an integer"),
        (line(GOOD_TRADE, qty=True), "qty must be an integer"),
        (line(GOOD_TRADE, price=...), "missing field price"),
        (line(GOOD_TRADE, side="BUY"), "side must be 'B' or 'S'"),
        (line(GOOD_TRADE, board="SMAL"), "unknown board 'SMAL'"),
        (line(GOOD_TRADE, ts=4_102_444_800_000), "more than 1 day in the future"),
        (line(GOOD_TRADE, ts=123), "before 2000-01-01"),
        (line(GOOD_TRADE, ts="yesterday"), "ts must be epoch milliseconds"),
        (line(GOOD_TRADE, event_id="SBER:T:1"), "does not match 'SBER:T:12345678'"),
        ('{"ticker":"SBER","price":NaN}', "invalid JSON number NaN"),
        (line(GOOD_BOOK, asks=[[285.42, 80]]), "crossed book: best bid 285.42 >= best ask 285.42"),
        (line(GOOD_BOOK, bids=[[285.41, 5], [285.42, 120]]), "bids not strictly descending"),
        (line(GOOD_BOOK, asks=[[285.45, 5], [285.44, 120]]), "asks not strictly ascending"),
        (line(GOOD_BOOK, bids=[]), "bids must have at least one level"),
        (line(GOOD_BOOK, bids=[[285.42]]), "bids[0] must be a [price, qty] pair"),
        (line(GOOD_BOOK, bids=[[285.425, 1]]), "bids[0]: price 285.425 not on tick grid 0.01"),
        (line(GOOD_BOOK, asks=[[285.44, -1]]), "qty -1 is not positive"),
        (json.dumps({"ticker": "*", "ts": TS, "phase": "lunch"}), "unknown phase 'lunch'"),
        ('{"reason":"x","payload":"y","source":"z","ts":1}', "a DLQ record is not market data"),
        (line(GOOD_TRADE, topic="moex.candles_1m"), "unknown topic"),
    ],
)
def test_record_line_when_bad_then_rejected_with_reason(text: str, reason: str) -> None:
    assert reason in reason_of(text)


def test_book_and_status_lines_when_valid_then_round_trip_exactly() -> None:
    book = record_from_json_line(line(GOOD_BOOK))
    assert type(book) is Book and check_book(book, NOW) is None
    assert book_json(book) == json.dumps(GOOD_BOOK, separators=(",", ":"))
    status_text = f'{{"event_id":"*:S:{TS}","ticker":"*","ts":{TS},"phase":"trading"}}'
    status = record_from_json_line(status_text)
    assert status == Status("*", TS, "trading") and status_json(status) == status_text


def test_check_trade_when_typed_record_wrong_then_reason() -> None:
    good = Trade("GMKN", "TQBR", 1, TS, Decimal("120.02"), 3, "S")
    assert check_trade(good, NOW) is None
    assert check_trade(good._replace(price=Decimal("120.01")), NOW) == (
        "price 120.01 not on tick grid 0.02"
    )
    assert "not positive" in check_trade(good._replace(qty=0), NOW)
    assert "finite" in check_trade(good._replace(price=Decimal("NaN")), NOW)
    assert "finite" in check_trade(good._replace(price=120.02), NOW)  # a float never passes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T07:00:00.123Z", 1_795_676_400_123),
        ("2026-11-26T10:00:00.123+03:00", 1_795_676_400_123),
        ("2026-11-26T07:00:00Z", 1_795_676_400_000),
        ("1795676400123", 1_795_676_400_123),
    ],
)
def test_parse_ts_when_iso_or_epoch_then_epoch_ms(text: str, expected: int) -> None:
    assert parse_ts(text) == expected


def test_parse_ts_when_no_zone_then_rejected_not_guessed() -> None:
    with pytest.raises(Invalid, match="no time zone"):
        parse_ts("2026-11-26T07:00:00")


def test_csv_line_when_valid_then_trade_and_when_short_then_reason() -> None:
    columns = parse_csv_header("ticker,ts,price,qty,side,trade_id")
    trade = trade_from_csv_line("SBER,2026-11-26T07:00:00.123Z,285.4,10,b,777", columns)
    assert trade == Trade("SBER", "TQBR", 777, 1_795_676_400_123, Decimal("285.40"), 10, "B")
    with pytest.raises(Invalid, match="expected 6 fields, got 3"):
        trade_from_csv_line("SBER,1,2", columns)
    with pytest.raises(Invalid, match="CSV header lacks trade_id"):
        parse_csv_header("ticker,ts,price,qty,side")


def test_dlq_json_when_payload_huge_then_truncated_and_valid_json() -> None:
    text = dlq_json(Reject("replay:x.jsonl:1", "bad JSON", "x" * 200_000), TS)
    decoded = json.loads(text)
    assert decoded["source"] == "replay:x.jsonl:1" and decoded["ts"] == TS
    assert len(decoded["payload"]) < 70_000 and decoded["payload"].endswith("characters cut]")


# --- property tests: any input gives a record or a reason, never an exception ------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["SBER", "LKOH", "*", "B", "S", "trading", "285.43", "TQBR"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
trade_like = st.fixed_dictionaries(
    {},
    optional={
        key: json_values | st.just(value)
        for key, value in {**GOOD_TRADE, **GOOD_BOOK, "phase": "halted"}.items()
    },
)


def _outcome(text: str) -> object:
    try:
        record = record_from_json_line(text)
    except Invalid as exc:
        assert str(exc)
        return exc
    result = validated(record, NOW, "test")
    assert type(result) in (Trade, Book, Status, Reject)
    return result


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_jsonl_parser_when_arbitrary_text_then_record_or_reason(text: str) -> None:
    _outcome(text)


@settings(max_examples=300, deadline=None)
@given(trade_like)
def test_jsonl_parser_when_mutated_records_then_record_or_reason(obj: dict) -> None:
    result = _outcome(json.dumps(obj))
    if type(result) in (Trade, Book, Status):  # whatever passes must serialise and re-parse
        text = {Trade: trade_json, Book: book_json, Status: status_json}[type(result)](result)
        assert record_from_json_line(text) == result


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.text(max_size=12)
        | st.sampled_from(["SBER", "285.43", "10", "B", "1795676400123", "2026-11-26T07:00:00Z"]),
        max_size=8,
    )
)
def test_csv_parser_when_arbitrary_fields_then_trade_or_reason(fields: list[str]) -> None:
    columns = parse_csv_header("ticker,ts,price,qty,side,trade_id")
    text = ",".join(fields)
    try:
        trade = trade_from_csv_line(text, columns)
    except Invalid as exc:
        assert str(exc)
        return
    assert type(validated(trade, NOW, "test")) in (Trade, Reject)
