-- bars: OHLCV bars per ticker: 200 ms from trades, 1 s rolled up from them, 1 min from 1 s;
-- every candle, rolling window, indicator and anomaly is built on these views. The 200-ms bars
-- feed the spike alerts, which thus wait a fifth of a second for their bar, not a second.
--
-- Open and close are the prices of the first and last trade by exchange trade number, not by
-- arrival (FIRST_VALUE/LAST_VALUE follow arrival, which is arbitrary between trades of the
-- same millisecond). The trade is packed with its price into one exact DECIMAL(38, 0) key,
--     key = trade_id * 10^18 + price * 10^6      (price < 10^12 roubles, 6 decimals)
-- so MIN(key) / MAX(key) pick the first / last trade, and the key rolls up: the 1-minute
-- open is MIN over the 1-second open keys. (Every constant is a DECIMAL(38, 0): MOD with a
-- BIGINT literal would cast the key to BIGINT and overflow.)

CREATE VIEW bars_200ms AS
SELECT ticker, bar_start, bar_end, bar_time, start_ms,
  CAST(MOD(open_key, CAST(1000000000000000000 AS DECIMAL(38, 0))) / 1000000 AS DECIMAL(18, 6)) AS `open`,
  high,
  low,
  CAST(MOD(close_key, CAST(1000000000000000000 AS DECIMAL(38, 0))) / 1000000 AS DECIMAL(18, 6)) AS `close`,
  volume, turnover, trades, open_key, close_key
FROM (
  SELECT ticker,
    CAST(window_start AS TIMESTAMP_LTZ(3)) AS bar_start,
    CAST(window_end AS TIMESTAMP_LTZ(3)) AS bar_end,
    window_time AS bar_time,                  -- rowtime of the bar: bar_end - 1 ms
    MIN(ts - MOD(ts, 200)) AS start_ms,       -- bar_start as epoch ms (for event ids)
    MIN(CAST(trade_id AS DECIMAL(38, 0)) * 1000000000000000000
        + CAST(price * 1000000 AS DECIMAL(38, 0))) AS open_key,
    MAX(price) AS high,
    MIN(price) AS low,
    MAX(CAST(trade_id AS DECIMAL(38, 0)) * 1000000000000000000
        + CAST(price * 1000000 AS DECIMAL(38, 0))) AS close_key,
    SUM(qty) AS volume,                                   -- lots
    CAST(SUM(price * qty) AS DECIMAL(24, 6)) AS turnover, -- roubles per lot unit: sum(price * qty)
    COUNT(*) AS trades
  FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(trade_slot), INTERVAL '0.2' SECOND))
  GROUP BY ticker, window_start, window_end, window_time
);

CREATE VIEW bars_1s AS
SELECT ticker, bar_start, bar_end, bar_time,
  CAST(MOD(open_key, CAST(1000000000000000000 AS DECIMAL(38, 0))) / 1000000 AS DECIMAL(18, 6)) AS `open`,
  high,
  low,
  CAST(MOD(close_key, CAST(1000000000000000000 AS DECIMAL(38, 0))) / 1000000 AS DECIMAL(18, 6)) AS `close`,
  volume, turnover, trades, open_key, close_key
FROM (
  SELECT ticker,
    CAST(window_start AS TIMESTAMP_LTZ(3)) AS bar_start,
    CAST(window_end AS TIMESTAMP_LTZ(3)) AS bar_end,
    window_time AS bar_time,
    MIN(open_key) AS open_key,
    MAX(high) AS high,
    MIN(low) AS low,
    MAX(close_key) AS close_key,
    SUM(volume) AS volume,
    CAST(SUM(turnover) AS DECIMAL(24, 6)) AS turnover,
    SUM(trades) AS trades
  FROM TABLE(TUMBLE(TABLE bars_200ms, DESCRIPTOR(bar_time), INTERVAL '1' SECOND))
  GROUP BY ticker, window_start, window_end, window_time
);

CREATE VIEW bars_1m AS
SELECT ticker, bar_start, bar_end, bar_time,
  CAST(MOD(open_key, CAST(1000000000000000000 AS DECIMAL(38, 0))) / 1000000 AS DECIMAL(18, 6)) AS `open`,
  high,
  low,
  CAST(MOD(close_key, CAST(1000000000000000000 AS DECIMAL(38, 0))) / 1000000 AS DECIMAL(18, 6)) AS `close`,
  volume, turnover, trades, open_key, close_key
FROM (
  SELECT ticker,
    CAST(window_start AS TIMESTAMP_LTZ(3)) AS bar_start,
    CAST(window_end AS TIMESTAMP_LTZ(3)) AS bar_end,
    window_time AS bar_time,
    MIN(open_key) AS open_key,
    MAX(high) AS high,
    MIN(low) AS low,
    MAX(close_key) AS close_key,
    SUM(volume) AS volume,
    CAST(SUM(turnover) AS DECIMAL(24, 6)) AS turnover,
    SUM(trades) AS trades
  FROM TABLE(TUMBLE(TABLE bars_1s, DESCRIPTOR(bar_time), INTERVAL '1' MINUTE))
  GROUP BY ticker, window_start, window_end, window_time
);
