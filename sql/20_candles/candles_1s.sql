-- candles_1s: one-second OHLCV bars per ticker; the resolution of spike detection and the live chart.
-- grain: ticker, window_end
-- topic: moex.candles_1s
-- guarantee: exactly-once

CREATE TABLE candles_1s (
  ticker       STRING,
  window_start TIMESTAMP_LTZ(3),
  window_end   TIMESTAMP_LTZ(3),
  `open`       DECIMAL(18, 6),
  high         DECIMAL(18, 6),
  low          DECIMAL(18, 6),
  `close`      DECIMAL(18, 6),
  volume       BIGINT,          -- lots
  turnover     DECIMAL(24, 6),  -- roubles per lot-price unit: sum(price * qty)
  trades       BIGINT,
  vwap         DECIMAL(18, 6)   -- turnover / volume
) WITH (${SINK});

INSERT INTO candles_1s
SELECT ticker, window_start, window_end, `open`, high, low, `close`, volume, turnover, trades,
       CAST(turnover / volume AS DECIMAL(18, 6)) AS vwap
FROM (
  SELECT ticker,
    CAST(window_start AS TIMESTAMP_LTZ(3)) AS window_start,
    CAST(window_end AS TIMESTAMP_LTZ(3)) AS window_end,
    FIRST_VALUE(price) AS `open`,
    MAX(price) AS high,
    MIN(price) AS low,
    LAST_VALUE(price) AS `close`,
    SUM(qty) AS volume,
    CAST(SUM(price * qty) AS DECIMAL(24, 6)) AS turnover,
    COUNT(*) AS trades
  FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(trade_time), INTERVAL '1' SECOND))
  GROUP BY ticker, window_start, window_end
);
