"""Technical indicators with TA-Lib's conventions, in plain Python (no Flink, no TA-Lib).

Every function takes the closes of one ticker, oldest first, and returns a list of the same
length with None where TA-Lib returns NaN (before the indicator has warmed up):

    ema(x, n)      seeded with the SMA of the first n values (first output at index n-1),
                   then smoothed with alpha = 2 / (n + 1).
    rsi(x, n)      Wilder: the first output (index n) is 100 * G / (G + L) with G and L the
                   means of the first n gains and losses; then G = (G * (n-1) + gain) / n.
    macd(x, 12, 26, 9)
                   NOT ema(12) - ema(26): both EMAs start at index 25 (slow - 1); the slow one
                   is seeded with the SMA of x[0..25], the fast one with the SMA of the fast
                   period's values ending there (x[14..25]); the signal line is the EMA(9) of
                   the MACD seeded with the SMA of its first 9 values, so all three outputs
                   start at index 33.

The SQL calls these through pandas UDAFs over a bounded window of the last 300 candles
(udfs/udafs.py): the result for a candle is the last value of the series computed over the
window. Over a longer history that is an approximation within (1 - alpha)^(300 - n) relative,
about 1e-9 for EMA(26) and Wilder RSI(14); it is exact while a ticker has fewer candles.
"""

from __future__ import annotations

from collections.abc import Sequence

# TA-Lib treats |G + L| below this as zero (TA_IS_ZERO) and then reports RSI 0.
_RSI_ZERO = 1e-8


def _k(period: int) -> float:
    return 2.0 / (period + 1)


def _ema_from(values: Sequence[float], period: int, start: int) -> list[float | None]:
    """EMA whose first output is at index `start`, seeded with the SMA of the `period` values
    ending there (TA-Lib's INT_EMA)."""
    out: list[float | None] = [None] * len(values)
    first = start - period + 1
    if first < 0 or start >= len(values):
        return out
    k = _k(period)
    prev = sum(values[first : start + 1]) / period
    out[start] = prev
    for i in range(start + 1, len(values)):
        prev = (values[i] - prev) * k + prev
        out[i] = prev
    return out


def ema(values: Sequence[float], period: int) -> list[float | None]:
    """TA-Lib EMA(period)."""
    if period < 1:
        raise ValueError("period must be >= 1")
    return _ema_from(values, period, period - 1)


def sma(values: Sequence[float], period: int) -> list[float | None]:
    """TA-Lib SMA(period): mean of the last `period` values, from index period-1."""
    out: list[float | None] = [None] * len(values)
    for i in range(period - 1, len(values)):
        out[i] = sum(values[i - period + 1 : i + 1]) / period
    return out


def rsi(values: Sequence[float], period: int = 14) -> list[float | None]:
    """TA-Lib RSI(period) with Wilder smoothing, 0..100."""
    out: list[float | None] = [None] * len(values)
    if len(values) <= period:
        return out
    gain = loss = 0.0
    for i in range(1, period + 1):
        diff = values[i] - values[i - 1]
        if diff < 0:
            loss -= diff
        else:
            gain += diff
    gain /= period
    loss /= period

    def value(avg_gain: float, avg_loss: float) -> float:
        total = avg_gain + avg_loss
        return 100.0 * (avg_gain / total) if not (-_RSI_ZERO < total < _RSI_ZERO) else 0.0

    out[period] = value(gain, loss)
    for i in range(period + 1, len(values)):
        diff = values[i] - values[i - 1]
        gain *= period - 1
        loss *= period - 1
        if diff < 0:
            loss -= diff
        else:
            gain += diff
        gain /= period
        loss /= period
        out[i] = value(gain, loss)
    return out


def macd(
    values: Sequence[float], fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[list[float | None], list[float | None], list[float | None]]:
    """TA-Lib MACD(fast, slow, signal): (macd, signal line, histogram)."""
    if slow < fast:
        fast, slow = slow, fast
    n = len(values)
    none: list[float | None] = [None] * n
    start = slow - 1  # both EMAs start here
    first_output = start + signal - 1
    if n <= first_output:
        return none, list(none), list(none)
    slow_ema = _ema_from(values, slow, start)
    fast_ema = _ema_from(values, fast, start)
    line = [f - s for f, s in zip(fast_ema[start:], slow_ema[start:], strict=True)]
    signal_line = _ema_from(line, signal, signal - 1)
    macd_out, signal_out, hist_out = list(none), list(none), list(none)
    for j in range(signal - 1, len(line)):
        i = start + j
        macd_out[i] = line[j]
        signal_out[i] = signal_line[j]
        hist_out[i] = line[j] - signal_line[j]
    return macd_out, signal_out, hist_out


def last_ema(values: Sequence[float], period: int) -> float | None:
    """The EMA of the last value (what one OVER window row needs), without a full list."""
    if len(values) < period:
        return None
    k = _k(period)
    prev = sum(values[:period]) / period
    for x in values[period:]:
        prev = (x - prev) * k + prev
    return prev
