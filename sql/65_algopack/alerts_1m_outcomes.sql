-- alerts_1m_outcomes: what the price did 5, 15, 30 and 60 minutes after each Mega Alert.
-- grain: event_id
-- topic: moex.alerts_1m_outcomes
-- guarantee: exactly-once
--
-- The raw material of AlgoPack's `reference` (m_5, m_15, m_30, h_1: moexalgo.github.io
-- docs/description/megaalerts.md, commit 753b97f0). For an alert of the minute ending at T and
-- each horizon h: change_pct = 100 (close of the minute ending at T + h / close of the alert's
-- minute - 1), percent. An interval join in event time: the row is emitted once the minute
-- T + h has closed. A horizon whose minute has no trade has no row (no price to compare), so
-- quiet tickers have fewer outcomes; an alert type is followed once per alert, so several
-- types of one minute share their outcomes.

CREATE TABLE alerts_1m_outcomes (
  event_id    STRING,            -- alert event_id:horizon in minutes
  alert_id    STRING,            -- the alert's event_id in moex.alerts_1m
  ticker      STRING,
  alert_type  STRING,
  alert_time  TIMESTAMP_LTZ(3),  -- end of the alert's minute
  horizon_min INT,               -- 5 | 15 | 30 | 60
  base_price  DECIMAL(18, 6),    -- roubles: close of the alert's minute
  price       DECIMAL(18, 6),    -- roubles: close of the minute ending horizon_min later
  change_pct  DOUBLE             -- percent: 100 (price / base_price - 1)
) WITH (${SINK});

CREATE VIEW alert_outcomes AS
SELECT
  CONCAT(a.ticker, ':', a.alert_type, ':',
         CAST(TIMESTAMPDIFF(SECOND, TO_TIMESTAMP_LTZ(0, 3), a.minute_start) * CAST(1000 AS BIGINT) AS STRING)) AS alert_id,
  a.ticker, a.alert_type,
  TIMESTAMPADD(MINUTE, 1, a.minute_start) AS alert_time,
  CAST(TIMESTAMPDIFF(MINUTE, a.minute_start, f.minute_start) AS INT) AS horizon_min,
  a.pr_close AS base_price, f.pr_close AS price,
  f.minute_time AS outcome_time
FROM algopack_alerts a, trade_flow_1m f
WHERE f.ticker = a.ticker
  AND f.minute_time BETWEEN a.minute_time + INTERVAL '5' MINUTE AND a.minute_time + INTERVAL '60' MINUTE
  AND TIMESTAMPDIFF(MINUTE, a.minute_start, f.minute_start) IN (5, 15, 30, 60);

INSERT INTO alerts_1m_outcomes
SELECT CONCAT(alert_id, ':', CAST(horizon_min AS STRING)), alert_id, ticker, alert_type,
  alert_time, horizon_min, base_price, price,
  (CAST(price AS DOUBLE) / CAST(base_price AS DOUBLE) - 1) * 100
FROM alert_outcomes;
