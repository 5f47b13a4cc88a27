"""Reference semantics of every sql/ output in plain Python, written from the SQL headers.

Independent of Flink: the golden cases' expected rows are produced by these functions
(tests/golden/make_golden.py) and reviewed by hand, and the detection tests compare the Flink
job with them on generated markets. Rows come out as the topic's JSON would parse: timestamps
as ISO-8601 strings, decimals as Decimal, doubles as float.

Over 300 lines: one reference function per sql/ output, in the order of the sql/ folders.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import talib

SIX = Decimal("0.000001")
PHASE_OPEN = "trading"


def iso(ms: int) -> str:
    """Flink's ISO-8601 JSON for a TIMESTAMP_LTZ(3): seconds, then as many fraction digits as
    needed (07:00:21.2Z, 07:00:21.25Z, 07:00:21.251Z), none for a whole second."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if ms % 1000:
        text += f".{ms % 1000:03d}".rstrip("0")
    return text + "Z"


def dec6(value: Decimal) -> Decimal:
    return value.quantize(SIX, rounding=ROUND_HALF_UP)


# --- inputs ---------------------------------------------------------------------------------


def valid_trades(records: Iterable[dict]) -> list[dict]:
    """The trades view: valid records, first copy of each event_id, by ts then file order."""
    seen = set()
    out = []
    for r in sorted(records, key=lambda r: r.get("ts") if r.get("ts") is not None else -1):
        if not all(r.get(k) is not None for k in ("event_id", "ticker", "ts", "trade_id")):
            continue
        if not (r.get("price") or 0) > 0 or not (r.get("qty") or 0) > 0:
            continue
        if r["event_id"] in seen:
            continue
        seen.add(r["event_id"])
        out.append({**r, "price": Decimal(str(r["price"]))})
    return out


@dataclass
class Bar:
    ticker: str
    start: int  # epoch ms
    end: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    turnover: Decimal
    trades: int

    @property
    def vwap(self) -> Decimal:
        return dec6(self.turnover / self.volume)


def bars(trades: list[dict], size_ms: int) -> list[Bar]:
    """OHLCV bars per ticker, open/close by trade number; sorted by ticker, start."""
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for t in trades:
        groups[(t["ticker"], t["ts"] // size_ms * size_ms)].append(t)
    out = []
    for (ticker, start), rows in sorted(groups.items()):
        by_id = sorted(rows, key=lambda r: r["trade_id"])
        out.append(
            Bar(
                ticker,
                start,
                start + size_ms,
                by_id[0]["price"],
                max(r["price"] for r in rows),
                min(r["price"] for r in rows),
                by_id[-1]["price"],
                sum(r["qty"] for r in rows),
                dec6(sum((r["price"] * r["qty"] for r in rows), Decimal(0))),
                len(rows),
            )
        )
    return out


def by_ticker(items: Iterable[Bar]) -> dict[str, list[Bar]]:
    out: dict[str, list[Bar]] = defaultdict(list)
    for item in items:
        out[item.ticker].append(item)
    return out


# --- outputs --------------------------------------------------------------------------------


def candles(trades: list[dict], size_ms: int) -> list[dict]:
    return [
        {
            "ticker": b.ticker,
            "window_start": iso(b.start),
            "window_end": iso(b.end),
            "open": b.open,
            "high": b.high,
            "low": b.low,
            "close": b.close,
            "volume": b.volume,
            "turnover": b.turnover,
            "trades": b.trades,
            "vwap": b.vwap,
        }
        for b in bars(trades, size_ms)
    ]


def rolling_1m(trades: list[dict]) -> list[dict]:
    """HOP 1 min / 10 s over 1 s bars; only windows the ticker's history fully covers."""
    out = []
    for ticker, series in by_ticker(bars(trades, 1000)).items():
        returns = [None] + [
            math.log(float(b.close) / float(a.close))
            for a, b in zip(series, series[1:], strict=False)
        ]
        first = series[0].start
        ends = sorted({(b.start // 10_000 + k) * 10_000 for b in series for k in range(1, 7)})
        for end in ends:
            start = end - 60_000
            inside = [i for i, b in enumerate(series) if start <= b.start < end]
            if not inside or first > start:
                continue
            rets = [returns[i] for i in inside if returns[i] is not None]
            vol = None
            if len(rets) >= 2:
                mean = sum(rets) / len(rets)
                vol = math.sqrt(sum((r - mean) ** 2 for r in rets) / (len(rets) - 1)) * 100
            closes = [series[i].close for i in inside]
            out.append(
                {
                    "ticker": ticker,
                    "window_end": iso(end),
                    "sma": dec6(sum(closes, Decimal(0)) / len(closes)),
                    "volatility": vol,
                    "volume": sum(series[i].volume for i in inside),
                }
            )
    return out


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values]


def indicators_1m(trades: list[dict]) -> list[dict]:
    """TA-Lib over each ticker's 1-minute closes (the job's 300-candle windows are exact for
    shorter histories and within ~1e-9 beyond)."""
    out = []
    for ticker, series in by_ticker(bars(trades, 60_000)).items():
        closes = np.array([float(b.close) for b in series])
        macd, signal, hist = talib.MACD(closes, 12, 26, 9)
        upper, middle, lower = talib.BBANDS(closes, 20, 2, 2)
        columns = {
            "sma_20": talib.SMA(closes, 20),
            "ema_12": talib.EMA(closes, 12),
            "ema_26": talib.EMA(closes, 26),
            "macd": macd,
            "macd_signal": signal,
            "macd_hist": hist,
            "rsi_14": talib.RSI(closes, 14),
            "bb_mid": middle,
            "bb_upper": upper,
            "bb_lower": lower,
        }
        values = {k: _nan_to_none(v) for k, v in columns.items()}
        for i, bar in enumerate(series):
            row = {"ticker": ticker, "window_end": iso(bar.end), "close": bar.close}
            row.update({k: values[k][i] for k in columns})
            out.append(row)
    return out


def phase_at(status: list[dict], ticker: str, ms: int) -> str | None:
    """The phase of the latest status change of `ticker` at or before ms (None: unknown)."""
    phase, best = None, None
    for s in status:
        if s["ticker"] == ticker and s["ts"] <= ms and (best is None or s["ts"] >= best):
            phase, best = s["phase"], s["ts"]
    return phase


def signals(trades: list[dict], status: list[dict] | None = None) -> list[dict]:
    status = status or []
    out = []
    rows = indicators_1m(trades)
    for ticker in sorted({r["ticker"] for r in rows}):
        series = [r for r in rows if r["ticker"] == ticker]
        for prev, cur in zip(series, series[1:], strict=False):
            kinds = []
            if None not in (prev["ema_12"], prev["ema_26"], cur["ema_12"], cur["ema_26"]):
                if (cur["ema_12"] > cur["ema_26"]) != (prev["ema_12"] > prev["ema_26"]):
                    kinds.append("golden_cross" if cur["ema_12"] > cur["ema_26"] else "death_cross")
            if prev["rsi_14"] is not None and cur["rsi_14"] is not None:
                if prev["rsi_14"] <= 70 < cur["rsi_14"]:
                    kinds.append("overbought")
                elif prev["rsi_14"] >= 30 > cur["rsi_14"]:
                    kinds.append("oversold")
            end_ms = _ms(cur["window_end"])
            gate = end_ms - 1  # the candle's rowtime, its last millisecond
            if (phase_at(status, ticker, gate) or PHASE_OPEN) != PHASE_OPEN:
                continue
            if (phase_at(status, "*", gate) or PHASE_OPEN) != PHASE_OPEN:
                continue
            for kind in kinds:
                out.append(
                    {
                        "event_id": f"{ticker}:{kind}:{end_ms}",
                        "ticker": ticker,
                        "ts": cur["window_end"],
                        "kind": kind,
                        "close": cur["close"],
                        "ema_12": cur["ema_12"],
                        "ema_26": cur["ema_26"],
                        "rsi_14": cur["rsi_14"],
                    }
                )
    return out


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def spikes(trades: list[dict], threshold: Decimal = Decimal("0.02")) -> list[dict]:
    """MATCH_RECOGNIZE (S M*? E) WITHIN 10 s, SKIP PAST LAST ROW, per direction, over 200-ms
    bars: scan bars in order; the first bar E completing any open attempt ends a match, whose
    start is the earliest bar S less than 10 s (bar time) before E with the condition and no
    bar between S and E beyond S (a lower low for spike_up, a higher high for spike_down);
    resume after E."""
    out = []
    for ticker, series in by_ticker(bars(trades, 200)).items():
        for kind in ("spike_up", "spike_down"):
            resume = 0
            for j in range(len(series)):
                if j <= resume - 1:
                    continue
                e = series[j]
                for i in range(resume, j):
                    s = series[i]
                    if e.start - s.start >= 10_000:
                        continue
                    between = series[i + 1 : j]
                    if kind == "spike_up":
                        open_attempt = all(m.low >= s.low for m in between)
                        hit = e.high > s.low * (1 + threshold)
                        prices = (s.low, e.high)
                    else:
                        open_attempt = all(m.high <= s.high for m in between)
                        hit = e.low < s.high * (1 - threshold)
                        prices = (s.high, e.low)
                    if open_attempt and hit:
                        out.append(_anomaly(ticker, kind, s.start, e.end, *prices))
                        resume = j + 1
                        break
    return out


def _anomaly(ticker, kind, start, end, start_price, end_price, volume=None, mean=None, sigma=None):
    return {
        "event_id": f"{ticker}:{kind}:{start}",
        "ticker": ticker,
        "kind": kind,
        "start_ts": iso(start),
        "end_ts": iso(end),
        "start_price": start_price,
        "end_price": end_price,
        "change_pct": (float(end_price) / float(start_price) - 1) * 100,
        "volume": volume,
        "volume_mean": mean,
        "volume_sigma": sigma,
    }


def volume_surges(trades: list[dict]) -> list[dict]:
    """1-minute volume above mean + 3 sigma (population) of the ticker's previous 20 candles."""
    out = []
    for ticker, series in by_ticker(bars(trades, 60_000)).items():
        for k in range(20, len(series)):
            prior = [b.volume for b in series[k - 20 : k]]
            v = series[k].volume
            total, squares = sum(prior), sum(x * x for x in prior)
            excess, spread = 20 * v - total, 20 * squares - total * total
            if excess > 0 and excess * excess > 9 * spread:
                bar = series[k]
                out.append(
                    _anomaly(
                        ticker,
                        "volume",
                        bar.start,
                        bar.end,
                        bar.open,
                        bar.close,
                        v,
                        total / 20,
                        math.sqrt(spread) / 20,
                    )
                )
    return out


def anomalies(trades: list[dict]) -> list[dict]:
    return spikes(trades) + volume_surges(trades)


def liquidity_1s(books: Iterable[dict]) -> list[dict]:
    """The snapshot with the highest seq of each (ticker, second); first copy per event_id."""
    seen, last = set(), {}
    for b in sorted(books, key=lambda b: b.get("ts") if b.get("ts") is not None else -1):
        if any(b.get(k) is None for k in ("event_id", "ticker", "ts", "seq", "bids", "asks")):
            continue
        if b["event_id"] in seen:
            continue
        seen.add(b["event_id"])
        key = (b["ticker"], b["ts"] // 1000)
        if key not in last or b["seq"] > last[key]["seq"]:
            last[key] = b
    out = []
    for (ticker, second), b in sorted(last.items()):
        bids = [[Decimal(str(p)), Decimal(str(q))] for p, q in b["bids"] or []]
        asks = [[Decimal(str(p)), Decimal(str(q))] for p, q in b["asks"] or []]
        depth = {
            name: int(sum((q for _, q in side[:n]), Decimal(0)))
            for name, side, n in (
                ("bid_depth_5", bids, 5),
                ("ask_depth_5", asks, 5),
                ("bid_depth_10", bids, 10),
                ("ask_depth_10", asks, 10),
            )
        }
        spread = mid = bps = None
        if bids and asks:
            spread = asks[0][0] - bids[0][0]
            mid = dec6((asks[0][0] + bids[0][0]) / 2)
            bps = float(spread) / float((asks[0][0] + bids[0][0]) / 2) * 10000
        total = depth["bid_depth_10"] + depth["ask_depth_10"]
        out.append(
            {
                "ticker": ticker,
                "window_end": iso((second + 1) * 1000),
                "spread": None if spread is None else dec6(spread),
                "spread_bps": bps,
                "mid": mid,
                **depth,
                "imbalance": (depth["bid_depth_10"] - depth["ask_depth_10"]) / total
                if total
                else None,
            }
        )
    return out


# --- input_rejects --------------------------------------------------------------------------

_REQUIRED = {
    "trades": ("event_id", "ticker", "ts", "trade_id"),
    "orderbook": ("event_id", "ticker", "ts", "seq"),
    "market_status": ("event_id", "ticker", "ts", "phase"),
}


def _flink_json(fields: dict[str, Any]) -> str:
    """JSON_OBJECT as Flink writes it: keys sorted, compact, DECIMAL(18, 6) with 6 decimals."""

    def value(v: Any) -> str:
        if v is None:
            return "null"
        if isinstance(v, Decimal):
            return f"{dec6(v):f}"
        return json.dumps(v)

    return "{" + ",".join(f"{json.dumps(k)}:{value(fields[k])}" for k in sorted(fields)) + "}"


def _reject_reason(kind: str, record: dict) -> str | None:
    for name in _REQUIRED[kind]:
        if record.get(name) is None:
            return f"missing {name}"
    if kind == "orderbook":
        for name in ("bids", "asks"):
            if record.get(name) is None:
                return f"{name} missing or not a list of [price, qty] levels"
    if kind == "trades":
        for name in ("price", "qty"):
            if record.get(name) is None:
                return f"missing {name}"
            if not record[name] > 0:
                return f"{name} is not positive"
    return None


def _reject_payload(kind: str, record: dict) -> str:
    if kind == "trades":
        fields = {
            "board": record.get("board"),
            "trade_id": record.get("trade_id"),
            "price": None if record.get("price") is None else Decimal(str(record["price"])),
            "qty": record.get("qty"),
            "side": record.get("side"),
        }
    elif kind == "orderbook":
        fields = {
            "seq": record.get("seq"),
            "bid_levels": len(record["bids"]) if record.get("bids") is not None else None,
            "ask_levels": len(record["asks"]) if record.get("asks") is not None else None,
        }
    else:
        fields = {"phase": record.get("phase")}
    return _flink_json(fields)


def input_rejects(inputs: dict[str, list[dict | str]]) -> list[dict]:
    """Records of files that parse but lack what the job needs (replay: no offsets, no gaps)."""
    out = []
    for kind in ("trades", "orderbook", "market_status"):
        for record in inputs.get(kind, []):
            if not isinstance(record, dict):
                continue  # unreadable: on a topic it is a gap in the offsets, in a file nothing
            reason = _reject_reason(kind, record)
            if reason is None:
                continue
            out.append(
                {
                    "input": kind,
                    "kafka_partition": None,
                    "first_offset": None,
                    "last_offset": None,
                    "records": 1,
                    "reason": reason,
                    "event_id": record.get("event_id"),
                    "ticker": record.get("ticker"),
                    "ts": record.get("ts"),
                    "payload": _reject_payload(kind, record),
                }
            )
    return out


# --- strategies (sql/strategies/, runner/backtest_sql.py) ------------------------------------

STRATEGY_BUDGET = 100_000.0  # roubles per entry, as written in each strategy file


def _strategy_signals(name: str, rows: list[dict]) -> list[int | None]:
    """The decision of each candle: 1 go long, 0 go flat, None keep (from the file headers)."""
    out: list[int | None] = []
    for i, r in enumerate(rows):
        signal = None
        if name == "ema_cross_12_26" and i > 0:
            p = rows[i - 1]
            fast, slow, pfast, pslow = r["ema_12"], r["ema_26"], p["ema_12"], p["ema_26"]
            if None not in (fast, slow, pfast, pslow):
                if fast > slow and pfast <= pslow:
                    signal = 1
                elif fast <= slow and pfast > pslow:
                    signal = 0
        elif name == "rsi_reversion_14" and r["rsi_14"] is not None:
            signal = 1 if r["rsi_14"] < 30 else 0 if r["rsi_14"] > 70 else None
        elif name == "bollinger_breakout_20" and r["bb_upper"] is not None:
            close = float(r["close"])
            signal = 1 if close > r["bb_upper"] else 0 if close < r["bb_mid"] else None
        out.append(signal)
    return out


def strategy(
    name: str,
    trades: list[dict],
    commission: float = 0.0003,
    slippage: float = 0.0001,
    capital: float = 1_000_000.0,
) -> list[dict]:
    """A strategy's rows, simulated candle by candle: the order of candle i fills at the open
    of candle i+1; an entry at open * (1 + slippage); commission on every fill's value."""
    from producer.reference import INSTRUMENTS

    candles_by_end = {(b.ticker, iso(b.end)): b for b in bars(trades, 60_000)}
    indicators = defaultdict(list)
    for row in indicators_1m(trades):
        indicators[row["ticker"]].append(row)
    out = []
    portfolio: dict[str, dict[str, float]] = defaultdict(dict)  # minute end -> ticker -> book
    for ticker, rows in indicators.items():
        if ticker not in INSTRUMENTS:
            continue
        lot = INSTRUMENTS[ticker].lot
        signals = _strategy_signals(name, rows)
        long, target, pending = False, 0, 0  # pending: the order to fill at the next open
        position, cash, peak = 0, capital, -math.inf
        for row, signal in zip(rows, signals, strict=True):
            bar = candles_by_end[(ticker, row["window_end"])]
            open_, close = float(bar.open), float(bar.close)
            fill_lots, fill_price, paid = pending - position, None, 0.0
            if fill_lots:
                fill_price = open_ * (1 + slippage) if fill_lots > 0 else open_
                paid = abs(fill_lots) * lot * fill_price * commission
                cash -= fill_lots * lot * fill_price + paid
                position = pending
            if signal == 1 and not long:
                long, target = True, math.floor(STRATEGY_BUDGET / (close * lot))
            elif signal == 0 and long:
                long, target = False, 0
            pending = target
            equity = cash + position * lot * close
            peak = max(peak, equity)
            out.append(
                {
                    "ticker": ticker,
                    "window_end": row["window_end"],
                    "open": bar.open,
                    "close": bar.close,
                    "signal": signal,
                    "target_lots": target,
                    "position": position,
                    "lot_size": lot,
                    "fill_lots": fill_lots,
                    "fill_price": fill_price,
                    "commission": paid,
                    "capital": capital,
                    "cash": cash,
                    "equity": equity,
                    "drawdown": 1 - equity / peak,
                }
            )
            portfolio[row["window_end"]][ticker] = {
                "commission": paid,
                "cash": cash,
                "equity": equity,
            }
    last: dict[str, dict[str, float]] = {}
    peak = -math.inf
    for end in sorted(portfolio):
        last.update(portfolio[end])
        equity = sum(b["equity"] for b in last.values())
        peak = max(peak, equity)
        out.append(
            {
                "ticker": "*",
                "window_end": end,
                **dict.fromkeys(
                    ("open", "close", "signal", "target_lots", "position", "lot_size"), None
                ),
                "fill_lots": None,
                "fill_price": None,
                "commission": sum(b["commission"] for b in portfolio[end].values()),
                "capital": capital * len(last),
                "cash": sum(b["cash"] for b in last.values()),
                "equity": equity,
                "drawdown": 1 - equity / peak,
            }
        )
    return out
