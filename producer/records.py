"""The four topic payloads: record types, their exact JSON text, and the topic names.

Prices are `Decimal`s whose exponent is the instrument's -DECIMALS, so `str(price)` is the
exact number text on the tick grid (285.40, 6800.5, 23.005): no float ever touches a price.
JSON is written by hand, compact, keys in contract order; only DLQ text goes through `json`
because its payload is arbitrary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

PHASES = ("opening_auction", "trading", "closing_auction", "closed", "halted")
MARKET_WIDE = "*"


class Trade(NamedTuple):
    ticker: str
    board: str
    trade_id: int
    ts: int  # event time, epoch ms UTC
    price: Decimal  # RUB per share, on the tick grid
    qty: int  # lots
    side: str  # "B" buy-initiated, "S" sell-initiated


Level = tuple[Decimal, int]  # (price, lots)


class Book(NamedTuple):
    ticker: str
    ts: int
    seq: int
    bids: tuple[Level, ...]  # best (highest) first
    asks: tuple[Level, ...]  # best (lowest) first


class Status(NamedTuple):
    ticker: str  # "*" = whole market
    ts: int
    phase: str


class Reject(NamedTuple):
    """A record that failed parsing or validation, bound for the DLQ."""

    source: str  # where it came from: "replay:data/x.csv:17", "iss:SBER:trades", "synthetic"
    reason: str
    payload: str  # the raw record text as received


Record = Trade | Book | Status

MAX_PAYLOAD_CHARS = 65536  # a DLQ message must stay far below Kafka's 1 MB limit


def trade_event_id(ticker: str, trade_id: int) -> str:
    return f"{ticker}:T:{trade_id}"


def book_event_id(ticker: str, seq: int) -> str:
    return f"{ticker}:B:{seq}"


def status_event_id(ticker: str, ts: int) -> str:
    return f"{ticker}:S:{ts}"


# Tickers and boards are validated against reference data before they reach these functions,
# so they never need JSON escaping.
def trade_json(t: Trade) -> str:
    return (
        f'{{"event_id":"{t.ticker}:T:{t.trade_id}","ticker":"{t.ticker}","board":"{t.board}",'
        f'"trade_id":{t.trade_id},"ts":{t.ts},"price":{t.price!s},"qty":{t.qty},"side":"{t.side}"}}'
    )


def _levels_json(levels: tuple[Level, ...]) -> str:
    return ",".join(map("[%s,%s]".__mod__, levels))  # 2x an f-string: books are the bulk


def book_json(b: Book) -> str:
    return (
        f'{{"event_id":"{b.ticker}:B:{b.seq}","ticker":"{b.ticker}","ts":{b.ts},"seq":{b.seq},'
        f'"bids":[{_levels_json(b.bids)}],"asks":[{_levels_json(b.asks)}]}}'
    )


def status_json(s: Status) -> str:
    return (
        f'{{"event_id":"{s.ticker}:S:{s.ts}","ticker":"{s.ticker}","ts":{s.ts},'
        f'"phase":"{s.phase}"}}'
    )


def truncate_payload(payload: str) -> str:
    if len(payload) <= MAX_PAYLOAD_CHARS:
        return payload
    cut = len(payload) - MAX_PAYLOAD_CHARS
    return f"{payload[:MAX_PAYLOAD_CHARS]}...[{cut} more characters cut]"


def dlq_json(reject: Reject, ts: int) -> str:
    return json.dumps(
        {
            "source": reject.source,
            "reason": reject.reason,
            "payload": truncate_payload(reject.payload),
            "ts": ts,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def record_json(record: Record) -> str:
    if type(record) is Trade:
        return trade_json(record)
    if type(record) is Book:
        return book_json(record)
    return status_json(record)


@dataclass(frozen=True)
class Topics:
    """Topic names; tests give each run its own set through `prefix`."""

    trades: str = "moex.trades"
    orderbook: str = "moex.orderbook"
    market_status: str = "moex.market_status"
    dlq: str = "moex.dlq"

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(
            trades=f"{prefix}trades",
            orderbook=f"{prefix}orderbook",
            market_status=f"{prefix}market_status",
            dlq=f"{prefix}dlq",
        )

    def all(self) -> tuple[str, str, str, str]:
        return (self.trades, self.orderbook, self.market_status, self.dlq)
