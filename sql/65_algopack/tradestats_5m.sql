-- tradestats_5m: MOEX AlgoPack TradeStats ("Super Candles") per ticker and 5 minutes, live.
-- grain: ticker, window_end
-- topic: moex.tradestats_5m
-- guarantee: exactly-once
--
-- Field names, units and formulas follow the published definitions: moexalgo.github.io
-- docs/description/supercandles.md (fields, units) and docs/method/supercandles.md (formulas)
-- at commit f10e63de, and the official resampler moexalgo/beta/resample.py (moexalgo/moexalgo
-- 4df0dbb2): vol in lots, val in roubles, pr_vwap = val / (vol x lot size),
-- pr_change = 100 (close - open) / open, disb = (vol_b - vol_s) / vol.
-- AlgoPack's `tradetime` is the window end (Moscow time there; window_end here is UTC).
-- Deviations, all on purpose:
--  * val, val_b, val_s are exact decimals (AlgoPack rounds them to whole roubles), pr_* keep
--    6 decimals (AlgoPack rounds to the instrument's DECIMALS), disb is not rounded to 0.01.
--  * pr_std: AlgoPack publishes "standard deviation of price, in fractions" with no formula;
--    its published rows are too small for sigma(price) / mean (AGRO 2023-10-10 10:05: a 0.8 %
--    climb, pr_std 0.0004) and fit the spread of short-horizon returns. Ours: the population
--    standard deviation of the 1-second close-to-close simple returns inside the window
--    (seconds with trades; a return counts when both its seconds are in the window); NULL
--    when the window has trades in fewer than 2 seconds.
--  * pr_vwap_b / pr_vwap_s are NULL when the window has no buy / sell trade.
-- Windows without trades have no row. lot_size() is LOTSIZE from producer/reference.py.

CREATE TABLE tradestats_5m (
  ticker       STRING,
  window_start TIMESTAMP_LTZ(3),
  window_end   TIMESTAMP_LTZ(3),  -- AlgoPack tradetime
  pr_open      DECIMAL(18, 6),    -- roubles per share: the first trade by trade number
  pr_high      DECIMAL(18, 6),
  pr_low       DECIMAL(18, 6),
  pr_close     DECIMAL(18, 6),    -- the last trade by trade number
  pr_std       DOUBLE,            -- fraction: sigma of 1-s close-to-close returns (see above)
  vol          BIGINT,            -- lots
  val          DECIMAL(24, 6),    -- roubles: sum(price x qty x lot size)
  trades       BIGINT,
  pr_vwap      DECIMAL(18, 6),    -- roubles per share: val / (vol x lot size)
  pr_change    DOUBLE,            -- percent: 100 (pr_close - pr_open) / pr_open
  trades_b     BIGINT,            -- buyer-initiated trades
  trades_s     BIGINT,            -- seller-initiated trades
  val_b        DECIMAL(24, 6),    -- roubles
  val_s        DECIMAL(24, 6),    -- roubles
  vol_b        BIGINT,            -- lots
  vol_s        BIGINT,            -- lots
  disb         DOUBLE,            -- (vol_b - vol_s) / vol, -1 (all sells) .. 1 (all buys)
  pr_vwap_b    DECIMAL(18, 6),    -- roubles per share: val_b / (vol_b x lot size)
  pr_vwap_s    DECIMAL(18, 6)     -- roubles per share: val_s / (vol_s x lot size)
) WITH (${SINK});

INSERT INTO tradestats_5m
SELECT ticker, window_start, window_end, pr_open, pr_high, pr_low, pr_close, pr_std,
  vol,
  CAST(turnover * lot AS DECIMAL(24, 6)),
  trades,
  CAST(turnover / vol AS DECIMAL(18, 6)),
  (CAST(pr_close AS DOUBLE) - CAST(pr_open AS DOUBLE)) / CAST(pr_open AS DOUBLE) * 100,
  trades_b, trades_s,
  CAST(turnover_b * lot AS DECIMAL(24, 6)),
  CAST(turnover_s * lot AS DECIMAL(24, 6)),
  vol_b, vol_s,
  CAST(vol_b - vol_s AS DOUBLE) / vol,
  CASE WHEN vol_b > 0 THEN CAST(turnover_b / vol_b AS DECIMAL(18, 6)) END,
  CASE WHEN vol_s > 0 THEN CAST(turnover_s / vol_s AS DECIMAL(18, 6)) END
FROM (
  SELECT ticker,
    CAST(window_start AS TIMESTAMP_LTZ(3)) AS window_start,
    CAST(window_end AS TIMESTAMP_LTZ(3)) AS window_end,
    CAST(MOD(MIN(open_key), CAST(1000000000000000000 AS DECIMAL(38, 0))) / 1000000 AS DECIMAL(18, 6)) AS pr_open,
    MAX(pr_high) AS pr_high,
    MIN(pr_low) AS pr_low,
    CAST(MOD(MAX(close_key), CAST(1000000000000000000 AS DECIMAL(38, 0))) / 1000000 AS DECIMAL(18, 6)) AS pr_close,
    STDDEV_POP(CASE WHEN prev_start >= window_start THEN ret END) AS pr_std,
    SUM(vol) AS vol, SUM(vol_b) AS vol_b, SUM(vol_s) AS vol_s,
    CAST(SUM(turnover) AS DECIMAL(24, 6)) AS turnover,
    CAST(SUM(turnover_b) AS DECIMAL(24, 6)) AS turnover_b,
    CAST(SUM(turnover_s) AS DECIMAL(24, 6)) AS turnover_s,
    SUM(trades) AS trades, SUM(trades_b) AS trades_b, SUM(trades_s) AS trades_s,
    lot_size(ticker) AS lot
  FROM TABLE(TUMBLE(TABLE trade_returns_1s, DESCRIPTOR(flow_time), INTERVAL '5' MINUTE))
  GROUP BY ticker, window_start, window_end
);
