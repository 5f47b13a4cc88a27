"""The synthetic market: grid, books, schedule, anomalies, volatility clustering, determinism."""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from datetime import date, time
from decimal import Decimal
from itertools import islice
from pathlib import Path

import pytest

from producer.cli import main
from producer.pipeline import Stats, run
from producer.records import Book, Status, Trade
from producer.reference import INSTRUMENTS
from producer.schedule import msk_ms, next_transition, phase_at
from producer.sinks import DLQ, TRADES, MemorySink
from producer.synthetic import SyntheticMarket
from producer.validate import check_record

DAY = date(2026, 11, 26)
OPEN = msk_ms(DAY, time(10, 0))
NOW = OPEN + 3_600_000


def stream(n: int, seed: int = 1, **kwargs: object) -> list[Trade | Book | Status]:
    return list(islice(SyntheticMarket(seed, OPEN, **kwargs).records(), n))


@pytest.mark.parametrize(
    ("clock", "phase"),
    [
        (time(9, 49, 59), "closed"),
        (time(9, 50), "opening_auction"),
        (time(9, 59, 59, 999000), "opening_auction"),
        (time(10, 0), "trading"),
        (time(18, 39, 59), "trading"),
        (time(18, 40), "closing_auction"),
        (time(18, 50), "closed"),
        (time(19, 4, 59), "closed"),
        (time(19, 5), "trading"),
        (time(23, 49, 59), "trading"),
        (time(23, 50), "closed"),
        (time(3, 0), "closed"),
    ],
)
def test_schedule_when_moscow_time_given_then_phase(clock: time, phase: str) -> None:
    assert phase_at(msk_ms(DAY, clock)) == phase


def test_schedule_when_after_evening_close_then_next_transition_is_tomorrows_auction() -> None:
    assert next_transition(msk_ms(DAY, time(23, 55))) == (
        msk_ms(date(2026, 11, 27), time(9, 50)),
        "opening_auction",
    )


def test_synthetic_when_generated_then_every_record_valid_on_grid_and_books_uncrossed() -> None:
    records = stream(60_000, anomaly_rate=2.0)
    tickers = {r.ticker for r in records if type(r) is Trade}
    assert tickers == set(INSTRUMENTS)
    for record in records:
        assert check_record(record, NOW) is None, record
        if type(record) is Book:
            assert len(record.bids) == len(record.asks) == 10
            tick = INSTRUMENTS[record.ticker].tick
            assert record.asks[0][0] - record.bids[0][0] >= tick
        if type(record) is Trade:
            decimals = INSTRUMENTS[record.ticker].decimals
            assert -record.price.as_tuple().exponent == decimals


def test_synthetic_when_trade_then_at_best_bid_or_ask_of_latest_book() -> None:
    latest: dict[str, Book] = {}
    trades = 0
    for record in stream(60_000, seed=5, anomaly_rate=2.0):
        if type(record) is Book:
            latest[record.ticker] = record
        elif type(record) is Trade:
            book = latest[record.ticker]
            assert book.ts <= record.ts
            best = book.asks[0][0] if record.side == "B" else book.bids[0][0]
            assert record.price == best
            trades += 1
    assert trades > 30_000


def test_synthetic_when_full_day_then_phases_at_moscow_times_and_trades_only_in_sessions() -> None:
    start = msk_ms(DAY, time(9, 45))
    market = SyntheticMarket(3, start, tickers=["SBER", "LKOH"], trades_per_s=0.2)
    records = []
    for record in market.records():
        if record.ts >= msk_ms(date(2026, 11, 27), time(10, 0)):
            break
        records.append(record)
    statuses = [(r.ts, r.phase) for r in records if type(r) is Status]
    assert statuses == [
        (start, "closed"),
        (msk_ms(DAY, time(9, 50)), "opening_auction"),
        (msk_ms(DAY, time(10, 0)), "trading"),
        (msk_ms(DAY, time(18, 40)), "closing_auction"),
        (msk_ms(DAY, time(18, 50)), "closed"),
        (msk_ms(DAY, time(19, 5)), "trading"),
        (msk_ms(DAY, time(23, 50)), "closed"),
        (msk_ms(date(2026, 11, 27), time(9, 50)), "opening_auction"),
    ]
    trades = [r for r in records if type(r) is Trade]
    uncross = {msk_ms(DAY, time(10, 0)), msk_ms(DAY, time(18, 50))}
    for trade in trades:
        if trade.ts in uncross:
            continue
        assert phase_at(trade.ts) == "trading", trade
    for ts in uncross:  # one auction trade per ticker, and before the phase change
        assert sorted(t.ticker for t in trades if t.ts == ts) == ["LKOH", "SBER"]
    assert len(trades) > 2000


def test_synthetic_when_spikes_injected_then_each_moves_over_2pct_within_10s() -> None:
    truths: list[dict] = []
    market = SyntheticMarket(11, OPEN, anomaly_rate=3.0, on_anomaly=truths.append)
    trades = [r for r in islice(market.records(), 120_000) if type(r) is Trade]
    spikes = [t for t in truths if t["kind"].startswith("spike")]
    volumes = [t for t in truths if t["kind"] == "volume"]
    assert len(spikes) >= 20 and len(volumes) >= 5
    by_key = {(t.ticker, t.ts): t for t in trades}
    for truth in spikes:
        assert truth["complete"] is True
        assert 0 < truth["end_ts"] - truth["start_ts"] <= 10_000
        change = truth["end_price"] / truth["start_price"] - 1
        assert (
            (change > Decimal("0.02"))
            if truth["kind"] == "spike_up"
            else (change < Decimal("-0.02"))
        )
        # The truth describes trades that are really in the stream.
        assert by_key[(truth["ticker"], truth["start_ts"])].ticker == truth["ticker"]
        assert by_key[(truth["ticker"], truth["end_ts"])].ticker == truth["ticker"]
    for truth in volumes:
        window = [
            t.qty
            for t in trades
            if t.ticker == truth["ticker"] and truth["start_ts"] <= t.ts <= truth["end_ts"]
        ]
        assert len(window) >= 15
        assert sum(window) / len(window) > 5 * INSTRUMENTS[truth["ticker"]].mean_lots


def test_synthetic_when_no_anomalies_then_no_2pct_move_within_10s() -> None:
    trades = [r for r in stream(100_000, seed=2, anomaly_rate=0) if type(r) is Trade]
    recent: dict[str, deque[Trade]] = {}
    for trade in trades:
        window = recent.setdefault(trade.ticker, deque())
        window.append(trade)
        while window[0].ts < trade.ts - 10_000:
            window.popleft()
        prices = [t.price for t in window]
        assert max(prices) / min(prices) - 1 < Decimal("0.02"), trade


def _minute_closes(seed: int) -> list[float]:
    # One trade a second market-wide keeps a whole main session fast; the GARCH variance is
    # per minute, so the clustering does not depend on the trade rate.
    market = SyntheticMarket(seed, OPEN, tickers=["SBER"], anomaly_rate=0, trades_per_s=1.0)
    closes: dict[int, Decimal] = {}
    for record in market.records():
        if record.ts >= msk_ms(DAY, time(18, 40)):
            break
        if type(record) is Trade:
            closes[record.ts // 60_000] = record.price
    return [float(p) for _, p in sorted(closes.items())]


def test_synthetic_when_sessions_simulated_then_volatility_clusters() -> None:
    """GARCH(1,1): squared 1-minute returns are positively autocorrelated (lags 1-10)."""
    averages = []
    for seed in (1, 2, 3, 4):
        closes = _minute_closes(seed)
        squared = [math.log(b / a) ** 2 for a, b in zip(closes, closes[1:], strict=False)]
        mean = sum(squared) / len(squared)
        dev = [s - mean for s in squared]
        var = sum(d * d for d in dev)
        acf = [sum(a * b for a, b in zip(dev, dev[k:], strict=False)) / var for k in range(1, 11)]
        averages.append(sum(acf) / len(acf))
        assert len(squared) > 500
        per_minute = math.sqrt(mean)
        assert 0.0002 < per_minute < 0.001  # SBER: a few basis points a minute
        assert abs(math.log(closes[-1] / closes[0])) < 0.1  # a plausible day
    assert sum(averages) / len(averages) > 0.05


def _run_to_folder(tmp: Path, name: str, seed: int) -> dict[str, bytes]:
    folder = tmp / name
    argv = ["synthetic", "--seed", str(seed), "--max-events", "5000", "--out", str(folder)]
    assert main([*argv, "--anomaly-rate", "2", "--stats-every", "0"]) == 0
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_synthetic_when_same_seed_then_identical_files_and_other_seed_differs(
    tmp_path: Path,
) -> None:
    first = _run_to_folder(tmp_path, "a", 7)
    assert sorted(first) == [
        "dlq.jsonl",
        "market_status.jsonl",
        "orderbook.jsonl",
        "trades.jsonl",
        "truth.jsonl",
    ]
    assert first["trades.jsonl"].count(b"\n") == 5000 and first["dlq.jsonl"] == b""
    assert first == _run_to_folder(tmp_path, "b", 7)
    other = _run_to_folder(tmp_path, "c", 8)
    assert other["trades.jsonl"] != first["trades.jsonl"]
    first_trade = json.loads(first["trades.jsonl"].splitlines()[0])
    assert first_trade["ts"] >= OPEN  # seeded runs start 2026-11-26 10:00 MSK by default


def test_synthetic_when_clock_runs_days_ahead_of_wall_clock_then_nothing_rejected() -> None:
    """Under --rate nights pass in no time; the session clock must not trip the ts check."""
    market = SyntheticMarket(9, OPEN, tickers=["SBER"], trades_per_s=0.05)
    sink, stats = MemorySink(), Stats()
    ended = run(
        market.records(),
        sink,
        stats,
        threading.Event(),
        max_events=12_000,
        events_are_trades=True,
        validate=True,
        now_ms=lambda: OPEN,  # the wall clock stands still at the session start
    )
    assert ended == "max-events" and stats.counts[TRADES] == 12_000
    assert stats.counts[DLQ] == 0
    assert stats.last_ts > OPEN + 3 * 86_400_000
