"""The book-keeping every strategy shares: fills, position, cash, equity and drawdown, in SQL.

A strategy file (sql/strategies/<name>.sql) writes only its decision, a view with one row per
1-minute candle:

    ticker, bar_end, bar_time, `close`   (from indicator_series_1m: the candle and its rowtime)
    signal        INT     1 = be long after this candle, 0 = be flat, NULL = keep what you have
    entry_budget  DOUBLE  roubles one entry may spend (lots = whole lots worth at most this at
                          the signal candle's close, with the ticker's lot size)

and two placeholders the runner fills in, so the P&L is written once for every strategy:

    CREATE TABLE <name> (${STRATEGY_COLUMNS}) WITH (${SINK});
    INSERT INTO <name> ${STRATEGY_PNL:<name>_signal};

Conventions (backtesting.py's, so its results can be compared one for one):
- Market orders fill at the NEXT candle's open: a signal on candle i changes the position at the
  open of candle i+1 (no fill for a signal on a ticker's last candle so far).
- Long-only, one position at a time: `signal` 1 while flat enters, 0 while long exits; the state
  after a candle is the last non-NULL signal. The entry's size is fixed at the candle where the
  state turns long and held until the exit.
- Slippage is backtesting.py's `spread`: an entry fills at open * (1 + slippage), an exit at the
  open (the round trip pays it once). Commission is a rate of each fill's value, charged on
  entry and on exit.
- cash = roubles not in shares; equity = cash + position * lot size * close (marked at the
  candle's close); drawdown = 1 - equity / max(equity so far).
- Portfolio rows (ticker `*`, one per minute with any candle): the sum over the tickers seen so
  far of their cash and equity, each ticker starting with `capital`; its drawdown is computed
  on that sum.
"""

from __future__ import annotations

import re

from producer.reference import INSTRUMENTS
from runner.settings import Settings

COLUMNS = (
    "ticker STRING, "
    "window_end TIMESTAMP_LTZ(3), "  # end of the 1-minute candle (portfolio: of the minute)
    "`open` DECIMAL(18, 6), "  # roubles per share; NULL on portfolio rows
    "`close` DECIMAL(18, 6), "
    "signal INT, "  # the strategy's decision on this candle: 1 long, 0 flat, NULL keep
    "target_lots INT, "  # lots the strategy wants after this candle (filled next open)
    "`position` INT, "  # lots held during this candle, after the fill at its open
    "lot_size INT, "  # shares per lot (ISS LOTSIZE)
    "fill_lots INT, "  # lots bought (+) or sold (-) at this candle's open; 0 without a fill
    "fill_price DOUBLE, "  # roubles per share, slippage included; NULL without a fill
    "commission DOUBLE, "  # roubles paid on this candle's fill (portfolio: all tickers)
    "capital DOUBLE, "  # roubles the book started with (portfolio: tickers seen so far)
    "cash DOUBLE, "  # roubles not in shares
    "equity DOUBLE, "  # roubles: cash + position marked at the close
    "drawdown DOUBLE"  # fraction below the running peak of equity (0.05 = 5 % below)
)


def lot_size_case(column: str = "ticker") -> str:
    """Each known ticker's lot size from producer/reference.py (one source of truth)."""
    whens = " ".join(f"WHEN '{t}' THEN {i.lot}" for t, i in sorted(INSTRUMENTS.items()))
    return f"CASE {column} {whens} END"


def _one_line(sql: str) -> str:
    """Placeholders expand on one line, so positions reported after them stay true."""
    return re.sub(r"\s+", " ", sql).strip()


def pnl_select(signal_view: str, settings: Settings) -> str:
    """SELECT of the per-ticker and portfolio rows of one strategy, columns as COLUMNS."""
    w = "WINDOW w AS (PARTITION BY ticker ORDER BY bar_time)"
    capital = f"CAST({settings.strategy_capital!r} AS DOUBLE)"
    slippage = f"CAST({settings.strategy_slippage!r} AS DOUBLE)"
    commission = f"CAST({settings.strategy_commission!r} AS DOUBLE)"
    # indicator_series_1m has no open: the candle's own comes from bars_1m (an interval join
    # on the candle's rowtime, so it stays append-only and its state is dropped as time passes).
    candles = f"""
      SELECT s.ticker, s.bar_end, s.bar_time, b.`open`, s.`close`, s.signal, s.entry_budget,
        {lot_size_case("s.ticker")} AS lot_size
      FROM {signal_view} AS s JOIN bars_1m AS b
        ON s.ticker = b.ticker AND s.bar_time BETWEEN b.bar_time AND b.bar_time"""
    # Each level only adds columns; Flink needs a new SELECT for every OVER that reads the
    # previous one's result (LAG takes no frame, so every window here is the default one).
    state = f"""
      SELECT ticker, bar_end, bar_time, `open`, `close`, signal, entry_budget,
        lot_size, {capital} AS capital, COALESCE(LAST_VALUE(signal) OVER w, 0) AS state
      FROM ({candles})
      WHERE lot_size IS NOT NULL {w}"""
    turned = f"SELECT *, LAG(state, 1, 0) OVER w AS prev_state FROM ({state}) {w}"
    target = f"""
      SELECT *, CASE WHEN state = 1 THEN LAST_VALUE(CASE WHEN state = 1 AND prev_state = 0
        THEN CAST(FLOOR(entry_budget / (CAST(`close` AS DOUBLE) * lot_size)) AS INT) END)
        OVER w ELSE 0 END AS target_lots
      FROM ({turned}) {w}"""
    held = f"""
      SELECT *, LAG(target_lots, 1, 0) OVER w AS `position`,
        LAG(target_lots, 2, 0) OVER w AS prior_lots
      FROM ({target}) {w}"""
    fills = f"""
      SELECT *, ABS(fill_lots) * lot_size * fill_price * {commission} AS commission
      FROM (
        SELECT *, `position` - prior_lots AS fill_lots,
          CASE WHEN `position` > prior_lots THEN CAST(`open` AS DOUBLE) * (1 + {slippage})
               WHEN `position` < prior_lots THEN CAST(`open` AS DOUBLE) END AS fill_price
        FROM ({held}))"""
    cash = f"""
      SELECT *, cash + `position` * lot_size * CAST(`close` AS DOUBLE) AS equity
      FROM (
        SELECT *, capital + SUM(COALESCE(-fill_lots * lot_size * fill_price - commission, 0E0))
          OVER w AS cash
        FROM ({fills}) {w})"""
    book = f"""
      SELECT *, 1 - equity / MAX(equity) OVER w AS drawdown,
        capital - LAG(capital, 1, 0E0) OVER w AS capital_delta,
        cash - LAG(cash, 1, 0E0) OVER w AS cash_delta,
        equity - LAG(equity, 1, 0E0) OVER w AS equity_delta
      FROM ({cash}) {w}"""
    # Portfolio: what changed in each minute, summed over tickers, then accumulated. A ticker
    # without a candle in a minute keeps its cash and equity (its delta is nothing).
    minute = "TUMBLE(bar_time, INTERVAL '1' MINUTE)"
    per_minute = f"""
      SELECT '*' AS ticker, TUMBLE_END(bar_time, INTERVAL '1' MINUTE) AS bar_end,
        TUMBLE_ROWTIME(bar_time, INTERVAL '1' MINUTE) AS bar_time,
        SUM(COALESCE(commission, 0E0)) AS commission, SUM(capital_delta) AS capital_delta,
        SUM(cash_delta) AS cash_delta, SUM(equity_delta) AS equity_delta
      FROM ({book}) GROUP BY {minute}"""
    portfolio = f"""
      SELECT *, 1 - equity / MAX(equity) OVER w AS drawdown
      FROM (
        SELECT ticker, bar_end, bar_time, commission,
          SUM(capital_delta) OVER w AS capital, SUM(cash_delta) OVER w AS cash,
          SUM(equity_delta) OVER w AS equity
        FROM ({per_minute}) {w}) {w}"""
    null_int, null_double = "CAST(NULL AS INT)", "CAST(NULL AS DOUBLE)"
    null_price = "CAST(NULL AS DECIMAL(18, 6))"
    return _one_line(f"""
      SELECT ticker, CAST(bar_end AS TIMESTAMP_LTZ(3)), `open`, `close`, signal, target_lots,
        `position`, lot_size, fill_lots, fill_price, COALESCE(commission, 0E0), capital, cash,
        equity, drawdown
      FROM ({book})
      UNION ALL
      SELECT ticker, CAST(bar_end AS TIMESTAMP_LTZ(3)), {null_price}, {null_price}, {null_int},
        {null_int}, {null_int}, {null_int}, {null_int}, {null_double}, commission, capital,
        cash, equity, drawdown
      FROM ({portfolio})""")
