"""Validation and normalisation (the ETL step): pure functions, no I/O.

`check_*` take a typed record and return None when it may be published, else the reason it
goes to the DLQ. `*_from_mapping` and the line parsers turn loosely typed input (JSON, CSV)
into typed records, raising `Invalid(reason)`. Prices are parsed from their text into
`Decimal` and re-quantized to the instrument's decimals, so `285.4` is published as `285.40`.

Over 300 lines: one check and one parser per record type (trades, books, status) and input
format (JSON, CSV, ISS), all pure functions sharing the reject reasons.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from producer.records import (
    MARKET_WIDE,
    PHASES,
    Book,
    Level,
    Record,
    Reject,
    Status,
    Trade,
    book_event_id,
    record_json,
    status_event_id,
    trade_event_id,
)
from producer.reference import BOARD, INSTRUMENTS

MIN_TS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_AHEAD_MS = 86_400_000  # a record more than a day ahead of the wall clock is absurd
MAX_PRICE = Decimal(10) ** 9
MAX_QTY = 10**12
MAX_LEVELS = 50
CSV_COLUMNS = ("ticker", "ts", "price", "qty", "side", "trade_id")
_PHASE_SET = frozenset(PHASES)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_ISO_TS = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:?\d{2})$"
)


class Invalid(ValueError):
    """A record that cannot be published; `str(exc)` is the DLQ reason."""


# --- checks of typed records -------------------------------------------------------------


def _check_ts(ts: object, now_ms: int) -> str | None:
    if type(ts) is not int:
        return f"ts must be epoch milliseconds (int), got {ts!r}"
    if ts < MIN_TS:
        return f"ts {ts} is before 2000-01-01"
    if ts > now_ms + MAX_AHEAD_MS:
        return f"ts {ts} is more than 1 day in the future"
    return None


def _check_price(price: object, tick: Decimal) -> str | None:
    if type(price) is not Decimal or not price.is_finite():
        return f"price must be a finite decimal number, got {price!r}"
    if price <= 0:
        return f"price {price} is not positive"
    if price >= MAX_PRICE:
        return f"price {price} is out of range"
    if price % tick:
        return f"price {price} not on tick grid {tick}"
    return None


def _check_qty(qty: object) -> str | None:
    if type(qty) is not int:
        return f"qty must be an integer number of lots, got {qty!r}"
    if qty <= 0:
        return f"qty {qty} is not positive"
    if qty > MAX_QTY:
        return f"qty {qty} is out of range"
    return None


def check_trade(t: Trade, now_ms: int) -> str | None:
    inst = INSTRUMENTS.get(t.ticker) if type(t.ticker) is str else None
    if inst is None:
        return f"unknown ticker {t.ticker!r}"
    if t.board != BOARD:
        return f"unknown board {t.board!r} (only {BOARD})"
    if type(t.trade_id) is not int or t.trade_id <= 0:
        return f"trade_id must be a positive integer, got {t.trade_id!r}"
    if t.side != "B" and t.side != "S":
        return f"side must be 'B' or 'S', got {t.side!r}"
    return _check_ts(t.ts, now_ms) or _check_price(t.price, inst.tick) or _check_qty(t.qty)


def _check_levels(side: str, levels: object, tick: Decimal, descending: bool) -> str | None:
    # One pass with the checks inlined: books are the bulk of the synthetic stream.
    if type(levels) is not tuple or not levels:
        return f"{side} must have at least one level"
    if len(levels) > MAX_LEVELS:
        return f"{side} has {len(levels)} levels, more than {MAX_LEVELS}"
    previous = None
    for n, level in enumerate(levels):
        if type(level) is not tuple or len(level) != 2:
            return f"{side}[{n}] must be a [price, qty] pair"
        price, qty = level
        if (
            type(price) is not Decimal
            or not price.is_finite()
            or price <= 0
            or price >= MAX_PRICE
            or price % tick
            or type(qty) is not int
            or qty <= 0
            or qty > MAX_QTY
        ):
            return f"{side}[{n}]: {_check_price(price, tick) or _check_qty(qty)}"
        if previous is not None and (price >= previous if descending else price <= previous):
            order = "descending" if descending else "ascending"
            return f"{side} not strictly {order} at level {n}: {price} after {previous}"
        previous = price
    return None


def check_book(b: Book, now_ms: int) -> str | None:
    inst = INSTRUMENTS.get(b.ticker) if type(b.ticker) is str else None
    if inst is None:
        return f"unknown ticker {b.ticker!r}"
    if type(b.seq) is not int or b.seq < 0:
        return f"seq must be a non-negative integer, got {b.seq!r}"
    reason = (
        _check_ts(b.ts, now_ms)
        or _check_levels("bids", b.bids, inst.tick, True)
        or _check_levels("asks", b.asks, inst.tick, False)
    )
    if reason:
        return reason
    if b.bids[0][0] >= b.asks[0][0]:
        return f"crossed book: best bid {b.bids[0][0]} >= best ask {b.asks[0][0]}"
    return None


def check_status(s: Status, now_ms: int) -> str | None:
    if s.ticker != MARKET_WIDE and (type(s.ticker) is not str or s.ticker not in INSTRUMENTS):
        return f"unknown ticker {s.ticker!r}"
    if type(s.phase) is not str or s.phase not in _PHASE_SET:
        return f"unknown phase {s.phase!r} (one of {', '.join(PHASES)})"
    return _check_ts(s.ts, now_ms)


def check_record(record: Record, now_ms: int) -> str | None:
    kind = type(record)
    if kind is Trade:
        return check_trade(record, now_ms)
    if kind is Book:
        return check_book(record, now_ms)
    if kind is Status:
        return check_status(record, now_ms)
    return f"not a record: {kind.__name__}"


# --- normalisation of loosely typed values --------------------------------------------------


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is a subclass of int, and rejected on purpose


def parse_price(value: object, ticker: str, what: str = "price") -> Decimal:
    """A JSON number (int or Decimal via parse_float) or a numeric string -> quantized Decimal."""
    inst = INSTRUMENTS.get(ticker) if type(ticker) is str else None
    if inst is None:
        raise Invalid(f"unknown ticker {ticker!r}")
    if _is_int(value):
        price = Decimal(value)
    elif type(value) is Decimal:
        price = value
    elif type(value) is str and len(value) <= 40:
        try:
            price = Decimal(value.strip())
        except InvalidOperation:
            raise Invalid(f"{what} {value!r} is not a number") from None
    else:
        raise Invalid(f"{what} must be a number, got {value!r}")
    reason = _check_price(price, inst.tick)
    if reason:
        raise Invalid(reason if what == "price" else f"{what}: {reason}")
    return price.quantize(inst.quantum)


def parse_int(value: object, what: str) -> int:
    if _is_int(value):
        return value
    if type(value) is str and value.strip().lstrip("-").isdigit() and len(value) < 30:
        return int(value)
    if type(value) is Decimal and value.is_finite() and value == value.to_integral_value():
        return int(value)  # 120.0 from a JSON float column is still 120 lots
    raise Invalid(f"{what} must be an integer, got {value!r}")


def parse_ts(value: object) -> int:
    """Epoch milliseconds (int or digits) or ISO 8601 with a zone (Z or +03:00) -> epoch ms."""
    if _is_int(value):
        return value
    if type(value) is str:
        text = value.strip()
        if text.isdigit() and len(text) < 20:
            return int(text)
        if _ISO_TS.match(text):
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise Invalid(f"ts {value!r} is not a valid ISO 8601 time") from None
            return (moment - _EPOCH) // _ONE_MS  # exact integer arithmetic, sub-ms truncated
        if len(text) < 40 and re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", text):
            raise Invalid(f"ts {value!r} has no time zone (write Z for UTC)")
    raise Invalid(f"ts must be epoch milliseconds or ISO 8601 UTC, got {value!r}")


def _require(obj: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if n not in obj]
    if missing:
        raise Invalid(f"missing field {', '.join(missing)}")


def _ticker(obj: dict[str, Any]) -> str:
    ticker = obj["ticker"]
    if type(ticker) is not str:
        raise Invalid(f"ticker must be a string, got {ticker!r}")
    if ticker not in INSTRUMENTS:
        raise Invalid(f"unknown ticker {ticker!r}")
    return ticker


def _check_event_id(obj: dict[str, Any], expected: str) -> None:
    given = obj.get("event_id", expected)
    if given != expected:
        raise Invalid(f"event_id {given!r} does not match {expected!r}")


def trade_from_mapping(obj: dict[str, Any]) -> Trade:
    _require(obj, "ticker", "ts", "price", "qty", "side", "trade_id")
    ticker = _ticker(obj)
    board = obj.get("board", BOARD)
    if board != BOARD:
        raise Invalid(f"unknown board {board!r} (only {BOARD})")
    side = obj["side"]
    if side not in ("B", "S"):
        raise Invalid(f"side must be 'B' or 'S', got {side!r}")
    trade_id = parse_int(obj["trade_id"], "trade_id")
    if trade_id <= 0:
        raise Invalid(f"trade_id must be a positive integer, got {trade_id}")
    _check_event_id(obj, trade_event_id(ticker, trade_id))
    return Trade(
        ticker,
        BOARD,
        trade_id,
        parse_ts(obj["ts"]),
        parse_price(obj["price"], ticker),
        parse_int(obj["qty"], "qty"),
        side,
    )


def _levels_from_json(value: object, ticker: str, side: str) -> tuple[Level, ...]:
    if type(value) is not list:
        raise Invalid(f"{side} must be a list of [price, qty] pairs")
    levels = []
    for n, level in enumerate(value):
        if type(level) is not list or len(level) != 2:
            raise Invalid(f"{side}[{n}] must be a [price, qty] pair, got {level!r}")
        levels.append(
            (parse_price(level[0], ticker, f"{side}[{n}]"), parse_int(level[1], f"{side}[{n}] qty"))
        )
    return tuple(levels)


def book_from_mapping(obj: dict[str, Any]) -> Book:
    _require(obj, "ticker", "ts", "seq", "bids", "asks")
    ticker = _ticker(obj)
    seq = parse_int(obj["seq"], "seq")
    _check_event_id(obj, book_event_id(ticker, seq))
    return Book(
        ticker,
        parse_ts(obj["ts"]),
        seq,
        _levels_from_json(obj["bids"], ticker, "bids"),
        _levels_from_json(obj["asks"], ticker, "asks"),
    )


def status_from_mapping(obj: dict[str, Any]) -> Status:
    _require(obj, "ticker", "ts", "phase")
    ticker = obj["ticker"]
    if ticker != MARKET_WIDE and (type(ticker) is not str or ticker not in INSTRUMENTS):
        raise Invalid(f"unknown ticker {ticker!r}")
    phase = obj["phase"]
    if type(phase) is not str or phase not in _PHASE_SET:
        raise Invalid(f"unknown phase {phase!r} (one of {', '.join(PHASES)})")
    ts = parse_ts(obj["ts"])
    _check_event_id(obj, status_event_id(ticker, ts))
    return Status(ticker, ts, phase)


def _reject_constant(name: str) -> None:
    raise Invalid(f"invalid JSON number {name}")


def loads(text: str) -> Any:
    """JSON with exact decimals (floats become Decimal) and NaN/Infinity refused."""
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except Invalid:
        raise
    except (ValueError, RecursionError) as exc:
        raise Invalid(f"bad JSON: {str(exc)[:200]}") from None


_TOPIC_KINDS = {
    "trades": "trade",
    "moex.trades": "trade",
    "orderbook": "book",
    "moex.orderbook": "book",
    "market_status": "status",
    "moex.market_status": "status",
}


def record_from_json_line(line: str) -> Record:
    """One line of our JSONL format: a topic payload, optionally with a `topic` field.

    Without `topic` the kind is told by the fields: `phase` -> status, `bids`/`asks` -> book,
    anything else -> trade (so a broken trade is reported with the trade's missing fields).
    """
    obj = loads(line)
    if type(obj) is not dict:
        raise Invalid(f"a record must be a JSON object, got {type(obj).__name__}")
    topic = obj.get("topic")
    if topic is not None:
        kind = _TOPIC_KINDS.get(topic) if type(topic) is str else None
        if kind is None:
            raise Invalid(f"unknown topic {topic!r}")
    elif "phase" in obj:
        kind = "status"
    elif "bids" in obj or "asks" in obj:
        kind = "book"
    elif "reason" in obj and "payload" in obj:
        raise Invalid("a DLQ record is not market data")
    else:
        kind = "trade"
    if kind == "trade":
        return trade_from_mapping(obj)
    if kind == "book":
        return book_from_mapping(obj)
    return status_from_mapping(obj)


def parse_csv_header(line: str) -> list[str]:
    """The header line -> column names; must contain every column of CSV_COLUMNS."""
    try:
        names = [n.strip().lower() for n in next(csv.reader([line]), [])]
    except csv.Error as exc:
        raise Invalid(f"bad CSV header: {exc}") from None
    missing = [c for c in CSV_COLUMNS if c not in names]
    if missing:
        raise Invalid(
            f"CSV header lacks {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}, "
            f"got {line.strip()[:200]!r}"
        )
    if len(set(names)) != len(names):
        raise Invalid(f"CSV header repeats a column: {line.strip()[:200]!r}")
    return names


def trade_from_csv_line(line: str, columns: list[str]) -> Trade:
    try:
        fields = next(csv.reader([line]), [])
    except csv.Error as exc:
        raise Invalid(f"bad CSV: {exc}") from None
    if len(fields) != len(columns):
        raise Invalid(f"expected {len(columns)} fields, got {len(fields)}")
    obj = dict(zip(columns, (f.strip() for f in fields), strict=True))
    obj["side"] = obj["side"].upper()
    return trade_from_mapping(obj)


def validated(
    record: Record, now_ms: int, source: str, payload: str | None = None
) -> Record | Reject:
    """The last gate before a sink: the record itself, or its Reject carrying `payload` (the
    raw input text; the record's own JSON when there was none, as for synthetic data)."""
    reason = check_record(record, now_ms)
    if reason is None:
        return record
    if payload is None:
        try:
            payload = record_json(record)
        except Exception:  # a malformed record may not even serialise
            payload = repr(record)
    return Reject(source, reason, payload)


def json_text(value: object) -> str:
    """Compact JSON of parsed input, Decimals written back as the numbers they were read from."""
    if type(value) is Decimal:
        return str(value)
    if type(value) is list:
        return "[" + ",".join(json_text(v) for v in value) + "]"
    if type(value) is dict:
        return (
            "{"
            + ",".join(
                f"{json.dumps(str(k), ensure_ascii=False)}:{json_text(v)}" for k, v in value.items()
            )
            + "}"
        )
    return json.dumps(value, ensure_ascii=False)
