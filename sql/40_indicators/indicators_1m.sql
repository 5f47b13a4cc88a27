-- indicators_1m: SMA, EMA, MACD, RSI and Bollinger bands of every 1-minute candle, TA-Lib conventions.
-- grain: ticker, window_end
-- topic: moex.indicators_1m
-- guarantee: exactly-once

CREATE TABLE indicators_1m (
  ticker      STRING,
  window_end  TIMESTAMP_LTZ(3),  -- end of the 1-minute candle
  `close`     DECIMAL(18, 6),    -- roubles
  sma_20      DOUBLE,            -- roubles; NULL before 20 candles (as every column below
  ema_12      DOUBLE,            --   until its indicator has warmed up: see sql/10_views/)
  ema_26      DOUBLE,
  macd        DOUBLE,            -- roubles: TA-Lib MACD(12, 26, 9)
  macd_signal DOUBLE,
  macd_hist   DOUBLE,
  rsi_14      DOUBLE,            -- 0..100, Wilder
  bb_mid      DOUBLE,            -- Bollinger(20, 2) with the population sigma
  bb_upper    DOUBLE,
  bb_lower    DOUBLE
) WITH (${SINK});

INSERT INTO indicators_1m
SELECT ticker, bar_end, `close`, sma_20, ema_12, ema_26, macd, macd_signal, macd_hist, rsi_14,
  bb_mid, bb_upper, bb_lower
FROM indicator_series_1m;
