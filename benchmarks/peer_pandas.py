"""The reference a user would reach for instead of a replay: pandas + TA-Lib in one process.

    python -m benchmarks.peer_pandas --trades T.jsonl [--orderbook B.jsonl]

The same file `runner replay` reads, the same work as sql/ on trades: valid trades de-duplicated
by event_id; OHLCV candles of 200 ms, 1 s, 1 min and 5 min per ticker with open/close by
exchange trade number; on 1-minute closes TA-Lib SMA(20), EMA(12), EMA(26), MACD(12, 26, 9),
RSI(14) and BBANDS(20, 2); a rolling 10-s spike scan on the 200-ms bars (a bar whose high is
> 2 % above the lowest low of the bars started in the 10 s before it, and the mirror for
falls); with --orderbook also the 1-second spread of the order book (best bid/ask). Prints one
JSON line: seconds spent reading (pandas.read_json), computing, in all, and the row counts.
Vectorised pandas, as a notebook would do it; the times include the JSON read because the
replay's include its JSON source.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd
import talib

CANDLE_MS = {"candles_200ms": 200, "candles_1s": 1000, "candles_1m": 60_000, "candles_5m": 300_000}
SPIKE = 0.02
SPIKE_WINDOW = "10s"


def read_trades(path: str) -> pd.DataFrame:
    trades = pd.read_json(path, lines=True, dtype={"price": "float64"})
    valid = trades.dropna(subset=["event_id", "ticker", "ts", "trade_id", "price", "qty"])
    valid = valid[(valid["price"] > 0) & (valid["qty"] > 0)]
    return valid.drop_duplicates("event_id")


def candles(trades: pd.DataFrame, size_ms: int) -> pd.DataFrame:
    """OHLCV per ticker and window; open/close of the first/last trade by trade number."""
    ordered = trades.sort_values(["ticker", "trade_id"], kind="stable")
    ordered = ordered.assign(
        start_ms=ordered["ts"] - ordered["ts"] % size_ms,
        turnover=ordered["price"] * ordered["qty"],
    )
    return (
        ordered.groupby(["ticker", "start_ms"], sort=True)
        .agg(
            open=("price", "first"),
            high=("price", "max"),
            low=("price", "min"),
            close=("price", "last"),
            volume=("qty", "sum"),
            turnover=("turnover", "sum"),
            trades=("price", "size"),
        )
        .reset_index()
    )


def indicators(candles_1m: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for _, group in candles_1m.groupby("ticker", sort=False):
        close = group["close"].to_numpy(dtype="float64")
        macd, signal, hist = talib.MACD(close, 12, 26, 9)
        upper, middle, lower = talib.BBANDS(close, 20, 2, 2)
        parts.append(
            group.assign(
                sma_20=talib.SMA(close, 20),
                ema_12=talib.EMA(close, 12),
                ema_26=talib.EMA(close, 26),
                macd=macd,
                macd_signal=signal,
                macd_hist=hist,
                rsi_14=talib.RSI(close, 14),
                bb_upper=upper,
                bb_mid=middle,
                bb_lower=lower,
            )
        )
    return pd.concat(parts) if parts else candles_1m


def spikes(bars: pd.DataFrame) -> pd.DataFrame:
    """Bars more than 2 % above the lowest low (or below the highest high) of the last 10 s."""
    found = []
    for _, group in bars.groupby("ticker", sort=False):
        timed = group.set_index(pd.to_datetime(group["start_ms"], unit="ms"))
        trough = timed["low"].rolling(SPIKE_WINDOW).min()
        peak = timed["high"].rolling(SPIKE_WINDOW).max()
        up = timed[timed["high"] > trough * (1 + SPIKE)].assign(kind="spike_up")
        down = timed[timed["low"] < peak * (1 - SPIKE)].assign(kind="spike_down")
        found.extend((up, down))
    return pd.concat(found) if found else bars.iloc[0:0]


def liquidity(path: str) -> pd.DataFrame:
    books = pd.read_json(path, lines=True)
    best_bid = np.array([side[0][0] if len(side) else np.nan for side in books["bids"]])
    best_ask = np.array([side[0][0] if len(side) else np.nan for side in books["asks"]])
    books = books.assign(
        second=books["ts"] - books["ts"] % 1000,
        spread_bps=(best_ask - best_bid) / ((best_ask + best_bid) / 2) * 10_000,
    )
    return books.groupby(["ticker", "second"]).agg(spread_bps=("spread_bps", "mean")).reset_index()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer_pandas", description=__doc__)
    parser.add_argument("--trades", required=True)
    parser.add_argument("--orderbook")
    args = parser.parse_args(argv)
    started = time.monotonic()
    trades = read_trades(args.trades)
    read_s = time.monotonic() - started
    computed = time.monotonic()
    counts = {}
    frames = {name: candles(trades, size) for name, size in CANDLE_MS.items()}
    counts.update({name: len(frame) for name, frame in frames.items()})
    counts["indicators_1m"] = len(indicators(frames["candles_1m"]))
    counts["spikes"] = len(spikes(frames["candles_200ms"]))
    compute_s = time.monotonic() - computed
    if args.orderbook:
        books_started = time.monotonic()
        counts["liquidity_1s"] = len(liquidity(args.orderbook))
        books_s = time.monotonic() - books_started
    else:
        books_s = 0.0
    print(
        json.dumps(
            {
                "trades": len(trades),
                "read_s": round(read_s, 3),
                "compute_s": round(compute_s, 3),
                "books_s": round(books_s, 3),
                "total_s": round(time.monotonic() - started, 3),
                "counts": counts,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
