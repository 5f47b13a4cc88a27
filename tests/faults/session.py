"""The input of a fault test: a seeded synthetic session in files (ended by sentinels), merged
by event time as `producer replay` merges it, and a Feeder publishing it at a set rate."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from moex.paths import ROOT
from producer.reference import INSTRUMENTS

# Ten of the twelve synthetic tickers (the producer's reference data, most active first):
# enough to spread over the three partitions of a topic.
TICKERS = tuple(INSTRUMENTS)[:10]
# The evening session (19:05-23:50 MSK) trades 12-25 times a second market-wide: a few tens of
# thousands of trades span half an hour, enough candles to warm RSI and the EMAs up.
EVENING = "2026-11-26T19:05:00+03:00"
SENTINEL_GAP_MS = 10 * 60_000  # past every window of every output (the longest is 5 min)


@dataclass
class Session:
    """A seeded synthetic session in files, ended by one sentinel trade and book per ticker."""

    folder: Path
    sentinel_ts: int  # event time of the sentinels: every window before it has closed live

    @property
    def trades_file(self) -> Path:
        return self.folder / "trades.jsonl"

    @property
    def orderbook_file(self) -> Path:
        return self.folder / "orderbook.jsonl"

    @property
    def status_file(self) -> Path:
        return self.folder / "market_status.jsonl"

    def trade_lines(self) -> list[str]:
        return [line for line in self.trades_file.read_text().splitlines() if line]

    def trades(self) -> list[dict]:
        return [json.loads(line, parse_float=Decimal) for line in self.trade_lines()]


def synthetic_session(
    folder: Path,
    seed: int,
    trades: int,
    tickers: Sequence[str] = TICKERS,
    start: str = EVENING,
    anomaly_rate: float = 0.5,
) -> Session:
    """`python -m producer synthetic --out folder`, then the sentinels appended to the files.

    A sentinel is a copy of the ticker's last trade (and book) SENTINEL_GAP_MS later with a new
    number: the live job's watermark passes every real window, so every real window closes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "producer", "synthetic", "--seed", str(seed),
        "--max-events", str(trades), "--start", start, "--tickers", ",".join(tickers),
        "--anomaly-rate", str(anomaly_rate), "--out", str(folder),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    session = Session(folder, 0)
    last_trade: dict[str, dict] = {}
    max_trade_id = 0
    last_ts = 0
    for line in session.trade_lines():
        row = json.loads(line, parse_float=Decimal)
        last_trade[row["ticker"]] = row
        max_trade_id = max(max_trade_id, row["trade_id"])
        last_ts = max(last_ts, row["ts"])
    last_book: dict[str, dict] = {}
    for line in session.orderbook_file.read_text().splitlines():
        if line:
            row = json.loads(line, parse_float=Decimal)
            last_book[row["ticker"]] = row
    sentinel_ts = (last_ts // 1000 + 1) * 1000 + SENTINEL_GAP_MS
    trade_lines, book_lines = [], []
    for number, ticker in enumerate(sorted(last_trade), start=1):
        trade = dict(last_trade[ticker])
        trade_id = max_trade_id + number
        trade.update(event_id=f"{ticker}:T:{trade_id}", trade_id=trade_id, ts=sentinel_ts, qty=1)
        trade_lines.append(dumps(trade))
        if ticker in last_book:
            book = dict(last_book[ticker])
            seq = book["seq"] + 1
            book.update(event_id=f"{ticker}:B:{seq}", seq=seq, ts=sentinel_ts)
            book_lines.append(dumps(book))
    with session.orderbook_file.open("a") as handle:
        handle.write("".join(line + "\n" for line in book_lines))
    with session.trades_file.open("a") as handle:
        handle.write("".join(line + "\n" for line in trade_lines))
    session.sentinel_ts = sentinel_ts
    return session


def dumps(value: Any) -> str:
    """Compact JSON keeping Decimals as written (306.50 stays 306.50, never through a float)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value)


def merged_input(session: Session) -> list[tuple[str, bytes, bytes]]:
    """(kind, key, value) of the session's files merged by event time as `producer replay` does
    (at one ts: books, then trades, then the phase)."""
    import heapq

    def lines(kind: str, path: Path, rank: int):
        for number, line in enumerate(path.read_text().splitlines()):
            if line:
                row = json.loads(line)
                yield (row["ts"], rank, number), kind, row["ticker"].encode(), line.encode()

    merged = heapq.merge(
        lines("orderbook", session.orderbook_file, 0),
        lines("trades", session.trades_file, 1),
        lines("market_status", session.status_file, 2),
    )
    return [(kind, key, value) for _, kind, key, value in merged]


class Feeder:
    """Publishes records from a thread with an idempotent kafka-python producer (acks=all), at
    `rate` records a second; `rate` may change at any time (a trickle while the job is down keeps
    every partition busy, as a live market does). `inserts[i]` are extra (topic suffix, key,
    value, partition) records sent just before record i: hostile input between good records."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        records: list[tuple[str, bytes, bytes]],
        rate: float,
        inserts: dict[int, list[tuple[str, bytes | None, bytes | None, int | None]]] | None = None,
    ) -> None:
        import threading

        from producer.sinks import HoldingSender, idempotent_producer

        self.prefix = prefix
        self.records = records
        self.rate = rate
        self.inserts = inserts or {}
        self.sent = 0
        self.acked = 0  # records the brokers acknowledged (acks=all)
        self.error: BaseException | None = None
        self.failed_sends: list[BaseException] = []
        self._stop = threading.Event()
        self.done = threading.Event()
        # The producer's own policy: hold (retry, never expire, block when full) while brokers
        # are down, so a fault test sees what the real producer does.
        self._producer = idempotent_producer(
            bootstrap, "faults-feeder", max_request_size=2 * 1024 * 1024
        )
        self._sender = HoldingSender(self._producer, bootstrap, stop=self._stop)
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def _send(self, topic: str, key: bytes | None, value: bytes | None, partition=None) -> None:
        future = self._sender.send(topic, key, value, partition)
        future.add_errback(self.failed_sends.append)
        future.add_callback(self._acknowledged)

    def _acknowledged(self, _metadata: object) -> None:
        self.acked += 1  # on the producer's I/O thread; only read for progress

    def _run(self) -> None:
        try:
            next_at = time.monotonic()
            for number, (kind, key, value) in enumerate(self.records):
                if self._stop.is_set():
                    return
                for suffix, extra_key, extra_value, partition in self.inserts.get(number, []):
                    self._send(f"{self.prefix}{suffix}", extra_key, extra_value, partition)
                self._send(f"{self.prefix}{kind}", key, value)
                self.sent = number + 1
                now = time.monotonic()
                next_at = max(next_at, now - 0.5) + 1.0 / self.rate  # no catch-up burst
                if next_at - now > 0.002:
                    self._stop.wait(next_at - now)
            self._producer.flush(60)
        except BaseException as exc:  # reported by wait_done
            self.error = exc
        finally:
            self.done.set()

    def wait_done(self, timeout_s: float) -> int:
        assert self.done.wait(timeout_s), f"feed not done after {timeout_s} s ({self.sent} sent)"
        assert self.error is None, f"feeder failed: {self.error!r}"
        assert not self.failed_sends, f"{len(self.failed_sends)} records not acknowledged"
        return self.sent

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self._producer.close(10)
