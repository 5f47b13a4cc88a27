-- candles_5m: five-minute OHLCV candles per ticker, rolled up from the one-minute bars.
-- grain: ticker, window_end
-- topic: moex.candles_5m
-- guarantee: exactly-once

CREATE TABLE candles_5m (
  ticker       STRING,
  window_start TIMESTAMP_LTZ(3),
  window_end   TIMESTAMP_LTZ(3),
  `open`       DECIMAL(18, 6),  -- roubles; price of the window's first trade (by trade number)
  high         DECIMAL(18, 6),
  low          DECIMAL(18, 6),
  `close`      DECIMAL(18, 6),  -- price of the window's last trade
  volume       BIGINT,          -- lots
  turnover     DECIMAL(24, 6),  -- sum(price * qty): roubles per lot unit
  trades       BIGINT,          -- number of trades
  vwap         DECIMAL(18, 6)   -- turnover / volume
) WITH (${SINK});

INSERT INTO candles_5m
SELECT ticker,
  CAST(window_start AS TIMESTAMP_LTZ(3)) AS window_start,
  CAST(window_end AS TIMESTAMP_LTZ(3)) AS window_end,
  CAST(MOD(MIN(open_key), CAST(1000000000000000000 AS DECIMAL(38, 0))) / 1000000 AS DECIMAL(18, 6)) AS `open`,
  MAX(high) AS high,
  MIN(low) AS low,
  CAST(MOD(MAX(close_key), CAST(1000000000000000000 AS DECIMAL(38, 0))) / 1000000 AS DECIMAL(18, 6)) AS `close`,
  SUM(volume) AS volume,
  CAST(SUM(turnover) AS DECIMAL(24, 6)) AS turnover,
  SUM(trades) AS trades,
  CAST(SUM(turnover) / SUM(volume) AS DECIMAL(18, 6)) AS vwap
FROM TABLE(TUMBLE(TABLE bars_1m, DESCRIPTOR(bar_time), INTERVAL '5' MINUTE))
GROUP BY ticker, window_start, window_end;
