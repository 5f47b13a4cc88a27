-- trade_flow: per ticker and second, the trades split by aggressor side (MOEX AlgoPack's buy/sell
-- fields), with OHLC and the close-to-close return; the base of sql/65_algopack/.
--
-- The existing bars (bars.sql) carry no side, so this is a second aggregation over `trades`.
-- Open and close follow bars.sql's convention: the first and last trade by exchange trade
-- number, packed with the price into key = trade_id * 10^18 + price * 10^6 (see bars.sql).
-- Side "B" is a buyer-initiated trade (AlgoPack's *_b), "S" seller-initiated (*_s).

CREATE VIEW trade_flow_1s AS
SELECT ticker, flow_start, flow_time,
  CAST(MOD(open_key, CAST(1000000000000000000 AS DECIMAL(38, 0))) / 1000000 AS DECIMAL(18, 6)) AS pr_open,
  pr_high, pr_low,
  CAST(MOD(close_key, CAST(1000000000000000000 AS DECIMAL(38, 0))) / 1000000 AS DECIMAL(18, 6)) AS pr_close,
  open_key, close_key, vol, vol_b, vol_s, turnover, turnover_b, turnover_s, trades, trades_b, trades_s
FROM (
  SELECT ticker,
    CAST(window_start AS TIMESTAMP_LTZ(3)) AS flow_start,
    window_time AS flow_time,                 -- rowtime: the second's last millisecond
    MIN(CAST(trade_id AS DECIMAL(38, 0)) * 1000000000000000000
        + CAST(price * 1000000 AS DECIMAL(38, 0))) AS open_key,
    MAX(price) AS pr_high,
    MIN(price) AS pr_low,
    MAX(CAST(trade_id AS DECIMAL(38, 0)) * 1000000000000000000
        + CAST(price * 1000000 AS DECIMAL(38, 0))) AS close_key,
    SUM(qty) AS vol,                                            -- lots
    SUM(CASE WHEN side = 'B' THEN qty ELSE 0 END) AS vol_b,
    SUM(CASE WHEN side = 'S' THEN qty ELSE 0 END) AS vol_s,
    -- sum(price * qty): roubles per share x lots; x lot size = roubles
    CAST(SUM(price * qty) AS DECIMAL(24, 6)) AS turnover,
    CAST(SUM(CASE WHEN side = 'B' THEN price * qty ELSE 0 END) AS DECIMAL(24, 6)) AS turnover_b,
    CAST(SUM(CASE WHEN side = 'S' THEN price * qty ELSE 0 END) AS DECIMAL(24, 6)) AS turnover_s,
    COUNT(*) AS trades,
    SUM(CASE WHEN side = 'B' THEN 1 ELSE 0 END) AS trades_b,
    SUM(CASE WHEN side = 'S' THEN 1 ELSE 0 END) AS trades_s
  FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(trade_slot), INTERVAL '1' SECOND))
  GROUP BY ticker, window_start, window_end, window_time
);

-- Each second with its simple return from the ticker's previous second with trades
-- (close / previous close - 1) and that second's start, so a window can keep only the returns
-- whose both ends lie inside it.
CREATE VIEW trade_returns_1s AS
SELECT *,
  CAST(pr_close AS DOUBLE) / CAST(LAG(pr_close) OVER w AS DOUBLE) - 1 AS ret,
  LAG(flow_start) OVER w AS prev_start
FROM trade_flow_1s
WINDOW w AS (PARTITION BY ticker ORDER BY flow_time);

-- The same per ticker and minute (the grain of AlgoPack's Mega Alerts): minutes with trades.
CREATE VIEW trade_flow_1m AS
SELECT ticker, minute_start, minute_time, pr_high, pr_low,
  CAST(MOD(close_key, CAST(1000000000000000000 AS DECIMAL(38, 0))) / 1000000 AS DECIMAL(18, 6)) AS pr_close,
  -- percent: 100 (close - open) / open, the minute's first and last trade by trade number
  (CAST(MOD(close_key, CAST(1000000000000000000 AS DECIMAL(38, 0))) AS DOUBLE)
    - CAST(MOD(open_key, CAST(1000000000000000000 AS DECIMAL(38, 0))) AS DOUBLE))
    / CAST(MOD(open_key, CAST(1000000000000000000 AS DECIMAL(38, 0))) AS DOUBLE) * 100 AS pr_change,
  vol, vol_b, vol_s, vol_b - vol_s AS net_vol
FROM (
  SELECT ticker,
    CAST(window_start AS TIMESTAMP_LTZ(3)) AS minute_start,
    window_time AS minute_time,               -- rowtime: the minute's last millisecond
    MIN(open_key) AS open_key, MAX(pr_high) AS pr_high, MIN(pr_low) AS pr_low,
    MAX(close_key) AS close_key,
    SUM(vol) AS vol, SUM(vol_b) AS vol_b, SUM(vol_s) AS vol_s
  FROM TABLE(TUMBLE(TABLE trade_flow_1s, DESCRIPTOR(flow_time), INTERVAL '1' MINUTE))
  GROUP BY ticker, window_start, window_end, window_time
);
