-- alerts_1m: MOEX AlgoPack Mega Alerts per ticker and minute: volume, net volume or price change
-- beyond the 99.9th (0.1th) percentile of the ticker's own recent minutes, or a new extreme.
-- grain: event_id
-- topic: moex.alerts_1m
-- guarantee: exactly-once
-- twin: at-least-once
--
-- Alert types, `threshold` and `value` as AlgoPack names them: moexalgo.github.io
-- docs/method/megaalerts.md and docs/description/megaalerts.md (commit 753b97f0),
-- moexalgo/algopack-skills skills/algopack-mega-alerts/references/mega-alerts.md (56c2c729).
-- A minute's metrics (trade_flow_1m): vol, vol_b, vol_s (lots), net_vol = vol_b - vol_s (lots),
-- pr_change = 100 (close - open) / open (percent), pr_high, pr_low (roubles).
--   vol_99_9_pctl, vol_b_99_9_pctl, vol_s_99_9_pctl  value > the 99.9th percentile of history
--   net_vol_99_9_pctl+ / pr_change_99_9_pctl+         value > 99.9th percentile and value > 0
--   net_vol_99_9_pctl- / pr_change_99_9_pctl-         value < 0.1th percentile and value < 0
--   vol_max, vol_b_max, vol_s_max, net_vol_max, pr_change_max, pr_high_max   value > max
--   net_vol_min, pr_change_min, pr_low_min                                   value < min
-- History: the ticker's previous minutes with trades, at most 1000 (the OVER frame below,
-- ROWS 1000 PRECEDING: change it there to change the length); percentiles interpolate
-- linearly (numpy/pandas default, udfs/algopack.py). Warm-up: no alert before a ticker has 5
-- earlier minutes (`history >= 5` below). Deviations from AlgoPack, on purpose:
--  * AlgoPack's history is 90 days of minutes, refreshed before each session; ours rolls with
--    every minute. With fewer than 1000 minutes the 99.9th percentile lies between the two
--    largest values, so young histories alert on "almost the largest so far" (and the _max
--    types on the largest): expect more alerts in the first hours.
--  * _max/_min need a strict new extreme (AlgoPack: reaches or exceeds): a flat series would
--    otherwise alert every minute. The +/- percentile types also need the sign of their name.
--  * value and threshold are DOUBLE as in AlgoPack; `reference` (stats of past outcomes) is
--    its own streams: alerts_1m_outcomes and alerts_1m_stats.
-- The alert is emitted when its minute closes (the watermark passes it).

CREATE TABLE alerts_1m (
  event_id     STRING,            -- ticker:alert_type:minute start as epoch ms
  ticker       STRING,
  alert_time   TIMESTAMP_LTZ(3),  -- end of the minute (AlgoPack tradetime)
  minute_start TIMESTAMP_LTZ(3),
  alert_type   STRING,            -- AlgoPack code, e.g. vol_99_9_pctl, pr_change_99_9_pctl-
  threshold    DOUBLE,            -- lots, percent or roubles, as `value`
  `value`      DOUBLE,            -- the minute's metric: lots (vol*), percent (pr_change), roubles (pr_high/low)
  history      BIGINT,            -- earlier minutes the threshold comes from
  pr_close     DECIMAL(18, 6)     -- roubles: the minute's close, the base of the outcomes
) WITH (${SINK});

CREATE VIEW alert_history_1m AS
SELECT ticker, minute_start, minute_time, pr_close, vol, vol_b, vol_s, net_vol, pr_change,
  pr_high, pr_low,
  alert_history(vol, vol_b, vol_s, net_vol, pr_change, pr_high, pr_low) OVER (
    PARTITION BY ticker ORDER BY minute_time ROWS BETWEEN 1000 PRECEDING AND CURRENT ROW) AS h
FROM trade_flow_1m;

-- The thresholds as plain columns (a ROW's fields cannot be named inside UNNEST below).
CREATE VIEW alert_thresholds_1m AS
SELECT ticker, minute_start, minute_time, pr_close, vol, vol_b, vol_s, net_vol, pr_change,
  pr_high, pr_low,
  t.h.history AS history_minutes, t.h.vol_p999 AS t_vol_p999, t.h.vol_b_p999 AS t_vol_b_p999,
  t.h.vol_s_p999 AS t_vol_s_p999, t.h.net_vol_p999 AS t_net_vol_p999, t.h.net_vol_p001 AS t_net_vol_p001,
  t.h.pr_change_p999 AS t_pr_change_p999, t.h.pr_change_p001 AS t_pr_change_p001, t.h.vol_max AS t_vol_max,
  t.h.vol_b_max AS t_vol_b_max, t.h.vol_s_max AS t_vol_s_max, t.h.net_vol_max AS t_net_vol_max,
  t.h.net_vol_min AS t_net_vol_min, t.h.pr_change_max AS t_pr_change_max, t.h.pr_change_min AS t_pr_change_min,
  t.h.pr_high_max AS t_pr_high_max, t.h.pr_low_min AS t_pr_low_min
FROM alert_history_1m AS t;

CREATE VIEW algopack_alerts AS
SELECT ticker, minute_start, minute_time, pr_close, a.alert_type, a.threshold, a.alert_value,
  CAST(history_minutes AS BIGINT) AS history
FROM alert_thresholds_1m
CROSS JOIN UNNEST(ARRAY[
  ROW('vol_99_9_pctl', t_vol_p999, CAST(vol AS DOUBLE), vol > t_vol_p999),
  ROW('vol_b_99_9_pctl', t_vol_b_p999, CAST(vol_b AS DOUBLE), vol_b > t_vol_b_p999),
  ROW('vol_s_99_9_pctl', t_vol_s_p999, CAST(vol_s AS DOUBLE), vol_s > t_vol_s_p999),
  ROW('net_vol_99_9_pctl+', t_net_vol_p999, CAST(net_vol AS DOUBLE), net_vol > t_net_vol_p999 AND net_vol > 0),
  ROW('net_vol_99_9_pctl-', t_net_vol_p001, CAST(net_vol AS DOUBLE), net_vol < t_net_vol_p001 AND net_vol < 0),
  ROW('pr_change_99_9_pctl+', t_pr_change_p999, pr_change, pr_change > t_pr_change_p999 AND pr_change > 0),
  ROW('pr_change_99_9_pctl-', t_pr_change_p001, pr_change, pr_change < t_pr_change_p001 AND pr_change < 0),
  ROW('vol_max', t_vol_max, CAST(vol AS DOUBLE), vol > t_vol_max),
  ROW('vol_b_max', t_vol_b_max, CAST(vol_b AS DOUBLE), vol_b > t_vol_b_max),
  ROW('vol_s_max', t_vol_s_max, CAST(vol_s AS DOUBLE), vol_s > t_vol_s_max),
  ROW('net_vol_max', t_net_vol_max, CAST(net_vol AS DOUBLE), net_vol > t_net_vol_max),
  ROW('net_vol_min', t_net_vol_min, CAST(net_vol AS DOUBLE), net_vol < t_net_vol_min),
  ROW('pr_change_max', t_pr_change_max, pr_change, pr_change > t_pr_change_max),
  ROW('pr_change_min', t_pr_change_min, pr_change, pr_change < t_pr_change_min),
  ROW('pr_high_max', t_pr_high_max, CAST(pr_high AS DOUBLE), pr_high > t_pr_high_max),
  ROW('pr_low_min', t_pr_low_min, CAST(pr_low AS DOUBLE), pr_low < t_pr_low_min)
]) AS a (alert_type, threshold, alert_value, fired)
WHERE history_minutes >= 5 AND a.fired;

INSERT INTO alerts_1m
SELECT
  CONCAT(ticker, ':', alert_type, ':',
         CAST(TIMESTAMPDIFF(SECOND, TO_TIMESTAMP_LTZ(0, 3), minute_start) * CAST(1000 AS BIGINT) AS STRING)),
  ticker,
  TIMESTAMPADD(MINUTE, 1, minute_start),
  minute_start, alert_type, threshold, alert_value, history, pr_close
FROM algopack_alerts;
