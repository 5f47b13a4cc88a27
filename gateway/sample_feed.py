"""Synthetic result rows, shaped like the Flink job's, for trying the page without the job.

    python -m gateway.sample_feed --bootstrap 127.0.0.1:9092 --write-catalog .run/sample-catalog.json
    python -m gateway --catalog .run/sample-catalog.json

Writes a few hours of 1-minute candles with their indicators, crossovers, spikes, liquidity and
the market phase to the real topic names. `--follow N` then adds one minute every N seconds.
The tests use the same rows.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

CANDLE_COLUMNS = [
    ("ticker", "STRING"),
    ("window_start", "TIMESTAMP_LTZ(3)"),
    ("window_end", "TIMESTAMP_LTZ(3)"),
    ("open", "DECIMAL(18, 4)"),
    ("high", "DECIMAL(18, 4)"),
    ("low", "DECIMAL(18, 4)"),
    ("close", "DECIMAL(18, 4)"),
    ("volume", "BIGINT"),
    ("turnover", "DECIMAL(24, 4)"),
    ("trades", "BIGINT"),
    ("vwap", "DECIMAL(18, 4)"),
]
INDICATOR_FIELDS = [
    "close",
    "sma_20",
    "ema_12",
    "ema_26",
    "macd",
    "macd_signal",
    "macd_hist",
    "rsi_14",
    "bb_mid",
    "bb_upper",
    "bb_lower",
]
LIQUIDITY_FIELDS = [
    "spread",
    "spread_bps",
    "mid",
    "bid_depth_5",
    "ask_depth_5",
    "bid_depth_10",
    "ask_depth_10",
    "imbalance",
]


def _columns(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": n, "type": t} for n, t in pairs]


def sample_catalog(topics: dict[str, str] | None = None) -> dict:
    """A catalog in the runner's shape; `topics` maps a stream name to another topic (tests)."""
    topics = topics or {}

    def out(
        name: str,
        columns: list[tuple[str, str]],
        grain: list[str],
        live: bool = False,
        **extra: object,
    ) -> dict:
        return {
            "name": name,
            "topic": topics.get(name, f"moex.{name}"),
            "live_topic": topics.get(f"{name}_live", f"moex.{name}_live") if live else None,
            "file": f"sql/sample/{name}.sql",
            "description": extra.pop("description", name),
            "grain": grain,
            "guarantee": "exactly-once",
            "dedup_key": "event_id" if live else None,
            "columns": _columns(columns),
        }

    ts = "TIMESTAMP_LTZ(3)"
    return {
        "outputs": [
            out(
                "candles_1m",
                CANDLE_COLUMNS,
                ["ticker", "window_end"],
                description="one-minute OHLCV candles",
            ),
            out(
                "indicators_1m",
                [("ticker", "STRING"), ("window_end", ts)]
                + [(f, "DOUBLE") for f in INDICATOR_FIELDS],
                ["ticker", "window_end"],
                description="SMA/EMA/MACD/RSI/Bollinger on 1-minute closes",
            ),
            out(
                "signals",
                [
                    ("event_id", "STRING"),
                    ("ticker", "STRING"),
                    ("ts", ts),
                    ("kind", "STRING"),
                    ("price", "DOUBLE"),
                    ("ema_12", "DOUBLE"),
                    ("ema_26", "DOUBLE"),
                    ("rsi_14", "DOUBLE"),
                ],
                ["event_id"],
                live=True,
                description="EMA crossovers and RSI extremes",
            ),
            out(
                "anomalies",
                [
                    ("event_id", "STRING"),
                    ("ticker", "STRING"),
                    ("kind", "STRING"),
                    ("start_ts", ts),
                    ("end_ts", ts),
                    ("start_price", "DOUBLE"),
                    ("end_price", "DOUBLE"),
                    ("change_pct", "DOUBLE"),
                    ("volume", "BIGINT"),
                ],
                ["event_id"],
                live=True,
                description="price spikes and volume bursts",
            ),
            out(
                "liquidity_1s",
                [("ticker", "STRING"), ("window_end", ts)]
                + [(f, "DOUBLE") for f in LIQUIDITY_FIELDS],
                ["ticker", "window_end"],
                description="spread and book depth per second",
            ),
        ]
    }


def iso(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


@dataclass
class TickerFeed:
    """A random walk with indicator state, one 1-minute candle per `step()`."""

    ticker: str
    price: float
    rng: random.Random
    closes: list[float] = field(default_factory=list)
    ema_12: float | None = None
    ema_26: float | None = None
    macd_signal: float | None = None
    macds: list[float] = field(default_factory=list)
    avg_gain: float | None = None
    avg_loss: float | None = None

    def step(self, window_start: datetime) -> dict[str, list[dict]]:
        rows: dict[str, list[dict]] = {
            "candles_1m": [],
            "indicators_1m": [],
            "signals": [],
            "anomalies": [],
            "liquidity_1s": [],
        }
        window_end = window_start + timedelta(minutes=1)
        open_ = self.price
        drift = math.sin(len(self.closes) / 37.0) * 0.0009  # slow waves, so EMAs cross now and then
        path = [open_]
        for _ in range(12):
            path.append(path[-1] * (1 + drift / 12 + self.rng.gauss(0, 0.0012)))
        spike = self.rng.random() < 0.03
        if spike:
            path[-1] *= 1 + self.rng.choice([-1, 1]) * self.rng.uniform(0.006, 0.012)
        close = round(path[-1], 2)
        high, low = round(max(path), 2), round(min(path), 2)
        volume = int(self.rng.uniform(2_000, 9_000) * (4 if spike else 1))
        vwap = round(sum(path) / len(path), 4)
        rows["candles_1m"].append(
            {
                "ticker": self.ticker,
                "window_start": iso(window_start),
                "window_end": iso(window_end),
                "open": round(open_, 2),
                "high": high,
                "low": low,
                "close": close,
                "volume": volume,
                "turnover": round(volume * vwap, 2),
                "trades": int(volume / 37),
                "vwap": vwap,
            }
        )
        self.price = close
        previous = (self.ema_12, self.ema_26, self._rsi())
        indicators = self._indicators(close)
        rows["indicators_1m"].append(
            {"ticker": self.ticker, "window_end": iso(window_end), **indicators}
        )
        rows["signals"].extend(self._signals(previous, indicators, window_end, close))
        if spike:
            change = (close - open_) / open_ * 100
            rows["anomalies"].append(
                {
                    "event_id": str(uuid.UUID(int=self.rng.getrandbits(128))),
                    "ticker": self.ticker,
                    "kind": "spike_up" if change > 0 else "spike_down",
                    "start_ts": iso(window_start),
                    "end_ts": iso(window_end),
                    "start_price": round(open_, 2),
                    "end_price": close,
                    "change_pct": round(change, 3),
                    "volume": volume,
                }
            )
        for second in range(0, 60, 10):
            rows["liquidity_1s"].append(
                self._liquidity(window_start + timedelta(seconds=second + 1), close)
            )
        return rows

    def _indicators(self, close: float) -> dict[str, float | None]:
        self.closes.append(close)
        n = len(self.closes)
        out: dict[str, float | None] = dict.fromkeys(INDICATOR_FIELDS)
        out["close"] = close
        if n >= 20:
            window = self.closes[-20:]
            mean = sum(window) / 20
            sigma = math.sqrt(sum((c - mean) ** 2 for c in window) / 20)
            out.update(
                sma_20=mean, bb_mid=mean, bb_upper=mean + 2 * sigma, bb_lower=mean - 2 * sigma
            )
        self.ema_12 = self._ema(self.ema_12, 12, close)
        self.ema_26 = self._ema(self.ema_26, 26, close)
        out.update(ema_12=self.ema_12, ema_26=self.ema_26)
        if self.ema_12 is not None and self.ema_26 is not None:
            macd = self.ema_12 - self.ema_26
            self.macds.append(macd)
            if len(self.macds) == 9:
                self.macd_signal = sum(self.macds) / 9
            elif len(self.macds) > 9:
                self.macd_signal += (macd - self.macd_signal) * 2 / 10
            out.update(macd=macd, macd_signal=self.macd_signal)
            if self.macd_signal is not None:
                out["macd_hist"] = macd - self.macd_signal
        if n >= 2:
            change = close - self.closes[-2]
            gain, loss = max(change, 0.0), max(-change, 0.0)
            if n <= 15:
                self.avg_gain = (self.avg_gain or 0.0) + gain / 14
                self.avg_loss = (self.avg_loss or 0.0) + loss / 14
            else:
                self.avg_gain = (self.avg_gain * 13 + gain) / 14
                self.avg_loss = (self.avg_loss * 13 + loss) / 14
            out["rsi_14"] = self._rsi()
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}

    def _ema(self, current: float | None, span: int, close: float) -> float | None:
        if len(self.closes) < span:
            return None
        if current is None:
            return sum(self.closes[-span:]) / span
        return current + (close - current) * 2 / (span + 1)

    def _rsi(self) -> float | None:
        if len(self.closes) < 15 or self.avg_gain is None or self.avg_loss is None:
            return None
        if self.avg_loss == 0:
            return 100.0
        return 100 - 100 / (1 + self.avg_gain / self.avg_loss)

    def _signals(
        self,
        previous: tuple[float | None, float | None, float | None],
        indicators: dict[str, float | None],
        window_end: datetime,
        close: float,
    ) -> Iterator[dict]:
        fast_before, slow_before, rsi_before = previous
        fast, slow, rsi = indicators["ema_12"], indicators["ema_26"], indicators["rsi_14"]
        kinds = []
        if None not in (fast_before, slow_before, fast, slow):
            if fast_before <= slow_before and fast > slow:
                kinds.append("golden_cross")
            elif fast_before >= slow_before and fast < slow:
                kinds.append("death_cross")
        if rsi is not None and rsi_before is not None:
            if rsi_before <= 70 < rsi:
                kinds.append("overbought")
            elif rsi_before >= 30 > rsi:
                kinds.append("oversold")
        for kind in kinds:
            yield {
                "event_id": str(uuid.UUID(int=self.rng.getrandbits(128))),
                "ticker": self.ticker,
                "ts": iso(window_end),
                "kind": kind,
                "price": close,
                "ema_12": fast,
                "ema_26": slow,
                "rsi_14": rsi,
            }

    def _liquidity(self, window_end: datetime, mid: float) -> dict:
        spread = round(max(0.01, abs(self.rng.gauss(0.03, 0.02))), 2)
        bid5, ask5 = self.rng.randint(800, 6000), self.rng.randint(800, 6000)
        bid10, ask10 = bid5 + self.rng.randint(500, 5000), ask5 + self.rng.randint(500, 5000)
        return {
            "ticker": self.ticker,
            "window_end": iso(window_end),
            "spread": spread,
            "spread_bps": round(spread / mid * 10_000, 3),
            "mid": mid,
            "bid_depth_5": bid5,
            "ask_depth_5": ask5,
            "bid_depth_10": bid10,
            "ask_depth_10": ask10,
            "imbalance": round((bid5 - ask5) / (bid5 + ask5), 4),
        }


START_PRICES = {"SBER": 285.0, "GAZP": 128.0, "LKOH": 6900.0, "YNDX": 3900.0, "GMKN": 152.0}


def sample_session(
    tickers: list[str], minutes: int, end: datetime, seed: int = 7
) -> tuple[dict[str, list[dict]], dict[str, TickerFeed]]:
    """`minutes` candles per ticker ending at `end`, with every derived stream."""
    rng = random.Random(seed)
    feeds = {
        t: TickerFeed(t, START_PRICES.get(t, 100.0), random.Random(rng.random())) for t in tickers
    }
    first = end.replace(second=0, microsecond=0) - timedelta(minutes=minutes)
    rows: dict[str, list[dict]] = {}
    for i in range(minutes):
        for feed in feeds.values():
            for stream, produced in feed.step(first + timedelta(minutes=i)).items():
                rows.setdefault(stream, []).extend(produced)
    status_ts = int(first.timestamp() * 1000)
    rows["market_status"] = [
        {"event_id": f"phase-{status_ts}", "ticker": "*", "ts": status_ts, "phase": "trading"}
    ]
    return rows, feeds


def publish(bootstrap: str, catalog: dict, rows: dict[str, list[dict]]) -> int:
    """Send rows keyed by ticker to each stream's topic, and to its live copy when it has one."""
    from kafka import KafkaProducer

    targets = {
        o["name"]: [t for t in (o["topic"], o.get("live_topic")) if t] for o in catalog["outputs"]
    }
    targets.setdefault("market_status", ["moex.market_status"])
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    sent = 0
    try:
        for stream, stream_rows in rows.items():
            for topic in targets.get(stream, []):
                for row in stream_rows:
                    producer.send(topic, key=row["ticker"].encode(), value=json.dumps(row).encode())
                    sent += 1
        producer.flush(30)
    finally:
        producer.close(5)
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.sample_feed", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--tickers", default="SBER,GAZP,LKOH")
    parser.add_argument("--minutes", type=int, default=240)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--write-catalog", type=Path, help="also write a catalog for these topics here"
    )
    parser.add_argument(
        "--follow", type=float, default=0, help="then add one minute every N seconds"
    )
    args = parser.parse_args(argv)
    catalog = sample_catalog()
    if args.write_catalog:
        args.write_catalog.parent.mkdir(parents=True, exist_ok=True)
        args.write_catalog.write_text(json.dumps(catalog, indent=1))
    tickers = [t.strip() for t in args.tickers.split(",") if t.strip()]
    now = datetime.now(UTC)
    rows, feeds = sample_session(tickers, args.minutes, now, args.seed)
    print(f"sample_feed: {publish(args.bootstrap, catalog, rows)} records sent", flush=True)
    minute = now.replace(second=0, microsecond=0)
    while args.follow > 0:
        time.sleep(args.follow)
        step: dict[str, list[dict]] = {}
        for feed in feeds.values():
            for stream, produced in feed.step(minute).items():
                step.setdefault(stream, []).extend(produced)
        minute += timedelta(minutes=1)
        publish(args.bootstrap, catalog, step)
    return 0


if __name__ == "__main__":
    sys.exit(main())
