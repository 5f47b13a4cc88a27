-- trades: every MOEX trade the producer validated, de-duplicated by event_id, in event time.
-- grain: event_id
-- topic: moex.trades (input)
-- guarantee: read_committed; retries and replays of a range are dropped by event_id

CREATE TABLE trades_raw (
  event_id STRING,          -- ticker:T:exchange trade number, the same on every retry/replay
  ticker   STRING,
  board    STRING,
  trade_id BIGINT,
  ts       BIGINT,          -- event time, epoch milliseconds UTC
  price    DECIMAL(18, 6),  -- roubles, on the instrument's tick grid
  qty      BIGINT,          -- lots
  side     STRING,          -- B = buyer-initiated, S = seller-initiated
  -- A null rowtime would stop the watermark for good: records without ts are dropped below.
  trade_time AS TO_TIMESTAMP_LTZ(COALESCE(ts, 0), 3),
  WATERMARK FOR trade_time AS trade_time - INTERVAL '${WATERMARK_DELAY}' SECOND
) WITH (${SOURCE:trades});

-- Keep the first copy of each event_id (insert-only, keeps trade_time as event time).
CREATE VIEW trades AS
SELECT event_id, ticker, board, trade_id, ts, price, qty, side, trade_time
FROM (
  SELECT *,
    ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY trade_time ASC) AS copy_number
  FROM trades_raw
  WHERE event_id IS NOT NULL AND ticker IS NOT NULL AND ts IS NOT NULL
    AND price > 0 AND qty > 0
)
WHERE copy_number = 1;
