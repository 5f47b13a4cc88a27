-- ema_cross_12_26: EMA(12)/EMA(26) crossover, long only, with its fills, cash, equity, drawdown.
-- grain: ticker, window_end
-- topic: moex.ema_cross_12_26
-- guarantee: exactly-once
--
-- entry:  ema_12 goes above ema_26 on a 1-minute candle (was at or below on the previous one),
--         the same crossing as signals.sql's golden_cross.
-- exit:   ema_12 goes to or below ema_26 (death_cross).
-- sizing: whole lots worth at most 100,000 RUB at the signal candle's close, with the ticker's
--         lot size (producer/reference.py); held unchanged until the exit.
-- fills:  market orders at the NEXT candle's open (backtesting.py's default); commission,
--         slippage and starting capital are runner settings (runner/settings.py). Rows with
--         ticker `*` are the portfolio of all tickers. See docs/backtest.md.

CREATE VIEW ema_cross_12_26_signal AS
SELECT ticker, bar_end, bar_time, `close`,
  CASE
    WHEN ema_12 > ema_26 AND prev_ema_12 <= prev_ema_26 THEN 1
    WHEN ema_12 <= ema_26 AND prev_ema_12 > prev_ema_26 THEN 0
  END AS signal,
  CAST(100000 AS DOUBLE) AS entry_budget
FROM (
  SELECT ticker, bar_end, bar_time, `close`, ema_12, ema_26,
    LAG(ema_12) OVER w AS prev_ema_12,
    LAG(ema_26) OVER w AS prev_ema_26
  FROM indicator_series_1m
  WINDOW w AS (PARTITION BY ticker ORDER BY bar_time)
);

-- Fills, position, cash, equity and drawdown: the same for every strategy (runner/backtest_sql.py).
CREATE VIEW ema_cross_12_26_book AS ${STRATEGY_PNL:ema_cross_12_26_signal};

CREATE TABLE ema_cross_12_26 (${STRATEGY_COLUMNS}) WITH (${SINK});

INSERT INTO ema_cross_12_26 SELECT * FROM ema_cross_12_26_book;
