-- alerts_1m_stats: running statistics of the outcomes per alert type and horizon (AlgoPack's
-- `reference`): average rise, average fall, their counts and the average change so far.
-- grain: event_id
-- topic: moex.alerts_1m_stats
-- guarantee: exactly-once
--
-- AlgoPack's reference (moexalgo.github.io docs/description/megaalerts.md, commit 753b97f0)
-- gives, per horizon m_5/m_15/m_30/h_1: [average change when the price rose, average change when
-- it fell, rising cases, falling cases, average change of all], over 90 days of the
-- instrument's alerts. Ours: over every outcome so far of that alert type on all tickers (our
-- histories are hours, not 90 days), updated by each outcome from alerts_1m_outcomes: one row
-- per outcome, the statistics including it. Outcomes of the same minute are counted together
-- (RANGE frame), so the rows do not depend on their arrival order. A change of exactly 0 is
-- neither a rise nor a fall but counts in change_avg.

CREATE TABLE alerts_1m_stats (
  event_id     STRING,            -- the outcome's event_id that updated the statistics
  alert_type   STRING,
  horizon_min  INT,               -- 5 | 15 | 30 | 60
  ticker       STRING,            -- of that outcome
  outcome_time TIMESTAMP_LTZ(3),  -- end of the outcome's minute
  rise_avg     DOUBLE,            -- percent: mean change_pct of the outcomes > 0 (AlgoPack 1st)
  fall_avg     DOUBLE,            -- percent: mean change_pct of the outcomes < 0 (2nd)
  rises        BIGINT,            -- outcomes > 0 (3rd)
  falls        BIGINT,            -- outcomes < 0 (4th)
  change_avg   DOUBLE,            -- percent: mean change_pct of all outcomes (5th)
  outcomes     BIGINT             -- all outcomes so far
) WITH (${SINK});

INSERT INTO alerts_1m_stats
SELECT CONCAT(alert_id, ':', CAST(horizon_min AS STRING)), alert_type, horizon_min, ticker,
  TIMESTAMPADD(MILLISECOND, 1, outcome_time),
  AVG(CASE WHEN change_pct > 0 THEN change_pct END) OVER w,
  AVG(CASE WHEN change_pct < 0 THEN change_pct END) OVER w,
  COUNT(CASE WHEN change_pct > 0 THEN 1 END) OVER w,
  COUNT(CASE WHEN change_pct < 0 THEN 1 END) OVER w,
  AVG(change_pct) OVER w,
  COUNT(*) OVER w
FROM (
  SELECT *, (CAST(price AS DOUBLE) / CAST(base_price AS DOUBLE) - 1) * 100 AS change_pct
  FROM alert_outcomes
)
WINDOW w AS (
  PARTITION BY alert_type, horizon_min ORDER BY outcome_time
  RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);
