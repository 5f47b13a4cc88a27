"""The peer job in Quix Streams: 1-minute OHLCV candles and EMA(12) per ticker, exactly-once.

    .cache/bench-venv/bin/python benchmarks/peer_quix.py --bootstrap B --input peer.trades \
        --candles quix.candles_1m --ema quix.ema_12_1m --group G --state-dir D

The same job as benchmarks/sql_peer/ (the project's own trades source, 1-minute bars and the
ema_12 pandas UDAF) so the two can be timed on the same preloaded topic: windows in event time
(the trade's `ts`), a candle emitted when a later trade of its ticker closes its minute, EMA(12)
with the TA-Lib convention (NULL for the first 11 candles, seeded with the SMA of the first 12
closes, then ema = a * close + (1 - a) * ema with a = 2 / 13). Run by `python -m benchmarks`
under .cache/bench-venv (quixstreams==3.28.1 and its confluent-kafka), never under .venv.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from quixstreams import Application
from quixstreams.dataframe.windows import Count, First, Last, Max, Min, Sum

EMA_SPAN = 12
ALPHA = 2 / (EMA_SPAN + 1)


def iso(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms // 1000)) + (
        f".{epoch_ms % 1000:03d}Z"
    )


def trade_values(trade: dict) -> dict:
    price = float(trade["price"])
    return {"price": price, "qty": trade["qty"], "turnover": price * trade["qty"]}


def candle_row(window: dict, key: bytes, _timestamp: int, _headers) -> dict:
    return {
        "ticker": key.decode(),
        "window_start": iso(window["start"]),
        "window_end": iso(window["end"]),
        "open": window["open"],
        "high": window["high"],
        "low": window["low"],
        "close": window["close"],
        "volume": window["volume"],
        "turnover": window["turnover"],
        "trades": window["trades"],
        "vwap": window["turnover"] / window["volume"] if window["volume"] else None,
    }


def ema_row(candle: dict, state) -> dict:
    """EMA(12) of the closes so far, TA-Lib seeding; the state is per ticker (message key)."""
    ema = state.get("ema")
    if ema is None:
        seed = state.get("seed", [])
        seed.append(candle["close"])
        if len(seed) == EMA_SPAN:
            ema = sum(seed) / EMA_SPAN
            state.set("ema", ema)
            state.delete("seed")
        else:
            state.set("seed", seed)
    else:
        ema = ALPHA * candle["close"] + (1 - ALPHA) * ema
        state.set("ema", ema)
    return {
        "ticker": candle["ticker"],
        "window_end": candle["window_end"],
        "close": candle["close"],
        "ema_12": ema,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/peer_quix.py")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--candles", required=True)
    parser.add_argument("--ema", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--commit-interval", type=float, default=1.0)
    args = parser.parse_args(argv)

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    trades = app.topic(
        args.input,
        value_deserializer="json",
        timestamp_extractor=lambda value, _headers, _ts, _type: value["ts"],
    )
    candles_topic = app.topic(args.candles, value_serializer="json")
    ema_topic = app.topic(args.ema, value_serializer="json")

    sdf = app.dataframe(trades)
    sdf = sdf.apply(trade_values)
    sdf = (
        sdf.tumbling_window(duration_ms=60_000)
        .agg(
            open=First("price"),
            high=Max("price"),
            low=Min("price"),
            close=Last("price"),
            volume=Sum("qty"),
            turnover=Sum("turnover"),
            trades=Count(),
        )
        .final()
    )
    sdf = sdf.apply(candle_row, metadata=True)
    sdf.to_topic(candles_topic)
    sdf = sdf.apply(ema_row, stateful=True)
    sdf.to_topic(ema_topic)

    print(json.dumps({"event": "running", "wall": time.time()}), flush=True)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
