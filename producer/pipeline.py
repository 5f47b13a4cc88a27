"""The loop from a source to a sink: serialise, pace, count, stop on request.

Sources hand over validated records and Rejects; `run(..., validate=True)` checks records of
sources that do not validate themselves (the synthetic generator).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import IO

from producer.records import (
    Book,
    Record,
    Reject,
    Status,
    Trade,
    book_json,
    dlq_json,
    status_json,
    trade_json,
)
from producer.schedule import msk_datetime, wall_ms
from producer.sinks import DLQ, KIND_NAMES, MARKET_STATUS, ORDERBOOK, TRADES, Sink
from producer.validate import check_record, validated


class Stats:
    """Counters shared with the reporter thread (plain ints: the GIL keeps them consistent)."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0, 0]  # indexed by sink kind: trades, orderbook, status, dlq
        self.errors = 0  # delivery or fetch errors, not rejected records
        self.last_ts = 0  # event time of the latest trade, to show the session clock
        self.started = time.monotonic()
        self._last_total = 0
        self._last_at = self.started

    @property
    def total(self) -> int:
        return sum(self.counts)

    def line(self) -> str:
        now = time.monotonic()
        total = self.total
        rate = (total - self._last_total) / max(now - self._last_at, 1e-9)
        self._last_total, self._last_at = total, now
        counts = "  ".join(f"{KIND_NAMES[k]} {self.counts[k]}" for k in range(3))
        clock = ""
        if self.last_ts:
            clock = f"  at {msk_datetime(self.last_ts):%Y-%m-%d %H:%M:%S} MSK"
        return (
            f"producer: {now - self.started:6.1f} s  sent {total} ({rate:.0f}/s)  {counts}  "
            f"rejected {self.counts[DLQ]}  errors {self.errors}{clock}"
        )


class Reporter:
    """Prints `Stats.line()` to stderr every `every_s` seconds from a daemon thread."""

    def __init__(self, stats: Stats, every_s: float, stream: IO[str] | None = None) -> None:
        self.stats = stats
        self.every_s = every_s
        self.stream = stream or sys.stderr
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stats", daemon=True)

    def __enter__(self) -> Reporter:
        if self.every_s > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _loop(self) -> None:
        while not self._done.wait(self.every_s):
            print(self.stats.line(), file=self.stream, flush=True)


class ClockPacer:
    """Emit a record when the wall clock reaches its event time, the session clock running
    `factor` times faster than the wall clock (from the first record on)."""

    def __init__(self, factor: float, stop: threading.Event) -> None:
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.factor = factor
        self.stop = stop
        self.origin_ts: int | None = None
        self.origin_wall = 0.0
        self.latest_ts = 0

    def wait(self, ts: int, is_event: bool) -> None:
        if self.origin_ts is None:
            self.origin_ts, self.origin_wall, self.latest_ts = ts, time.monotonic(), ts
            return
        if ts <= self.latest_ts:  # out-of-order input is sent at once, never waited for
            return
        self.latest_ts = ts
        delay = self.origin_wall + (ts - self.origin_ts) / 1000 / self.factor - time.monotonic()
        if delay > 0.001:
            self.stop.wait(delay)


class RatePacer:
    """At most `rate` events a second (non-event records ride along with the next event)."""

    def __init__(self, rate: float, stop: threading.Event) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate
        self.stop = stop
        self.origin: float | None = None
        self.events = 0

    def wait(self, ts: int, is_event: bool) -> None:
        if not is_event:
            return
        if self.origin is None:
            self.origin = time.monotonic()
        self.events += 1
        delay = self.origin + self.events * self.interval - time.monotonic()
        if delay > 0.002:
            self.stop.wait(delay)


Pacer = ClockPacer | RatePacer


def run(
    items: Iterable[Record | Reject],
    sink: Sink,
    stats: Stats,
    stop: threading.Event,
    *,
    pacer: Pacer | None = None,
    max_events: int | None = None,
    events_are_trades: bool = False,
    validate: bool = False,
    source: str = "synthetic",
    now_ms: Callable[[], int] = wall_ms,
) -> str:
    """Send every item; return why it ended: exhausted, max-events, stopped or failed.

    An event is a trade when `events_are_trades`, else any item (each input record).
    """
    send = sink.send
    counts = stats.counts
    is_set = stop.is_set
    limit = max_events if max_events is not None else -1
    events = 0
    now = now_ms()
    checked = 0
    for item in items:
        if is_set():
            return "failed" if sink.failure else "stopped"
        kind = type(item)
        if validate and kind is not Reject:
            checked += 1
            if checked & 1023 == 0:
                # Under --rate the session clock may run days ahead of the wall clock (nights
                # pass in no time); "the future" is then a day past the latest trade sent.
                now = max(now_ms(), stats.last_ts)
            if check_record(item, now) is not None:
                item = validated(item, now, source)
                kind = Reject
        if kind is Trade:
            if pacer is not None:
                pacer.wait(item.ts, True)
            send(TRADES, item.ticker, trade_json(item))
            counts[TRADES] += 1
            stats.last_ts = item.ts
            is_event = True
        elif kind is Book:
            if pacer is not None:
                pacer.wait(item.ts, not events_are_trades)
            send(ORDERBOOK, item.ticker, book_json(item))
            counts[ORDERBOOK] += 1
            is_event = not events_are_trades
        elif kind is Status:
            if pacer is not None:
                pacer.wait(item.ts, not events_are_trades)
            send(MARKET_STATUS, item.ticker, status_json(item))
            counts[MARKET_STATUS] += 1
            is_event = not events_are_trades
        else:
            send(DLQ, None, dlq_json(item, now_ms()))
            counts[DLQ] += 1
            is_event = not events_are_trades
        if is_event:
            events += 1
            if events == limit:
                return "max-events"
    if sink.failure:
        return "failed"
    return "stopped" if is_set() else "exhausted"
