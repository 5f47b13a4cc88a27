-- bollinger_breakout_20: breakout above the 20-candle Bollinger band, long only, with its P&L.
-- grain: ticker, window_end
-- topic: moex.bollinger_breakout_20
-- guarantee: exactly-once
--
-- entry:  a 1-minute candle closes above bb_upper (SMA(20) + 2 population sigma, TA-Lib BBANDS)
--         while flat.
-- exit:   a candle closes below bb_mid (the SMA(20)) while long.
-- sizing: whole lots worth at most 100,000 RUB at the signal candle's close, with the ticker's
--         lot size (producer/reference.py); held unchanged until the exit.
-- fills:  market orders at the NEXT candle's open (backtesting.py's default); commission,
--         slippage and starting capital are runner settings (runner/settings.py). Rows with
--         ticker `*` are the portfolio of all tickers. See docs/backtest.md.

CREATE VIEW bollinger_breakout_20_signal AS
SELECT ticker, bar_end, bar_time, `close`,
  CASE
    WHEN CAST(`close` AS DOUBLE) > bb_upper THEN 1
    WHEN CAST(`close` AS DOUBLE) < bb_mid THEN 0
  END AS signal,
  CAST(100000 AS DOUBLE) AS entry_budget
FROM indicator_series_1m;

-- Fills, position, cash, equity and drawdown: the same for every strategy (runner/backtest_sql.py).
CREATE VIEW bollinger_breakout_20_book AS ${STRATEGY_PNL:bollinger_breakout_20_signal};

CREATE TABLE bollinger_breakout_20 (${STRATEGY_COLUMNS}) WITH (${SINK});

INSERT INTO bollinger_breakout_20 SELECT * FROM bollinger_breakout_20_book;
