-- indicator_series_1m: TA-Lib indicators of every 1-minute candle (one row per candle, append-only),
-- shared by indicators_1m and signals.
--
-- Two nested views because Flink cannot mix a Python UDAF with built-in aggregates in one OVER,
-- nor two OVER frames in one SELECT:
--   bollinger_1m        built-in COUNT/AVG/STDDEV_POP over the last 20 candles (Bollinger 20, 2
--                       with the population sigma, as TA-Lib's BBANDS)
--   indicator_series_1m pandas UDAFs over the last 300 candles (EMA, RSI, MACD; see udfs/).
-- Indicators are NULL until warmed up, as TA-Lib's NaN: sma_20/bb_* before 20 candles,
-- ema_12 before 12, ema_26 before 26, rsi_14 before 15, macd* before 34.

CREATE VIEW bollinger_1m AS
SELECT ticker, bar_start, bar_end, bar_time, `close`, volume,
  CAST(`close` AS DOUBLE) AS close_value,
  COUNT(*) OVER last_20 AS candles_20,
  AVG(CAST(`close` AS DOUBLE)) OVER last_20 AS mean_20,
  STDDEV_POP(CAST(`close` AS DOUBLE)) OVER last_20 AS sigma_20
FROM bars_1m
WINDOW last_20 AS (PARTITION BY ticker ORDER BY bar_time ROWS BETWEEN 19 PRECEDING AND CURRENT ROW);

CREATE VIEW indicator_series_1m AS
SELECT ticker, bar_start, bar_end, bar_time, `close`, volume,
  sma_20, ema_12, ema_26,
  macd.macd AS macd, macd.macd_signal AS macd_signal, macd.macd_hist AS macd_hist,
  rsi_14,
  sma_20 AS bb_mid,
  sma_20 + 2 * sigma_20 AS bb_upper,
  sma_20 - 2 * sigma_20 AS bb_lower
FROM (
  SELECT ticker, bar_start, bar_end, bar_time, `close`, volume,
    CASE WHEN candles_20 = 20 THEN mean_20 END AS sma_20,
    CASE WHEN candles_20 = 20 THEN sigma_20 END AS sigma_20,
    ema_12(close_value) OVER last_300 AS ema_12,
    ema_26(close_value) OVER last_300 AS ema_26,
    rsi_14(close_value) OVER last_300 AS rsi_14,
    macd_12_26_9(close_value) OVER last_300 AS macd
  FROM bollinger_1m
  WINDOW last_300 AS (PARTITION BY ticker ORDER BY bar_time ROWS BETWEEN 299 PRECEDING AND CURRENT ROW)
);
