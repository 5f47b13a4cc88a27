-- anomalies: price spikes (> 2 % within 10 s) on 200-ms bars and unusual 1-minute volume.
-- grain: event_id
-- topic: moex.anomalies
-- guarantee: exactly-once
-- twin: at-least-once
--
-- spike_up:   a 200-ms bar's high more than 2 % above the low of a bar S less than 10 s earlier
--             (bar starts), so end_ts - start_ts <= 10 s, with no bar between them lower than S:
--             the rise is measured from its trough. spike_down likewise from a high (no bar
--             between higher). Prices are real trades (bar lows/highs), and the earlier bar's low
--             came before the later bar's high. After a match the search resumes after its last
--             bar, so one jump is one anomaly. The trough condition is also what keeps this
--             cheap: a bar undercut by a later one stops being a possible start, so a ticker has
--             a handful of open attempts, not one per bar of the last 10 s (with every bar open
--             the 100-ms version could not keep up with 2 K trades/s; raw trades: 165 rows/s).
-- volume:     a 1-minute candle whose volume exceeds mean + 3 sigma (population) of the
--             ticker's previous 20 candles; tested in exact integers:
--             20 v - S > 0  and  (20 v - S)^2 > 9 (20 Q - S^2),  S, Q = sum, sum of squares.
-- Columns a kind does not have are NULL.

CREATE TABLE anomalies (
  event_id     STRING,            -- ticker:kind:start_ts as epoch ms
  ticker       STRING,
  kind         STRING,            -- spike_up | spike_down | volume
  start_ts     TIMESTAMP_LTZ(3),  -- start of the first bar (spikes) or of the candle (volume)
  end_ts       TIMESTAMP_LTZ(3),  -- end of the last bar / of the candle
  start_price  DECIMAL(18, 6),    -- roubles: the first bar's low (up) / high (down); candle open
  end_price    DECIMAL(18, 6),    -- roubles: the last bar's high (up) / low (down); candle close
  change_pct   DOUBLE,            -- percent: 100 * (end_price / start_price - 1)
  volume       BIGINT,            -- lots in the candle (volume only)
  volume_mean  DOUBLE,            -- lots: mean of the previous 20 candles (volume only)
  volume_sigma DOUBLE             -- lots: their population stddev (volume only)
) WITH (${SINK});

CREATE VIEW price_spikes AS
SELECT ticker, 'spike_up' AS kind, start_ms, start_ts, end_ts, start_price, end_price
FROM bars_200ms
MATCH_RECOGNIZE (
  PARTITION BY ticker
  ORDER BY bar_time
  MEASURES S.start_ms AS start_ms, S.bar_start AS start_ts, E.bar_end AS end_ts, S.low AS start_price, E.high AS end_price
  ONE ROW PER MATCH
  AFTER MATCH SKIP PAST LAST ROW
  PATTERN (S M*? E) WITHIN INTERVAL '10' SECOND
  DEFINE M AS M.low >= S.low, E AS E.high > S.low * 1.02
)
UNION ALL
SELECT ticker, 'spike_down' AS kind, start_ms, start_ts, end_ts, start_price, end_price
FROM bars_200ms
MATCH_RECOGNIZE (
  PARTITION BY ticker
  ORDER BY bar_time
  MEASURES S.start_ms AS start_ms, S.bar_start AS start_ts, E.bar_end AS end_ts, S.high AS start_price, E.low AS end_price
  ONE ROW PER MATCH
  AFTER MATCH SKIP PAST LAST ROW
  PATTERN (S M*? E) WITHIN INTERVAL '10' SECOND
  DEFINE M AS M.high <= S.high, E AS E.low < S.high * 0.98
);

-- The candle with the sums over it and its previous 20 candles (Flink's OVER frames must end
-- at the current row: the previous 20 are these sums minus the candle itself).
CREATE VIEW volume_history_1m AS
SELECT ticker, bar_start, bar_end, `open`, `close`, volume,
  COUNT(*) OVER last_21 AS candles,
  SUM(CAST(volume AS DECIMAL(38, 0))) OVER last_21 AS volume_sum,
  SUM(CAST(volume AS DECIMAL(38, 0)) * CAST(volume AS DECIMAL(38, 0))) OVER last_21 AS volume_sq_sum
FROM bars_1m
WINDOW last_21 AS (PARTITION BY ticker ORDER BY bar_time ROWS BETWEEN 20 PRECEDING AND CURRENT ROW);

CREATE VIEW volume_surges AS
SELECT ticker, bar_start, bar_end, `open`, `close`, volume,
  CAST(prior_sum AS DOUBLE) / 20 AS volume_mean,
  SQRT(CAST(prior_spread AS DOUBLE)) / 20 AS volume_sigma
FROM (
  SELECT ticker, bar_start, bar_end, `open`, `close`, volume, candles,
    volume_sum - volume AS prior_sum,
    20 * CAST(volume AS DECIMAL(38, 0)) - (volume_sum - volume) AS excess,
    -- 400 * variance of the previous 20 volumes, exact
    20 * (volume_sq_sum - CAST(volume AS DECIMAL(38, 0)) * CAST(volume AS DECIMAL(38, 0)))
      - (volume_sum - volume) * (volume_sum - volume) AS prior_spread
  FROM volume_history_1m
)
WHERE candles = 21 AND excess > 0 AND excess * excess > 9 * prior_spread;

INSERT INTO anomalies
SELECT
  CONCAT(ticker, ':', kind, ':', CAST(start_ms AS STRING)),
  ticker, kind, start_ts, end_ts, start_price, end_price,
  (CAST(end_price AS DOUBLE) / CAST(start_price AS DOUBLE) - 1) * 100,
  CAST(NULL AS BIGINT), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE)
FROM price_spikes
UNION ALL
SELECT
  CONCAT(ticker, ':volume:',
         CAST(TIMESTAMPDIFF(SECOND, TO_TIMESTAMP_LTZ(0, 3), bar_start) * CAST(1000 AS BIGINT) AS STRING)),
  ticker, 'volume', bar_start, bar_end, `open`, `close`,
  (CAST(`close` AS DOUBLE) / CAST(`open` AS DOUBLE) - 1) * 100,
  volume, volume_mean, volume_sigma
FROM volume_surges;
