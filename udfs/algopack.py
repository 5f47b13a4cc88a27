"""Python functions for the MOEX AlgoPack outputs (sql/65_algopack/): what SQL cannot say.

`lot_size(ticker)` is the instrument's LOTSIZE from producer/reference.py, the one table of
reference data: our topics carry quantities in lots, AlgoPack's `val` fields are roubles, so a
value is price x lots x lot size. A ticker the table does not know gives NULL (the producer
rejects such records, so it happens only with hand-made inputs).

`book_metrics(ticker, bids, asks)` computes AlgoPack's OBStats metrics of each book snapshot
(the SQL averages them over the 5-minute window): a walk over up to 10 [price, lots] levels per
side that plain SQL could only write as a tower of CASEs. It is vectorised (pandas): one call per
Arrow batch of snapshots, the levels as (snapshots x depth) matrices, the SQL passing them as
DOUBLE. The definitions and our choices are in sql/65_algopack/obstats_5m.sql; `book_frame` is
the plain function and `snapshot_metrics` the same for one snapshot, both testable without Flink.

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


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN (NULL) where the denominator is 0 or NaN."""
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=(denominator != 0) & ~np.isnan(denominator))
    return out


def _row_sums(matrix: np.ndarray) -> np.ndarray:
    """Each row's sum, NaN counted as 0, added left to right. numpy's own sum is pairwise, so
    its last bit depends on the matrix's width, which is the deepest book of the batch: the same
    snapshot would then differ in a live run and a replay, whose batches differ."""
    total = np.zeros(len(matrix))
    for column in np.nan_to_num(matrix, nan=0.0).T:
        total = total + column
    return total


def _side(levels: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prices and lots of a batch of book sides as (rows x depth) matrices, best level first,
    padded with NaN prices and 0 lots, and the number of levels of each row. A NULL side is
    empty, as in the exchange's feed an empty side is []."""
    counts = np.fromiter((0 if side is None else len(side) for side in levels), int, len(levels))
    depth = max(int(counts.max(initial=0)), 1)
    price = np.full((len(levels), depth), np.nan)
    qty = np.zeros((len(levels), depth))
    for row, side in enumerate(levels):
        if counts[row]:
            flat = np.stack(side).astype("float64")  # (levels x 2): price, lots
            price[row, : counts[row]] = flat[:, 0]
            qty[row, : counts[row]] = flat[:, 1]
    return price, qty, counts


def _vwap_for_value(price: np.ndarray, qty: np.ndarray, lot: np.ndarray) -> np.ndarray:
    """Average price per share of an order worth ONE_MIO roubles filled from the best level
    outwards, the last level taken in part; NaN where the levels hold less than that."""
    shares = qty * lot[:, None]
    value = np.where(np.isnan(price), 0.0, price * shares)
    spent = np.cumsum(value, axis=1)
    # Values are multiples of 10^-6 roubles (prices on a 6-decimal grid, whole lots), so a real
    # shortfall is at least that; the slack only absorbs the doubles' rounding of an exact fill.
    filled = spent >= float(ONE_MIO) - 5e-7
    enough = filled.any(axis=1)
    last = np.where(enough, filled.argmax(axis=1), 0)
    rows = np.arange(len(price))
    before = spent[rows, last] - value[rows, last]
    shares_before = np.cumsum(shares, axis=1)[rows, last] - shares[rows, last]
    with np.errstate(divide="ignore", invalid="ignore"):
        total = shares_before + (float(ONE_MIO) - before) / price[rows, last]
        return np.where(enough, float(ONE_MIO) / total, np.nan)


def vwap_for_value(levels: Sequence[Level], lot: int) -> float | None:
    """_vwap_for_value of one side: the price of filling ONE_MIO roubles, None if it holds less."""
    price = np.array([[float(p) for p, _ in levels]])
    qty = np.array([[float(q) for _, q in levels]])
    vwap = _vwap_for_value(price, qty, np.array([float(lot)]))[0]
    return None if np.isnan(vwap) else float(vwap)


def book_frame(tickers: pd.Series, bids: pd.Series, asks: pd.Series) -> pd.DataFrame:
    """The BOOK_FIELDS of a batch of snapshots, one row each, NaN where undefined."""
    lot = np.array([np.nan if (n := lot_of(t)) is None else n for t in tickers], dtype="float64")
    bid, bid_qty, levels_b = _side(bids)
    ask, ask_qty, levels_s = _side(asks)
    vol_b, vol_s = _row_sums(bid_qty), _row_sums(ask_qty)
    val_b = _row_sums(bid * bid_qty) * lot
    val_s = _row_sums(ask * ask_qty) * lot
    vwap_b_1mio = _vwap_for_value(bid, bid_qty, lot)
    vwap_s_1mio = _vwap_for_value(ask, ask_qty, lot)
    both = (levels_b > 0) & (levels_s > 0)
    best_bid, best_ask = bid[:, 0], ask[:, 0]
    best_bid_qty, best_ask_qty = bid_qty[:, 0], ask_qty[:, 0]
    mid = np.where(both, (best_bid + best_ask) / 2, np.nan)
    deep = (levels_b >= 10) & (levels_s >= 10)
    lv10 = np.full(len(mid), np.nan)
    if deep.any():  # then both matrices have a 10th column
        lv10 = np.where(deep, ask[:, 9] - bid[:, 9], np.nan)
    fields = {
        "spread_bbo": _ratio(best_ask - best_bid, mid) * 10_000,
        "spread_lv10": _ratio(lv10, mid) * 10_000,
        "spread_1mio": _ratio(vwap_s_1mio - vwap_b_1mio, mid) * 10_000,
        "levels_b": levels_b.astype("float64"),
        "levels_s": levels_s.astype("float64"),
        "vol_b": vol_b,
        "vol_s": vol_s,
        "val_b": val_b,
        "val_s": val_s,
        "imbalance_vol_bbo": np.where(
            both, _ratio(best_bid_qty - best_ask_qty, best_bid_qty + best_ask_qty), np.nan
        ),
        "imbalance_val_bbo": np.where(
            both,
            _ratio(
                best_bid * best_bid_qty - best_ask * best_ask_qty,
                best_bid * best_bid_qty + best_ask * best_ask_qty,
            ),
            np.nan,
        ),
        "imbalance_vol": _ratio(vol_b - vol_s, vol_b + vol_s),
        "imbalance_val": _ratio(val_b - val_s, val_b + val_s),
        "vwap_b_1mio": vwap_b_1mio,
        "vwap_s_1mio": vwap_s_1mio,
    }
    frame = pd.DataFrame(fields, columns=list(BOOK_FIELDS))
    frame[np.isnan(lot)] = np.nan  # an unknown ticker: no lot size, no metric
    return frame


def snapshot_metrics(
    ticker: str | None, bids: Sequence[Level] | None, asks: Sequence[Level] | None
) -> tuple[float | None, ...]:
    """The BOOK_FIELDS of one snapshot, best level first on each side; None where undefined
    (book_frame of a batch of one)."""

    def side(levels: Sequence[Level] | None) -> list[np.ndarray] | None:
        return None if levels is None else [np.array([float(p), float(q)]) for p, q in levels]

    row = book_frame(pd.Series([ticker]), pd.Series([side(bids)]), pd.Series([side(asks)])).iloc[0]
    return tuple(None if np.isnan(v) else float(v) for v in row)


lot_size = udf(lot_of, result_type=DataTypes.INT(), deterministic=True)

# Vectorised (one Arrow batch per call, not one call per snapshot): the per-snapshot Python
# call was the busiest part of the live job (docs/performance.md). The SQL passes the levels as
# DOUBLE: every result is a DOUBLE ratio or sum, and Decimal objects cost more than the maths.
book_metrics = udf(book_frame, result_type=BOOK_TYPE, func_type="pandas", deterministic=True)


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
