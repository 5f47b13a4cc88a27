"""Flink adapters: pandas UDAFs over bounded OVER windows, one function per indicator span.

Flink 2.2 streaming SQL only accepts *pandas* UDAFs in OVER windows, only over bounded
ROWS/RANGE frames, and crashes on constant arguments (`ema(close, 12)`): so each span is its
own function, and the SQL calls them as `ema_12(close) OVER (... ROWS 299 PRECEDING ...)`.
Each function receives the window's closes (oldest first) as a pandas Series and returns the
indicator of the last row, or None (SQL NULL) before the indicator has warmed up. The maths is
in udfs/indicators.py; the `*_of_window` functions are the adapters, callable without Flink.

Register from SQL: CREATE TEMPORARY FUNCTION ema_12 AS 'udfs.udafs.ema_12' LANGUAGE PYTHON;
"""

from __future__ import annotations

import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import udaf

from udfs import indicators

MACD_TYPE = DataTypes.ROW(
    [
        DataTypes.FIELD("macd", DataTypes.DOUBLE()),
        DataTypes.FIELD("macd_signal", DataTypes.DOUBLE()),
        DataTypes.FIELD("macd_hist", DataTypes.DOUBLE()),
    ]
)


def _closes(series: pd.Series) -> list[float]:
    return series.astype("float64").tolist()


def ema_12_of_window(close: pd.Series) -> float | None:
    return indicators.last_ema(_closes(close), 12)


def ema_26_of_window(close: pd.Series) -> float | None:
    return indicators.last_ema(_closes(close), 26)


def rsi_14_of_window(close: pd.Series) -> float | None:
    return indicators.rsi(_closes(close), 14)[-1] if len(close) else None


def macd_12_26_9_of_window(close: pd.Series) -> tuple[float | None, float | None, float | None]:
    line, signal, hist = indicators.macd(_closes(close), 12, 26, 9)
    if not line:
        return None, None, None
    return line[-1], signal[-1], hist[-1]


ema_12 = udaf(ema_12_of_window, result_type=DataTypes.DOUBLE(), func_type="pandas")
ema_26 = udaf(ema_26_of_window, result_type=DataTypes.DOUBLE(), func_type="pandas")
rsi_14 = udaf(rsi_14_of_window, result_type=DataTypes.DOUBLE(), func_type="pandas")
macd_12_26_9 = udaf(macd_12_26_9_of_window, result_type=MACD_TYPE, func_type="pandas")
