"""Strategies against backtesting.py (kernc), and against fills computed by hand.

One replay (`runner.backtest.run`, the real job on a MiniCluster) of every shipped strategy on
a small market: two random-walk tickers with different lot sizes, and GMKN with a hand-made
Bollinger breakout. backtesting.py then trades the same entries and exits (the strategy's
target lots of each candle) on the same candles, with the same commission and slippage
(backtesting.py's `spread`); trades, equity and statistics must agree within 1e-9 relative.
"""

from __future__ import annotations

import json
import math
import random
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from runner import backtest, backtest_html, backtest_report
from runner.settings import Settings
from tests.golden.make_golden import T0, Trades, minute_closes

REL = 1e-9
STRATEGIES = ("ema_cross_12_26", "rsi_reversion_14", "bollinger_breakout_20")
# GMKN (lot 10): 20 candles at 100, a close at 101 above the upper band, an open at 102 that
# fills the entry, a close at 99 below the middle band, an open at 99.5 that fills the exit.
HAND = [(100.0, 100.0)] * 20 + [(101.0, 101.0), (102.0, 102.0), (99.0, 99.0), (99.5, 99.5)]
HAND += [(99.5, 99.5)] * 4


def hand_trades(t: Trades) -> None:
    for minute, (open_, close) in enumerate(HAND):
        base = T0 + minute * 60_000
        t.add("GMKN", base + 1_000, open_, 1)
        t.add("GMKN", base + 50_000, close, 1)


def market() -> list[dict]:
    t = Trades()
    rng = random.Random(11)
    for ticker, price in (("SBER", 300.0), ("LKOH", 6800.0)):
        closes = []
        for _ in range(150):
            price = price * (1 + rng.gauss(0, 0.004))
            closes.append(round(price * 2) / 2 if ticker == "LKOH" else round(price, 2))
        minute_closes(t, ticker, closes)
    hand_trades(t)
    t.rows.sort(key=lambda r: r["ts"])
    return t.rows


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[backtest.BacktestResult, list[str], Settings]:
    folder = tmp_path_factory.mktemp("backtest")
    trades = folder / "trades.jsonl"
    trades.write_text("".join(json.dumps(r) + "\n" for r in market()))
    settings = Settings()
    said: list[str] = []
    result = backtest.run(
        settings, list(STRATEGIES), trades, folder / "out", say=said.append, progress_every=2
    )
    return result, said, settings


def candles(result: backtest.BacktestResult, ticker: str) -> pd.DataFrame:
    rows = [r for r in result.replay.rows("candles_1m") if r["ticker"] == ticker]
    rows.sort(key=lambda r: r["window_end"])
    index = pd.DatetimeIndex([pd.Timestamp(r["window_end"]).tz_localize(None) for r in rows])
    data = {k.capitalize(): [float(r[k]) for r in rows] for k in ("open", "high", "low", "close")}
    return pd.DataFrame({**data, "Volume": [r["volume"] for r in rows]}, index=index)


def through_backtesting_py(book: backtest_report.Book, data: pd.DataFrame, settings: Settings):
    """backtesting.py trading the stream's decisions: each candle's target lots."""
    from backtesting import Backtest, Strategy

    targets = [r["target_lots"] for r in book.rows]
    lot = book.rows[0]["lot_size"]

    class SameDecisions(Strategy):
        def init(self) -> None:
            pass

        def next(self) -> None:
            target = targets[len(self.data) - 1]
            if target > 0 and not self.position:
                self.buy(size=target * lot)
            elif target == 0 and self.position:
                self.position.close()

    bt = Backtest(
        data,
        SameDecisions,
        cash=settings.strategy_capital,
        commission=settings.strategy_commission,
        spread=settings.strategy_slippage,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "some trades remain open": the convention we follow
        return bt.run()


def close(a: float, b: float) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return math.isclose(a, b, rel_tol=REL, abs_tol=1e-9)


@pytest.mark.flink
@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_when_replayed_then_trades_equity_and_stats_match_backtesting_py(
    run, name: str
) -> None:
    result, _, settings = run
    books = result.books[name]
    compared_trades = 0
    for book in books:
        if book.ticker == backtest_report.PORTFOLIO:
            continue
        data = candles(result, book.ticker)
        assert len(data) == len(book.rows), "one strategy row per candle"
        stats = through_backtesting_py(book, data, settings)

        equity = stats["_equity_curve"]["Equity"].to_numpy()
        ours = np.array([r["equity"] for r in book.rows])
        assert np.allclose(ours, equity, rtol=REL, atol=1e-9), f"{book.ticker}: equity differs"

        theirs = stats["_trades"]
        closed = [t for t in book.trades if t.exit_price is not None]
        assert len(closed) == len(theirs), f"{book.ticker}: number of trades"
        for t, (_, b) in zip(closed, theirs.iterrows(), strict=True):
            assert t.size == b["Size"]
            assert pd.Timestamp(t.entry_time).tz_localize(None) == b["EntryTime"]
            assert pd.Timestamp(t.exit_time).tz_localize(None) == b["ExitTime"]
            for ours_value, theirs_value in (
                (t.entry_price, b["EntryPrice"]),
                (t.exit_price, b["ExitPrice"]),
                (t.pnl, b["PnL"]),
                (t.return_pct, b["ReturnPct"]),
                (t.commission, b["Commission"]),
            ):
                assert close(ours_value, theirs_value), (book.ticker, t, b)
        compared_trades += len(closed)

        s = book.stats
        for key in (
            "Return [%]",
            "Buy & Hold Return [%]",
            "Max. Drawdown [%]",
            "Exposure Time [%]",
            "Win Rate [%]",
            "Profit Factor",
            "Sharpe Ratio",
            "Equity Final [RUB]",
        ):
            their_key = key.replace("[RUB]", "[$]")
            assert close(float(s[key]), float(stats[their_key])), (book.ticker, key)
        assert s["# Trades"] == stats["# Trades"]
        their_duration = stats["Max. Drawdown Duration"]
        if pd.isna(their_duration):
            assert s["Max. Drawdown Duration"] is None
        else:
            assert pd.Timedelta(s["Max. Drawdown Duration"]) == their_duration
    assert compared_trades > 0, f"{name} made no round trip on the test market"


def test_sharpe_when_several_days_then_equals_backtesting_py() -> None:
    """The replays above span one day (Sharpe NaN on both sides): check the daily maths."""
    from backtesting._stats import compute_stats

    rng = np.random.default_rng(3)
    index = pd.date_range("2026-11-02 07:00", periods=6 * 500, freq="min")
    index = index[index.hour < 15][: 5 * 400]  # weekdays' sessions only
    equity = 1e6 * np.cumprod(1 + rng.normal(0, 5e-4, len(index)))
    data = pd.DataFrame({"Close": np.full(len(index), 100.0)}, index=index)
    theirs = compute_stats([], equity, data, None)
    times = [t.to_pydatetime() for t in index]
    assert len({t.date() for t in times}) >= 3
    ours = backtest_report.sharpe(times, list(equity))
    assert math.isfinite(ours)
    assert close(ours, float(theirs["Sharpe Ratio"]))


@pytest.mark.flink
def test_bollinger_when_hand_made_breakout_then_fills_cash_and_equity_as_computed_by_hand(
    run,
) -> None:
    result, _, settings = run
    assert (settings.strategy_commission, settings.strategy_slippage) == (0.0003, 0.0001)
    rows = [r for r in result.replay.rows("bollinger_breakout_20") if r["ticker"] == "GMKN"]
    by_minute = {
        round((pd.Timestamp(r["window_end"]).value // 10**6 - T0) / 60_000): r for r in rows
    }
    signal_candle, entry_candle, exit_signal, exit_candle = (
        by_minute[21],
        by_minute[22],
        by_minute[23],
        by_minute[24],
    )
    # 101 > 100.05 + 2 * 0.2179 (the band of 19 x 100 and 101): go long with
    # floor(100,000 / (101 * 10)) = 99 lots.
    assert (signal_candle["signal"], signal_candle["target_lots"]) == (1, 99)
    assert signal_candle["fill_lots"] == 0 and signal_candle["equity"] == 1_000_000
    # Filled at the next open, 102 * 1.0001 = 102.0102; 990 shares cost 100,990.098 and
    # 30.2970294 commission; equity marks them at the close, 102.
    assert (entry_candle["fill_lots"], entry_candle["position"]) == (99, 99)
    assert math.isclose(entry_candle["fill_price"], 102.0102, rel_tol=1e-12)
    assert math.isclose(entry_candle["commission"], 30.2970294, rel_tol=1e-12)
    assert math.isclose(entry_candle["cash"], 898_979.6049706, rel_tol=1e-12)
    assert math.isclose(entry_candle["equity"], 999_959.6049706, rel_tol=1e-12)
    # 99 < the middle band (100.1): exit, filled at the next open, 99.5, no slippage on exits.
    assert exit_signal["signal"] == 0 and exit_signal["position"] == 99
    assert math.isclose(exit_signal["equity"], 996_989.6049706, rel_tol=1e-12)
    assert (exit_candle["fill_lots"], exit_candle["position"]) == (-99, 0)
    assert math.isclose(exit_candle["commission"], 29.5515, rel_tol=1e-12)
    assert math.isclose(exit_candle["cash"], 997_455.0534706, rel_tol=1e-12)
    trade = next(b for b in result.books["bollinger_breakout_20"] if b.ticker == "GMKN").trades[0]
    assert math.isclose(trade.pnl, -2_544.9465294, rel_tol=1e-9)
    assert exit_candle["drawdown"] == pytest.approx(1 - 997_455.0534706 / 1_000_000, rel=1e-9)


@pytest.mark.flink
def test_portfolio_when_tickers_trade_then_rows_are_the_sum_of_their_books(run) -> None:
    result, _, _ = run
    for name in STRATEGIES:
        rows = result.replay.rows(name)
        last: dict[str, dict] = {}
        tickers = sorted({r["ticker"] for r in rows} - {"*"})
        assert len(tickers) == 3
        for minute in sorted({r["window_end"] for r in rows}):
            here = {r["ticker"]: r for r in rows if r["window_end"] == minute}
            last.update({t: r for t, r in here.items() if t != "*"})
            portfolio = here["*"]
            assert math.isclose(
                portfolio["equity"], sum(r["equity"] for r in last.values()), rel_tol=REL
            )
            assert math.isclose(
                portfolio["cash"], sum(r["cash"] for r in last.values()), rel_tol=REL
            )
            assert portfolio["capital"] == 1_000_000 * len(last)


@pytest.mark.flink
def test_backtest_when_run_then_progress_jsonl_and_offline_report_are_written(run) -> None:
    result, said, _ = run
    assert said[0].startswith("backtest: ema_cross_12_26, rsi_reversion_14, bollinger_breakout_20")
    assert any(" s, " in line for line in said[1:-1]), said  # a progress line while running
    assert said[-1].startswith("backtest: replayed")
    page = result.report.read_text()
    from plotly.offline import get_plotlyjs

    assert "<script src=" not in page and get_plotlyjs() in page  # offline: plotly.js inlined
    assert page.count("Plotly.newPlot") == 3 * 4  # 3 strategies x (3 tickers + portfolio)
    for name in STRATEGIES:
        assert (result.out_dir / f"{name}.jsonl").exists()
        trades = (result.out_dir / f"{name}_trades.jsonl").read_text().splitlines()
        assert all(set(json.loads(t)) >= {"entry_time", "exit_time", "pnl"} for t in trades)
    assert "Max. Drawdown Duration" in page and "Profit Factor" in page


def test_drawdown_duration_when_not_recovered_then_runs_to_the_last_candle() -> None:
    times = [pd.Timestamp("2026-11-26 07:00") + timedelta(minutes=i) for i in range(6)]
    duration = backtest_report.drawdown_duration(
        [t.to_pydatetime() for t in times], [0, 0.01, 0, 0.02, 0.03, 0.01]
    )
    assert duration == timedelta(minutes=3)


def test_select_when_unknown_strategy_then_error_lists_the_known_ones() -> None:
    with pytest.raises(backtest.BacktestError, match="known: .*ema_cross_12_26"):
        backtest.select(Settings(), "nope")
    assert backtest.select(Settings(), "all") == sorted(STRATEGIES)


def test_report_path_is_offline(tmp_path: Path) -> None:
    path = backtest_html.write_report(tmp_path, {"x": []}, [], [], "note")
    assert "No candles" in path.read_text()
