"""Indicator maths (udfs/indicators.py) and the UDAF adapters against TA-Lib, without Flink."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from udfs import indicators, udafs

prices = st.lists(
    st.floats(min_value=1.0, max_value=10_000.0, allow_nan=False, allow_infinity=False),
    min_size=0,
    max_size=120,
)


def assert_matches(ours: list, theirs: np.ndarray, rel: float = 1e-9) -> None:
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if math.isnan(b):
            assert a is None, f"index {i}: {a} where TA-Lib has no value yet"
        else:
            assert a is not None, f"index {i}: None where TA-Lib has {b}"
            assert abs(a - b) <= rel * max(abs(b), 1.0), f"index {i}: {a} vs {b}"


@settings(max_examples=150, deadline=None)
@given(prices, st.sampled_from([1, 2, 5, 12, 26]))
def test_ema_when_any_series_then_equals_talib(values: list[float], period: int) -> None:
    assert_matches(indicators.ema(values, period), talib.EMA(np.array(values), period))


@settings(max_examples=150, deadline=None)
@given(prices)
def test_rsi_when_any_series_then_equals_talib_wilder(values: list[float]) -> None:
    assert_matches(indicators.rsi(values, 14), talib.RSI(np.array(values), 14))


@settings(max_examples=150, deadline=None)
@given(prices)
def test_macd_when_any_series_then_equals_talib_including_its_start(values: list[float]) -> None:
    ours = indicators.macd(values, 12, 26, 9)
    for mine, theirs in zip(ours, talib.MACD(np.array(values), 12, 26, 9), strict=True):
        assert_matches(mine, theirs)


def test_rsi_when_prices_flat_then_zero_like_talib() -> None:
    values = [100.0] * 30
    assert_matches(indicators.rsi(values, 14), talib.RSI(np.array(values), 14))
    assert indicators.rsi(values, 14)[-1] == 0.0


def test_macd_when_computed_then_differs_from_naive_ema_difference() -> None:
    rng = np.random.default_rng(3)
    values = list(100 + np.cumsum(rng.normal(0, 1, 60)))
    line = indicators.macd(values)[0]
    naive = [
        None if a is None or b is None else a - b
        for a, b in zip(indicators.ema(values, 12), indicators.ema(values, 26), strict=True)
    ]
    assert line[33] is not None and naive[33] is not None
    assert abs(line[33] - naive[33]) > 1e-6, "TA-Lib seeds the fast EMA at index 14, not 0"


def series(seed: int, length: int, start: float) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(start * np.exp(np.cumsum(rng.normal(0, 0.002, length))))


@pytest.mark.parametrize("ticker_seed", [1, 2, 3])
def test_udafs_when_slid_over_long_series_with_300_candle_windows_then_within_1e_6_of_talib(
    ticker_seed: int,
) -> None:
    """What the OVER window does: each candle sees only the last 300 closes."""
    values = series(ticker_seed, 700, (285.0, 160.0, 7000.0)[ticker_seed - 1])
    closes = np.array(values)
    expected = {
        "ema_12": talib.EMA(closes, 12),
        "ema_26": talib.EMA(closes, 26),
        "rsi_14": talib.RSI(closes, 14),
    }
    macd, signal, hist = talib.MACD(closes, 12, 26, 9)
    functions = {
        "ema_12": udafs.ema_12_of_window,
        "ema_26": udafs.ema_26_of_window,
        "rsi_14": udafs.rsi_14_of_window,
    }
    for i in range(0, len(values), 7):
        window = pd.Series(values[max(0, i - 299) : i + 1])
        for name, function in functions.items():
            got, want = function(window), expected[name][i]
            if math.isnan(want):
                assert got is None
            else:
                assert abs(got - want) <= 1e-6 * max(abs(want), 1.0), (name, i, got, want)
        got_macd = udafs.macd_12_26_9_of_window(window)
        for got, want in zip(got_macd, (macd[i], signal[i], hist[i]), strict=True):
            if math.isnan(want):
                assert got is None
            else:
                assert abs(got - want) <= 1e-6 * max(abs(want), 1.0)
        if 25 <= i < 300:  # the whole history fits in the window: exact up to rounding
            assert functions["ema_26"](window) == pytest.approx(expected["ema_26"][i], rel=1e-12)


def test_udafs_when_window_empty_or_short_then_null_like_talib_warm_up() -> None:
    empty, short = pd.Series([], dtype="float64"), pd.Series([100.0] * 11)
    assert udafs.ema_12_of_window(empty) is None and udafs.ema_12_of_window(short) is None
    assert udafs.rsi_14_of_window(empty) is None and udafs.rsi_14_of_window(short) is None
    assert udafs.macd_12_26_9_of_window(empty) == (None, None, None)
    assert udafs.ema_12_of_window(pd.Series([100.0] * 12)) == 100.0
    assert [f.name for f in udafs.MACD_TYPE.fields] == ["macd", "macd_signal", "macd_hist"]
