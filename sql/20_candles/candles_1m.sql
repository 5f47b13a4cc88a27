-- candles_1m: one-minute OHLCV candles per ticker; the base of every indicator and signal.
-- grain: ticker, window_end
-- topic: moex.candles_1m
-- guarantee: exactly-once

CREATE TABLE candles_1m (
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

INSERT INTO candles_1m
SELECT ticker, bar_start, bar_end, `open`, high, low, `close`, volume, turnover, trades,
       CAST(turnover / volume AS DECIMAL(18, 6)) AS vwap
FROM bars_1m;
