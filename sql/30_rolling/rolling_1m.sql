-- rolling_1m: one-minute rolling mean price, volatility and volume per ticker, every 10 seconds.
-- grain: ticker, window_end
-- topic: moex.rolling_1m
-- guarantee: exactly-once
--
-- HOP windows of 1 minute sliding by 10 s over the 1-second bars. A window is emitted only when
-- the ticker's history covers all of it (its first bar starts at or before the window start):
-- HOP would otherwise emit five partial windows at the start of a ticker's data.

CREATE TABLE rolling_1m (
  ticker      STRING,
  window_end  TIMESTAMP_LTZ(3),
  sma         DECIMAL(18, 6),  -- roubles: mean of the 1-second closes in the window
  volatility  DOUBLE,          -- percent: sample stddev of the log returns between consecutive
                               -- 1-second closes (seconds without trades skipped), not
                               -- annualised; NULL with fewer than 2 returns
  volume      BIGINT           -- lots traded in the window
) WITH (${SINK});

-- Each 1-second bar with the log return from the ticker's previous bar and the start of the
-- ticker's first bar (LAG and MIN share the default unbounded frame).
CREATE VIEW bar_returns_1s AS
SELECT ticker, bar_time, `close`, volume,
  LN(CAST(`close` AS DOUBLE) / CAST(LAG(`close`) OVER history AS DOUBLE)) AS log_return,
  MIN(bar_start) OVER history AS first_bar_start
FROM bars_1s
WINDOW history AS (PARTITION BY ticker ORDER BY bar_time);

INSERT INTO rolling_1m
SELECT ticker,
  CAST(window_end AS TIMESTAMP_LTZ(3)) AS window_end,
  CAST(AVG(`close`) AS DECIMAL(18, 6)) AS sma,
  STDDEV_SAMP(log_return) * 100 AS volatility,
  SUM(volume) AS volume
FROM TABLE(HOP(TABLE bar_returns_1s, DESCRIPTOR(bar_time), INTERVAL '10' SECOND, INTERVAL '1' MINUTE))
GROUP BY ticker, window_start, window_end
HAVING MIN(first_bar_start) <= CAST(window_start AS TIMESTAMP_LTZ(3));
