-- candles_1s: one-second OHLCV candles per ticker; the live chart and the base of spike detection.
-- grain: ticker, window_end
-- topic: moex.candles_1s
-- guarantee: exactly-once

CREATE TABLE candles_1s (
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

INSERT INTO candles_1s
SELECT ticker, bar_start, bar_end, `open`, high, low, `close`, volume, turnover, trades,
       CAST(turnover / volume AS DECIMAL(18, 6)) AS vwap
FROM bars_1s;
