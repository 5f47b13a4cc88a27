-- ema_12_1m: EMA(12) of every 1-minute close, TA-Lib convention; the peer benchmark's second output.
-- grain: ticker, window_end
-- topic: moex.ema_12_1m
-- guarantee: exactly-once
--
-- The ema_12 pandas UDAF over the same bounded frame as sql/10_views/indicator_series_1m.sql,
-- without the other indicators, so that it computes what benchmarks/peer_quix.py computes.
-- The other files of this folder are links to sql/: the trades source, the bars, candles_1m.

CREATE TABLE ema_12_1m (
  ticker     STRING,
  window_end TIMESTAMP_LTZ(3),  -- end of the 1-minute candle
  `close`    DECIMAL(18, 6),    -- roubles
  ema_12     DOUBLE             -- roubles; NULL before 12 candles
) WITH (${SINK});

CREATE VIEW closes_1m AS
SELECT ticker, bar_end, bar_time, `close`, CAST(`close` AS DOUBLE) AS close_value
FROM bars_1m;

INSERT INTO ema_12_1m
SELECT ticker, bar_end, `close`,
  ema_12(close_value) OVER (
    PARTITION BY ticker ORDER BY bar_time ROWS BETWEEN 299 PRECEDING AND CURRENT ROW)
FROM closes_1m;
