"""MOEX AlgoPack Super Candles and Mega Alerts in plain Python/pandas, from the published texts.

Written from the definitions, not from sql/65_algopack/: the golden cases' expected rows come
from here (tests/golden/make_golden.py) and tests/test_algopack.py compares the Flink job with
it on generated markets. Sources:
- moexalgo/moexalgo.github.io docs/description/supercandles.md and docs/method/supercandles.md
  (commit f10e63de): field lists, units (vol in lots, val in roubles, spreads in basis points),
  pr_change = 100 (close - open) / open, pr_vwap_b = val_b / vol_b, disb from -1 (all sells) to
  1 (all buys), vwap_b = b_val / b_vol, vwap_b_1mio = VWAP of the best levels worth 1 mio RUB.
- moexalgo/moexalgo moexalgo/beta/resample.py (commit 4df0dbb2): disb = (vol_b - vol_s) / vol,
  pr_vwap = val / (vol x lotsize), OBStats fields are means over the interval, book vwap_b =
  mean val_b / (mean vol_b x lotsize).
- moexalgo/algopack-skills skills/algopack-mega-alerts/references/mega-alerts.md and
  moexalgo.github.io docs/method/megaalerts.md: alert types, threshold/value, reference stats.
Where the texts leave a choice open, the choice is the one documented in docs/algopack.md (and
in each SQL header): pr_std, books shallower than 10 levels, the history of the alerts.
Rows come out as the topic's JSON parses (tests/golden/compare.py): ISO timestamps, Decimal
for DECIMAL columns, float for DOUBLE, None for NULL.

Over 300 lines: the three AlgoPack products (TradeStats, OBStats, Mega Alerts) written out
from their published definitions, in one place so the sources above cover them all.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd

from producer.reference import INSTRUMENTS
from tests.golden.oracle import _ms, iso

oracle_iso = iso  # the topics' ISO-8601 text of an epoch-ms instant

SIX = Decimal("0.000001")
FIVE_MIN = 300_000


def _q6(value: Decimal) -> Decimal:
    return value.quantize(SIX, rounding=ROUND_HALF_UP)


def lot(ticker: str) -> int | None:
    found = INSTRUMENTS.get(ticker)
    return found.lot if found else None


def _frame(trades: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(trades)
    df["price"] = df["price"].map(lambda p: Decimal(str(p)))
    return df.sort_values(["ticker", "trade_id"]).reset_index(drop=True)


# --- TradeStats ------------------------------------------------------------------------------


def _second_returns(group: pd.DataFrame) -> pd.DataFrame:
    """Per second with trades: the close (last trade by number) and the simple return from the
    previous second with trades."""
    closes = group.groupby(group["ts"] // 1000)["price"].last()  # group is sorted by trade_id
    out = pd.DataFrame({"second": closes.index, "close": closes.values})
    prev = out["close"].shift(1)
    out["ret"] = [
        None if p is None or p != p else float(c) / float(p) - 1
        for c, p in zip(out["close"], prev, strict=True)
    ]
    out["prev_second"] = out["second"].shift(1)
    return out


def tradestats_5m(trades: list[dict]) -> list[dict]:
    """TradeStats per ticker and 5-minute window; `trades` are valid and de-duplicated."""
    rows = []
    df = _frame(trades)
    for ticker, by_ticker in df.groupby("ticker", sort=True):
        returns = _second_returns(by_ticker)
        lot_size = lot(ticker)
        for start, w in by_ticker.groupby(by_ticker["ts"] // FIVE_MIN * FIVE_MIN, sort=True):
            w = w.sort_values("trade_id")
            buys, sells = w[w["side"] == "B"], w[w["side"] == "S"]

            def value(part: pd.DataFrame) -> Decimal:
                return sum(
                    (p * q for p, q in zip(part["price"], part["qty"], strict=True)), Decimal(0)
                )

            vol, vol_b, vol_s = int(w["qty"].sum()), int(buys["qty"].sum()), int(sells["qty"].sum())
            val, val_b, val_s = value(w), value(buys), value(sells)
            first, last = w["price"].iloc[0], w["price"].iloc[-1]
            inside = returns[
                (returns["second"] * 1000 >= start)
                & (returns["second"] * 1000 < start + FIVE_MIN)
                & (returns["prev_second"] * 1000 >= start)
            ]
            rets = [r for r in inside["ret"] if r is not None]
            rows.append(
                {
                    "ticker": ticker,
                    "window_start": iso(start),
                    "window_end": iso(start + FIVE_MIN),
                    "pr_open": first,
                    "pr_high": max(w["price"]),
                    "pr_low": min(w["price"]),
                    "pr_close": last,
                    "pr_std": float(np.std(rets)) if rets else None,
                    "vol": vol,
                    "val": None if lot_size is None else _q6(val * lot_size),
                    "trades": len(w),
                    # val / (vol x lot) is val in roubles per lot unit over lots: the lot cancels
                    "pr_vwap": _q6(val / vol),
                    "pr_change": (float(last) - float(first)) / float(first) * 100,
                    "trades_b": len(buys),
                    "trades_s": len(sells),
                    "val_b": None if lot_size is None else _q6(val_b * lot_size),
                    "val_s": None if lot_size is None else _q6(val_s * lot_size),
                    "vol_b": vol_b,
                    "vol_s": vol_s,
                    "disb": (vol_b - vol_s) / vol,
                    "pr_vwap_b": _q6(val_b / vol_b) if vol_b else None,
                    "pr_vwap_s": _q6(val_s / vol_s) if vol_s else None,
                }
            )
    return rows


# --- OBStats ---------------------------------------------------------------------------------


def _book_frame(books: list[dict]) -> pd.DataFrame:
    """Usable snapshots, first copy per event_id (the orderbook view), one row per level."""
    seen, rows = set(), []
    for b in sorted(books, key=lambda b: b.get("ts") if b.get("ts") is not None else -1):
        if any(b.get(k) is None for k in ("event_id", "ticker", "ts", "seq", "bids", "asks")):
            continue
        if b["event_id"] in seen:
            continue
        seen.add(b["event_id"])
        for side, levels in (("b", b["bids"]), ("s", b["asks"])):
            for depth, (price, qty) in enumerate(levels, start=1):
                rows.append(
                    (
                        b["event_id"],
                        b["ticker"],
                        b["ts"],
                        side,
                        depth,
                        Decimal(str(price)),
                        Decimal(str(qty)),
                    )
                )
        if not b["bids"] and not b["asks"]:
            rows.append((b["event_id"], b["ticker"], b["ts"], None, 0, None, None))
    return pd.DataFrame(rows, columns=["event_id", "ticker", "ts", "side", "depth", "price", "qty"])


def _fill_price(
    levels: pd.DataFrame, lot_size: int, budget: Decimal = Decimal(1_000_000)
) -> Decimal | None:
    """Average price per share of spending `budget` roubles on the levels, best first; None if
    the levels hold less."""
    money, shares = Decimal(0), Decimal(0)
    for price, qty in zip(levels["price"], levels["qty"], strict=True):
        take = min(price * qty * lot_size, budget - money)
        money += take
        shares += take / price
        if money == budget:
            return budget / shares
    return None


def _snapshot(levels: pd.DataFrame, lot_size: int) -> dict:
    bids = levels[levels["side"] == "b"].sort_values("depth")
    asks = levels[levels["side"] == "s"].sort_values("depth")
    vol_b, vol_s = bids["qty"].sum(), asks["qty"].sum()
    val_b = (bids["price"] * bids["qty"]).sum() * lot_size
    val_s = (asks["price"] * asks["qty"]).sum() * lot_size

    def imbalance(b, s):
        return float((b - s) / (b + s)) if b + s else None

    out = {
        "levels_b": len(bids),
        "levels_s": len(asks),
        "vol_b": float(vol_b),
        "vol_s": float(vol_s),
        "val_b": float(val_b),
        "val_s": float(val_s),
        "imbalance_vol": imbalance(Decimal(vol_b), Decimal(vol_s)),
        "imbalance_val": imbalance(Decimal(val_b), Decimal(val_s)),
        "vwap_b_1mio": _fill_price(bids, lot_size),
        "vwap_s_1mio": _fill_price(asks, lot_size),
        "spread_bbo": None,
        "spread_lv10": None,
        "spread_1mio": None,
        "imbalance_vol_bbo": None,
        "imbalance_val_bbo": None,
    }
    if len(bids) and len(asks):
        best_bid, best_ask = bids.iloc[0], asks.iloc[0]
        mid = (best_bid["price"] + best_ask["price"]) / 2
        out["spread_bbo"] = float((best_ask["price"] - best_bid["price"]) / mid * 10_000)
        if len(bids) >= 10 and len(asks) >= 10:
            out["spread_lv10"] = float(
                (asks.iloc[9]["price"] - bids.iloc[9]["price"]) / mid * 10_000
            )
        if out["vwap_b_1mio"] is not None and out["vwap_s_1mio"] is not None:
            out["spread_1mio"] = float((out["vwap_s_1mio"] - out["vwap_b_1mio"]) / mid * 10_000)
        out["imbalance_vol_bbo"] = imbalance(best_bid["qty"], best_ask["qty"])
        out["imbalance_val_bbo"] = imbalance(
            best_bid["price"] * best_bid["qty"], best_ask["price"] * best_ask["qty"]
        )
    for side in ("b", "s"):
        fill = out[f"vwap_{side}_1mio"]
        out[f"vwap_{side}_1mio"] = None if fill is None else float(fill)
    return out


def obstats_5m(books: list[dict]) -> list[dict]:
    """OBStats per ticker and 5-minute window: the mean of each snapshot's metrics."""
    frame = _book_frame(books)
    snapshots = []
    for (_, ticker, ts), levels in frame.groupby(["event_id", "ticker", "ts"], sort=False):
        lot_size = lot(ticker)
        row = _snapshot(levels.dropna(subset=["side"]), lot_size)
        snapshots.append(
            {"ticker": ticker, "start": ts // FIVE_MIN * FIVE_MIN, "lot": lot_size, **row}
        )
    snaps = pd.DataFrame(snapshots)
    out = []
    for (ticker, start), w in snaps.groupby(["ticker", "start"], sort=True):
        lot_size = int(w["lot"].iloc[0])

        def mean(column: str, w: pd.DataFrame = w) -> float | None:
            values = [v for v in w[column] if v is not None and v == v]
            return float(np.mean(values)) if values else None

        vol_b, vol_s = w["vol_b"].sum(), w["vol_s"].sum()
        out.append(
            {
                "ticker": ticker,
                "window_start": iso(start),
                "window_end": iso(start + FIVE_MIN),
                "snapshots": len(w),
                **{
                    name: mean(name)
                    for name in (
                        "spread_bbo spread_lv10 spread_1mio levels_b levels_s vol_b vol_s val_b "
                        "val_s imbalance_vol_bbo imbalance_val_bbo imbalance_vol imbalance_val"
                    ).split()
                },  # fmt: skip
                "vwap_b": w["val_b"].sum() / (vol_b * lot_size) if vol_b else None,
                "vwap_s": w["val_s"].sum() / (vol_s * lot_size) if vol_s else None,
                "vwap_b_1mio": mean("vwap_b_1mio"),
                "vwap_s_1mio": mean("vwap_s_1mio"),
            }
        )
    return out


# --- Mega Alerts -----------------------------------------------------------------------------

HISTORY = 1000  # earlier minutes a threshold comes from (sql/65_algopack/alerts_1m.sql)
WARM_UP = 5  # earlier minutes needed before any alert
HORIZONS = (5, 15, 30, 60)


def minutes(trades: list[dict]) -> pd.DataFrame:
    """Per ticker and minute with trades: the Mega Alerts metrics (one row per minute)."""
    df = _frame(trades)
    df["minute"] = df["ts"] // 60_000 * 60_000
    df["buy"] = df["qty"].where(df["side"] == "B", 0)
    df["sell"] = df["qty"].where(df["side"] == "S", 0)
    grouped = df.groupby(["ticker", "minute"], sort=True)  # rows sorted by trade number
    out = grouped.agg(
        first=("price", "first"),
        last=("price", "last"),
        pr_high=("price", "max"),
        pr_low=("price", "min"),
        vol=("qty", "sum"),
        vol_b=("buy", "sum"),
        vol_s=("sell", "sum"),
    ).reset_index()
    out["net_vol"] = out["vol_b"] - out["vol_s"]
    out["pr_change"] = [
        (float(c) - float(o)) / float(o) * 100
        for o, c in zip(out["first"], out["last"], strict=True)
    ]
    return out


# alert type -> (metric, statistic of the history, direction): "up" fires above, "down" below
ALERT_TYPES_METRICS = ("vol", "vol_b", "vol_s", "net_vol", "pr_change", "pr_high", "pr_low")
ALERT_TYPES = {
    "vol_99_9_pctl": ("vol", 0.999, "up"),
    "vol_b_99_9_pctl": ("vol_b", 0.999, "up"),
    "vol_s_99_9_pctl": ("vol_s", 0.999, "up"),
    "net_vol_99_9_pctl+": ("net_vol", 0.999, "up+"),
    "net_vol_99_9_pctl-": ("net_vol", 0.001, "down-"),
    "pr_change_99_9_pctl+": ("pr_change", 0.999, "up+"),
    "pr_change_99_9_pctl-": ("pr_change", 0.001, "down-"),
    "vol_max": ("vol", "max", "up"),
    "vol_b_max": ("vol_b", "max", "up"),
    "vol_s_max": ("vol_s", "max", "up"),
    "net_vol_max": ("net_vol", "max", "up"),
    "net_vol_min": ("net_vol", "min", "down"),
    "pr_change_max": ("pr_change", "max", "up"),
    "pr_change_min": ("pr_change", "min", "down"),
    "pr_high_max": ("pr_high", "max", "up"),
    "pr_low_min": ("pr_low", "min", "down"),
}


def alerts_1m(trades: list[dict]) -> list[dict]:
    out = []
    for ticker, series in minutes(trades).groupby("ticker", sort=True):
        series = series.reset_index(drop=True)
        for k in range(len(series)):
            history = series.iloc[max(0, k - HISTORY) : k]
            if len(history) < WARM_UP:
                continue
            row = series.iloc[k]
            for alert_type, (metric, statistic, direction) in ALERT_TYPES.items():
                past = history[metric].astype(float)
                if statistic == "max":
                    threshold = past.max()
                elif statistic == "min":
                    threshold = past.min()
                else:
                    threshold = past.quantile(statistic)  # linear interpolation
                value = float(row[metric])
                fired = {
                    "up": value > threshold,
                    "down": value < threshold,
                    "up+": value > threshold and value > 0,
                    "down-": value < threshold and value < 0,
                }[direction]
                if fired:
                    out.append(
                        {
                            "event_id": f"{ticker}:{alert_type}:{row['minute']}",
                            "ticker": ticker,
                            "alert_time": iso(row["minute"] + 60_000),
                            "minute_start": iso(row["minute"]),
                            "alert_type": alert_type,
                            "threshold": float(threshold),
                            "value": value,
                            "history": len(history),
                            "pr_close": row["last"],
                        }
                    )
    return out


def alerts_1m_outcomes(trades: list[dict]) -> list[dict]:
    closes = {
        (t, m): c
        for t, m, c in minutes(trades)[["ticker", "minute", "last"]].itertuples(index=False)
    }
    out = []
    for alert in alerts_1m(trades):
        start = _ms(alert["minute_start"])
        for horizon in HORIZONS:
            price = closes.get((alert["ticker"], start + horizon * 60_000))
            if price is None:
                continue
            out.append(
                {
                    "event_id": f"{alert['event_id']}:{horizon}",
                    "alert_id": alert["event_id"],
                    "ticker": alert["ticker"],
                    "alert_type": alert["alert_type"],
                    "alert_time": alert["alert_time"],
                    "horizon_min": horizon,
                    "base_price": alert["pr_close"],
                    "price": price,
                    "change_pct": (float(price) / float(alert["pr_close"]) - 1) * 100,
                    "outcome_ms": start + (horizon + 1) * 60_000,
                }
            )
    return out


def alerts_1m_stats(trades: list[dict]) -> list[dict]:
    """Per alert type and horizon, after each outcome: the statistics of every outcome up to
    and including its minute."""
    outcomes = pd.DataFrame(alerts_1m_outcomes(trades))
    out = []
    if outcomes.empty:
        return out
    for (_, _), group in outcomes.groupby(["alert_type", "horizon_min"], sort=True):
        for row in group.itertuples(index=False):
            upto = group[group["outcome_ms"] <= row.outcome_ms]["change_pct"]
            rises, falls = upto[upto > 0], upto[upto < 0]
            out.append(
                {
                    "event_id": row.event_id,
                    "alert_type": row.alert_type,
                    "horizon_min": row.horizon_min,
                    "ticker": row.ticker,
                    "outcome_time": iso(row.outcome_ms),
                    "rise_avg": float(rises.mean()) if len(rises) else None,
                    "fall_avg": float(falls.mean()) if len(falls) else None,
                    "rises": len(rises),
                    "falls": len(falls),
                    "change_avg": float(upto.mean()),
                    "outcomes": len(upto),
                }
            )
    return out


def public(rows: list[dict]) -> list[dict]:
    """Rows without the helper fields (outcome_ms) the topics do not carry."""
    return [{k: v for k, v in r.items() if k != "outcome_ms"} for r in rows]
