-- signals: EMA(12)/EMA(26) crossovers and RSI(14) overbought/oversold crossings on 1-minute candles.
-- grain: event_id
-- topic: moex.signals
-- guarantee: exactly-once
-- twin: at-least-once
--
-- golden_cross: ema_12 goes above ema_26 (was at or below on the previous candle);
-- death_cross:  ema_12 goes to or below ema_26 (was above);
-- overbought:   rsi_14 goes above 70 (was at or below); oversold: below 30 (was at or above).
-- No signal while the ticker or the whole market ("*") is in any phase but `trading`
-- (auctions, closed, halted) at the candle's last millisecond: an event-time temporal join
-- against the versioned phase view. No status known yet counts as trading.

CREATE TABLE signals (
  event_id STRING,            -- ticker:kind:ts as epoch ms, the same on every replay
  ticker   STRING,
  ts       TIMESTAMP_LTZ(3),  -- end of the 1-minute candle the signal fired on
  kind     STRING,            -- golden_cross | death_cross | overbought | oversold
  `close`  DECIMAL(18, 6),    -- roubles
  ema_12   DOUBLE,
  ema_26   DOUBLE,
  rsi_14   DOUBLE             -- 0..100
) WITH (${SINK});

-- Crossings between two consecutive candles of a ticker (PRV, CUR). Each candle starts a new
-- attempt (SKIP TO NEXT ROW), so alternating crosses on consecutive candles are all found; a
-- NULL (warming up) indicator never matches. `signal_time` keeps the candle's rowtime for the
-- temporal join. `market` is "*", the key of whole-market phases, spelled so that the planner
-- cannot fold it into a constant (a constant temporal-join key fails code generation in 2.2).
CREATE VIEW signal_candidates AS
SELECT ticker, ts, kind, `close`, ema_12, ema_26, rsi_14, signal_time,
  CONCAT(LEFT(ticker, 0), '*') AS market
FROM indicator_series_1m
MATCH_RECOGNIZE (
  PARTITION BY ticker
  ORDER BY bar_time
  MEASURES
    CASE WHEN CUR.ema_12 > CUR.ema_26 THEN 'golden_cross' ELSE 'death_cross' END AS kind,
    CUR.bar_end AS ts, CUR.`close` AS `close`,
    CUR.ema_12 AS ema_12, CUR.ema_26 AS ema_26, CUR.rsi_14 AS rsi_14,
    MATCH_ROWTIME(bar_time) AS signal_time
  ONE ROW PER MATCH
  AFTER MATCH SKIP TO NEXT ROW
  PATTERN (PRV CUR)
  DEFINE CUR AS (CUR.ema_12 > CUR.ema_26) <> (PRV.ema_12 > PRV.ema_26)
)
UNION ALL
SELECT ticker, ts, kind, `close`, ema_12, ema_26, rsi_14, signal_time,
  CONCAT(LEFT(ticker, 0), '*') AS market
FROM indicator_series_1m
MATCH_RECOGNIZE (
  PARTITION BY ticker
  ORDER BY bar_time
  MEASURES
    CASE WHEN CUR.rsi_14 > 70 THEN 'overbought' ELSE 'oversold' END AS kind,
    CUR.bar_end AS ts, CUR.`close` AS `close`,
    CUR.ema_12 AS ema_12, CUR.ema_26 AS ema_26, CUR.rsi_14 AS rsi_14,
    MATCH_ROWTIME(bar_time) AS signal_time
  ONE ROW PER MATCH
  AFTER MATCH SKIP TO NEXT ROW
  PATTERN (PRV CUR)
  DEFINE CUR AS (PRV.rsi_14 <= 70 AND CUR.rsi_14 > 70) OR (PRV.rsi_14 >= 30 AND CUR.rsi_14 < 30)
);

INSERT INTO signals
SELECT
  CONCAT(c.ticker, ':', c.kind, ':',
         CAST(TIMESTAMPDIFF(SECOND, TO_TIMESTAMP_LTZ(0, 3), c.ts) * CAST(1000 AS BIGINT) AS STRING)),
  c.ticker, c.ts, c.kind, c.`close`, c.ema_12, c.ema_26, c.rsi_14
FROM signal_candidates AS c
LEFT JOIN market_phase FOR SYSTEM_TIME AS OF c.signal_time AS own
  ON c.ticker = own.ticker
LEFT JOIN market_phase FOR SYSTEM_TIME AS OF c.signal_time AS whole
  ON c.market = whole.ticker
WHERE COALESCE(own.phase, 'trading') = 'trading'
  AND COALESCE(whole.phase, 'trading') = 'trading';
