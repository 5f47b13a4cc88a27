"""Python functions for the MOEX AlgoPack outputs (sql/65_algopack/): what SQL cannot say.

`lot_size(ticker)` is the instrument's LOTSIZE from producer/reference.py, the one table of
reference data: our topics carry quantities in lots, AlgoPack's `val` fields are roubles, so a
value is price x lots x lot size. A ticker the table does not know gives NULL (the producer
rejects such records, so it happens only with hand-made inputs).

`book_metrics(ticker, bids, asks)` computes AlgoPack's OBStats metrics of ONE book snapshot
(the SQL averages them over the 5-minute window): a walk over up to 10 [price, lots] levels per
side that plain SQL could only write as a tower of CASEs. The definitions and our choices are
in sql/65_algopack/obstats_5m.sql; `snapshot_metrics` is the plain function, testable without
Flink.

`alert_history(vol, vol_b, vol_s, net_vol, pr_change, pr_high, pr_low)` is a pandas UDAF for a
bounded OVER window of a ticker's minutes (oldest first, the current minute last): the Mega
Alerts thresholds of the current minute computed from the minutes BEFORE it (Flink's OVER
frames must end at the current row, so the function drops it). `history_thresholds` is the
plain function.

Register from SQL: CREATE TEMPORARY FUNCTION lot_size AS 'udfs.algopack.lot_size' LANGUAGE PYTHON;
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import pandas as pd
from pyflink.common import Row
from pyflink.table import DataTypes
from pyflink.table.udf import udaf, udf

from producer.reference import instrument

ONE_MIO = Decimal(1_000_000)  # roubles: the order size of spread_1mio and vwap_*_1mio
Level = Sequence[Decimal]  # [price roubles per share, qty lots]

BOOK_FIELDS = (
    "spread_bbo",
    "spread_lv10",
    "spread_1mio",
    "levels_b",
    "levels_s",
    "vol_b",
    "vol_s",
    "val_b",
    "val_s",
    "imbalance_vol_bbo",
    "imbalance_val_bbo",
    "imbalance_vol",
    "imbalance_val",
    "vwap_b_1mio",
    "vwap_s_1mio",
)
BOOK_TYPE = DataTypes.ROW([DataTypes.FIELD(name, DataTypes.DOUBLE()) for name in BOOK_FIELDS])


def lot_of(ticker: str | None) -> int | None:
    found = instrument(ticker) if ticker is not None else None
    return found.lot if found is not None else None


def _imbalance(buy: Decimal, sell: Decimal) -> float | None:
    total = buy + sell
    return float((buy - sell) / total) if total else None


def vwap_for_value(levels: Sequence[Level], lot: int, value: Decimal = ONE_MIO) -> Decimal | None:
    """Average price per share of an order worth `value` roubles filled from the best level
    outwards, the last level taken in part; None when the levels hold less than `value`."""
    spent, shares = Decimal(0), Decimal(0)
    for price, qty in levels:
        level_value = price * qty * lot
        if spent + level_value >= value:
            shares += (value - spent) / price
            return value / shares
        spent += level_value
        shares += qty * lot
    return None


def snapshot_metrics(
    ticker: str | None, bids: Sequence[Level] | None, asks: Sequence[Level] | None
) -> tuple[float | None, ...]:
    """The BOOK_FIELDS of one snapshot, best level first on each side; None where undefined."""
    lot = lot_of(ticker)
    bids, asks = list(bids or []), list(asks or [])
    if lot is None:
        return (None,) * len(BOOK_FIELDS)
    vol_b = sum((q for _, q in bids), Decimal(0))
    vol_s = sum((q for _, q in asks), Decimal(0))
    val_b = sum((p * q for p, q in bids), Decimal(0)) * lot
    val_s = sum((p * q for p, q in asks), Decimal(0)) * lot
    spread_bbo = spread_lv10 = spread_1mio = imbalance_vol_bbo = imbalance_val_bbo = None
    vwap_b_1mio = vwap_for_value(bids, lot)
    vwap_s_1mio = vwap_for_value(asks, lot)
    if bids and asks:
        (bid, bid_qty), (ask, ask_qty) = bids[0], asks[0]
        mid = (bid + ask) / 2
        spread_bbo = float((ask - bid) / mid * 10_000)
        if len(bids) >= 10 and len(asks) >= 10:
            spread_lv10 = float((asks[9][0] - bids[9][0]) / mid * 10_000)
        if vwap_b_1mio is not None and vwap_s_1mio is not None:
            spread_1mio = float((vwap_s_1mio - vwap_b_1mio) / mid * 10_000)
        imbalance_vol_bbo = _imbalance(bid_qty, ask_qty)
        imbalance_val_bbo = _imbalance(bid * bid_qty, ask * ask_qty)
    return (
        spread_bbo,
        spread_lv10,
        spread_1mio,
        float(len(bids)),
        float(len(asks)),
        float(vol_b),
        float(vol_s),
        float(val_b),
        float(val_s),
        imbalance_vol_bbo,
        imbalance_val_bbo,
        _imbalance(vol_b, vol_s),
        _imbalance(val_b, val_s),
        None if vwap_b_1mio is None else float(vwap_b_1mio),
        None if vwap_s_1mio is None else float(vwap_s_1mio),
    )


lot_size = udf(lot_of, result_type=DataTypes.INT(), deterministic=True)


def _book_metrics_row(
    ticker: str | None, bids: Sequence[Level] | None, asks: Sequence[Level] | None
) -> Row:
    return Row(*snapshot_metrics(ticker, bids, asks))  # a scalar ROW result must be a Row


book_metrics = udf(_book_metrics_row, result_type=BOOK_TYPE, deterministic=True)


# Percentiles are numpy's default ("linear", Hyndman-Fan type 7, as pandas' quantile and
# Excel's PERCENTILE.INC): with n values the 99.9th lies between the two largest when n < 1000.
HISTORY_FIELDS = (
    ("history", "number of earlier minutes the thresholds come from"),
    ("vol_p999", "vol"),
    ("vol_b_p999", "vol_b"),
    ("vol_s_p999", "vol_s"),
    ("net_vol_p999", "net_vol"),
    ("net_vol_p001", "net_vol"),
    ("pr_change_p999", "pr_change"),
    ("pr_change_p001", "pr_change"),
    ("vol_max", "vol"),
    ("vol_b_max", "vol_b"),
    ("vol_s_max", "vol_s"),
    ("net_vol_max", "net_vol"),
    ("net_vol_min", "net_vol"),
    ("pr_change_max", "pr_change"),
    ("pr_change_min", "pr_change"),
    ("pr_high_max", "pr_high"),
    ("pr_low_min", "pr_low"),
)
HISTORY_TYPE = DataTypes.ROW(
    [DataTypes.FIELD(name, DataTypes.DOUBLE()) for name, _ in HISTORY_FIELDS]
)


def history_thresholds(columns: dict[str, np.ndarray]) -> tuple[float | None, ...]:
    """HISTORY_FIELDS from each metric's earlier values (all but the last element)."""
    prior = {name: values[:-1].astype("float64") for name, values in columns.items()}
    count = len(prior["vol"])
    if count == 0:
        return (0.0,) + (None,) * (len(HISTORY_FIELDS) - 1)
    out: list[float | None] = [float(count)]
    for name, metric in HISTORY_FIELDS[1:]:
        values = prior[metric]
        if name.endswith("_p999"):
            out.append(float(np.percentile(values, 99.9)))
        elif name.endswith("_p001"):
            out.append(float(np.percentile(values, 0.1)))
        elif name.endswith("_max"):
            out.append(float(values.max()))
        else:
            out.append(float(values.min()))
    return tuple(out)


def _alert_history(
    vol: pd.Series,
    vol_b: pd.Series,
    vol_s: pd.Series,
    net_vol: pd.Series,
    pr_change: pd.Series,
    pr_high: pd.Series,
    pr_low: pd.Series,
) -> tuple[float | None, ...]:
    columns = {
        "vol": vol, "vol_b": vol_b, "vol_s": vol_s, "net_vol": net_vol,
        "pr_change": pr_change, "pr_high": pr_high, "pr_low": pr_low,
    }  # fmt: skip
    return history_thresholds({k: v.to_numpy() for k, v in columns.items()})


alert_history = udaf(_alert_history, result_type=HISTORY_TYPE, func_type="pandas")
