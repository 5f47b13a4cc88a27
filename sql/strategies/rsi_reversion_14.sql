-- rsi_reversion_14: RSI(14) 30/70 mean reversion, long only, with its fills, cash, equity, drawdown.
-- grain: ticker, window_end
-- topic: moex.rsi_reversion_14
-- guarantee: exactly-once
--
-- entry:  rsi_14 (Wilder, TA-Lib) below 30 on a 1-minute candle while flat: oversold.
-- exit:   rsi_14 above 70 while long: overbought. Between the two the position is kept.
-- sizing: whole lots worth at most 100,000 RUB at the signal candle's close, with the ticker's
--         lot size (producer/reference.py); held unchanged until the exit.
-- fills:  market orders at the NEXT candle's open (backtesting.py's default); commission,
--         slippage and starting capital are runner settings (runner/settings.py). Rows with
--         ticker `*` are the portfolio of all tickers. See docs/backtest.md.

CREATE VIEW rsi_reversion_14_signal AS
SELECT ticker, bar_end, bar_time, `close`,
  CASE WHEN rsi_14 < 30 THEN 1 WHEN rsi_14 > 70 THEN 0 END AS signal,
  CAST(100000 AS DOUBLE) AS entry_budget
FROM indicator_series_1m;

-- Fills, position, cash, equity and drawdown: the same for every strategy (runner/backtest_sql.py).
CREATE VIEW rsi_reversion_14_book AS ${STRATEGY_PNL:rsi_reversion_14_signal};

CREATE TABLE rsi_reversion_14 (${STRATEGY_COLUMNS}) WITH (${SINK});

INSERT INTO rsi_reversion_14 SELECT * FROM rsi_reversion_14_book;
