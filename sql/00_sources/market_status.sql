-- market_status: trading-phase changes of the market (ticker "*") and of single tickers.
-- grain: event_id
-- topic: moex.market_status (input)
-- guarantee: read_committed; a change sent twice is dropped by event_id

CREATE TABLE market_status_raw (
  event_id STRING,  -- ticker:S:ts
  ticker   STRING,  -- "*" = the whole market
  ts       BIGINT,  -- event time of the change, epoch milliseconds UTC
  phase    STRING,  -- opening_auction | trading | closing_auction | closed | halted
  ${POSITION:market_status},  -- kafka_partition, kafka_offset: where a reject lies
  status_time AS TO_TIMESTAMP_LTZ(COALESCE(ts, 0), 3),
  WATERMARK FOR status_time AS status_time - INTERVAL '${WATERMARK_DELAY}' SECOND
) WITH (${SOURCE:market_status});

-- Why a change cannot be used, or NULL when it can (as for trades).
CREATE VIEW market_status_checked AS
SELECT *,
  CASE
    WHEN event_id IS NULL THEN 'missing event_id'
    WHEN ticker IS NULL THEN 'missing ticker'
    WHEN ts IS NULL THEN 'missing ts'
    WHEN phase IS NULL THEN 'missing phase'
  END AS reject_reason
FROM market_status_raw;

CREATE VIEW market_status AS
SELECT event_id, ticker, ts, phase, status_time
FROM (
  SELECT *,
    ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY status_time ASC) AS copy_number
  FROM market_status_checked
  WHERE reject_reason IS NULL
)
WHERE copy_number = 1;

-- The phase in force per ticker (and for "*"), versioned by event time: Flink reads this
-- keep-last deduplication as a versioned table, so `FOR SYSTEM_TIME AS OF t` gives the phase
-- of the latest change at or before t.
CREATE VIEW market_phase AS
SELECT ticker, phase, status_time
FROM (
  SELECT *,
    ROW_NUMBER() OVER (PARTITION BY ticker ORDER BY status_time DESC) AS recency
  FROM market_status
)
WHERE recency = 1;
