"""Trades and statistics of a strategy's rows (the HTML report: runner/backtest_html.py).

The rows are the strategy's output exactly as on its topic (sql/strategies/, one row per
1-minute candle per ticker, `*` for the portfolio). Statistics follow backtesting.py 0.6.6
(kernc) so the two can be compared one for one (tests/test_backtest_compare.py):

- Return = equity[-1] / capital - 1 (for a ticker capital = equity[0]); Buy & hold = close[-1] / close[0] - 1 of the same
  candles (the portfolio: the mean over its tickers, each ticker having the same capital).
- Max drawdown = max(1 - equity / running peak); its duration runs from the peak to the
  candle where equity gets back to it (or to the last candle), in time, ceiled to the minute.
- Sharpe = annualised geometric mean of daily returns / annualised volatility (252 days, 365
  with weekend data), NaN with fewer than two days of candles: it is a daily ratio.
- Trades are round trips (entry fill to exit fill); a position still open at the end is shown
  but not counted (backtesting.py's `finalize_trades=False`). A trade's P&L is net of both
  commissions; its return is (exit / entry - 1) - commissions / (size * entry). Win rate =
  share of trades with P&L > 0; profit factor = sum of positive returns / |sum of negative
  returns| (backtesting.py's, on returns, not roubles).
- Exposure = share of candles from an entry fill's candle to its exit fill's candle, both
  included (a position still open at the end does not count, as above).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

PORTFOLIO = "*"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Trade:
    ticker: str
    lots: int
    size: int  # shares: lots * lot size
    entry_time: str  # window_end of the candle whose open filled the entry
    entry_price: float
    exit_time: str | None  # None: still open at the end
    exit_price: float | None
    commission: float  # roubles, entry and exit
    entry_bar: int
    exit_bar: int | None

    @property
    def pnl(self) -> float | None:
        if self.exit_price is None:
            return None
        return self.size * (self.exit_price - self.entry_price) - self.commission

    @property
    def return_pct(self) -> float | None:
        if self.exit_price is None:
            return None
        gross = self.exit_price / self.entry_price - 1
        return gross - self.commission / (self.size * self.entry_price)


def trades_of(rows: list[dict]) -> list[Trade]:
    """Round trips of one ticker's rows (ordered by window_end): long-only, one at a time."""
    out: list[Trade] = []
    open_trade: Trade | None = None
    for bar, row in enumerate(rows):
        lots = row.get("fill_lots") or 0
        if lots < 0 and open_trade is not None:
            open_trade.exit_time = row["window_end"]
            open_trade.exit_price = float(row["fill_price"])
            open_trade.commission += float(row["commission"])
            open_trade.exit_bar = bar
            out.append(open_trade)
            open_trade = None
        elif lots > 0:
            open_trade = Trade(
                ticker=row["ticker"],
                lots=lots,
                size=lots * row["lot_size"],
                entry_time=row["window_end"],
                entry_price=float(row["fill_price"]),
                exit_time=None,
                exit_price=None,
                commission=float(row["commission"]),
                entry_bar=bar,
                exit_bar=None,
            )
    if open_trade is not None:
        out.append(open_trade)
    return out


def drawdown_duration(times: list[datetime], drawdown: list[float]) -> timedelta | None:
    """Longest time from a peak to the recovery (or the last candle): backtesting.py's."""
    at_peak = sorted({i for i, d in enumerate(drawdown) if d == 0} | {len(drawdown) - 1})
    spans = [times[b] - times[a] for a, b in zip(at_peak, at_peak[1:], strict=False) if b > a + 1]
    if not spans:
        return None
    longest = max(spans)
    minutes = math.ceil(longest.total_seconds() / 60)  # ceiled to the candles' period
    return timedelta(minutes=minutes)


def sharpe(times: list[datetime], equity: list[float]) -> float:
    """backtesting.py's Sharpe: daily last equity, geometric mean, compounded over a year."""
    days: dict = {}
    for t, e in zip(times, equity, strict=True):
        days[t.date()] = e
    values = [days[d] for d in sorted(days)]
    returns = [b / a - 1 for a, b in zip(values, values[1:], strict=False)]
    if len(returns) < 2:
        return math.nan
    weekend = sum(1 for t in times if t.weekday() >= 5) / len(times) > 2 / 7 * 0.6
    year = 365 if weekend else 252
    gmean = (
        0.0
        if any(1 + r <= 0 for r in returns)
        else math.exp(sum(math.log(1 + r) for r in returns) / len(returns)) - 1
    )
    mean = sum(returns) / len(returns)
    var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    annual = (1 + gmean) ** year - 1
    vol = math.sqrt(max((var + (1 + gmean) ** 2) ** year - (1 + gmean) ** (2 * year), 0.0))
    return annual / vol if vol else math.nan


@dataclass
class Book:
    """One ticker's (or the portfolio's) rows and what follows from them."""

    ticker: str
    rows: list[dict]
    trades: list[Trade] = field(default_factory=list)
    stats: dict[str, float | int | str | None] = field(default_factory=dict)


def stats_of(rows: list[dict], trades: list[Trade], buy_and_hold: float) -> dict:
    times = [parse_time(r["window_end"]) for r in rows]
    equity = [float(r["equity"]) for r in rows]
    capital = float(rows[-1]["capital"])
    drawdown = [float(r["drawdown"]) for r in rows]
    closed = [t for t in trades if t.exit_price is not None]
    pnls = [t.pnl for t in closed]
    returns = [t.return_pct for t in closed]
    exposed = set()
    for t in closed:
        exposed.update(range(t.entry_bar, t.exit_bar + 1))
    gains = sum(r for r in returns if r > 0)
    losses = abs(sum(r for r in returns if r < 0))
    duration = drawdown_duration(times, drawdown)
    return {
        "Start": rows[0]["window_end"],
        "End": rows[-1]["window_end"],
        "Candles": len(rows),
        "Exposure Time [%]": 100 * len(exposed) / len(rows),
        "Equity Final [RUB]": equity[-1],
        "Equity Peak [RUB]": max(equity),
        "Commissions [RUB]": sum(t.commission for t in closed),
        # equity[0] is the capital for a ticker; the portfolio's grows as tickers join it.
        "Return [%]": 100 * (equity[-1] - capital) / capital,
        "Buy & Hold Return [%]": 100 * buy_and_hold,
        "Max. Drawdown [%]": -100 * max(drawdown),
        "Max. Drawdown Duration": str(duration) if duration is not None else None,
        "Sharpe Ratio": sharpe(times, equity),
        "# Trades": len(closed),
        "Win Rate [%]": 100 * sum(1 for p in pnls if p > 0) / len(pnls) if pnls else math.nan,
        "Profit Factor": gains / losses if losses else math.nan,
        "Open Position [lots]": next((t.lots for t in trades if t.exit_price is None), 0),
    }


def books_of(rows: list[dict]) -> list[Book]:
    """Per-ticker books (by ticker) and the portfolio's, last."""
    by_ticker: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_ticker[row["ticker"]].append(row)
    books = []
    holds = []
    for ticker in sorted(t for t in by_ticker if t != PORTFOLIO):
        series = sorted(by_ticker[ticker], key=lambda r: r["window_end"])
        trades = trades_of(series)
        closes = [float(r["close"]) for r in series]
        hold = closes[-1] / closes[0] - 1
        holds.append(hold)
        books.append(Book(ticker, series, trades, stats_of(series, trades, hold)))
    if PORTFOLIO in by_ticker:
        series = sorted(by_ticker[PORTFOLIO], key=lambda r: r["window_end"])
        trades = [t for b in books for t in b.trades]
        portfolio = Book(PORTFOLIO, series, trades, {})
        portfolio.stats = stats_of(series, [], sum(holds) / len(holds) if holds else 0.0)
        closed = [t for t in trades if t.exit_price is not None]
        returns = [t.return_pct for t in closed]
        gains = sum(r for r in returns if r > 0)
        losses = abs(sum(r for r in returns if r < 0))
        # Trades of every ticker; exposure: minutes with any ticker in a position.
        minutes = [r["window_end"] for r in series]
        exposed = set()
        for t in closed:
            exposed.update(m for m in minutes if t.entry_time <= m <= t.exit_time)
        portfolio.stats.update(
            {
                "Commissions [RUB]": sum(t.commission for t in closed),
                "Exposure Time [%]": 100 * len(exposed) / len(minutes),
                "# Trades": len(closed),
                "Win Rate [%]": 100 * sum(1 for t in closed if t.pnl > 0) / len(closed)
                if closed
                else math.nan,
                "Profit Factor": gains / losses if losses else math.nan,
                "Open Position [lots]": None,
            }
        )
        books.append(portfolio)
    return books


def write_trades(path: Path, books: list[Book]) -> None:
    """Round trips as JSON lines (the open position at the end with exit null)."""
    lines = []
    for book in books:
        if book.ticker == PORTFOLIO:
            continue
        for t in book.trades:
            lines.append(
                json.dumps(
                    {
                        "ticker": t.ticker,
                        "lots": t.lots,
                        "shares": t.size,
                        "entry_time": t.entry_time,
                        "entry_price": t.entry_price,
                        "exit_time": t.exit_time,
                        "exit_price": t.exit_price,
                        "commission": t.commission,
                        "pnl": t.pnl,
                        "return_pct": None if t.return_pct is None else 100 * t.return_pct,
                    }
                )
            )
    path.write_text("".join(f"{line}\n" for line in lines))
