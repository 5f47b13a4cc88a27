-- orderbook: top-of-book snapshots (10 levels a side) per ticker, de-duplicated by event_id.
-- grain: event_id
-- topic: moex.orderbook (input)
-- guarantee: read_committed; a snapshot sent twice is dropped by event_id

CREATE TABLE orderbook_raw (
  event_id STRING,                      -- ticker:B:seq
  ticker   STRING,
  ts       BIGINT,                      -- event time, epoch milliseconds UTC
  seq      BIGINT,                      -- snapshot number, increases per ticker
  bids     ARRAY<ARRAY<DECIMAL(18, 6)>>, -- [[price roubles, qty lots], ...], best (highest) first
  asks     ARRAY<ARRAY<DECIMAL(18, 6)>>, -- [[price roubles, qty lots], ...], best (lowest) first
  ${POSITION:orderbook},  -- kafka_partition, kafka_offset: where a reject lies
  book_time AS TO_TIMESTAMP_LTZ(COALESCE(ts, 0), 3),
  WATERMARK FOR book_time AS book_time - INTERVAL '${WATERMARK_DELAY}' SECOND
) WITH (${SOURCE:orderbook});

-- Why a snapshot cannot be used, or NULL when it can (as for trades). A side may be empty ([]),
-- not absent: a side of the wrong type reads as NULL.
CREATE VIEW orderbook_checked AS
SELECT *,
  CASE
    WHEN event_id IS NULL THEN 'missing event_id'
    WHEN ticker IS NULL THEN 'missing ticker'
    WHEN ts IS NULL THEN 'missing ts'
    WHEN seq IS NULL THEN 'missing seq'
    WHEN bids IS NULL THEN 'bids missing or not a list of [price, qty] levels'
    WHEN asks IS NULL THEN 'asks missing or not a list of [price, qty] levels'
    -- Too late to count: the watermark has passed the end of the snapshot's second, which the
    -- de-duplication window below would drop without a trace.
    WHEN TO_TIMESTAMP_LTZ(ts - MOD(ts, 1000) + 999, 3) <= CURRENT_WATERMARK(book_time) THEN 'late'
  END AS reject_reason
FROM orderbook_raw;

CREATE VIEW valid_orderbook AS
SELECT * FROM orderbook_checked WHERE reject_reason IS NULL;

-- Keep the first copy of each event_id, per second as for trades (copies share their ts):
-- insert-only, state freed when the watermark passes the second. `book_second` is the rowtime
-- (last millisecond of the snapshot's second); `book_time` the exact time, a plain column.
CREATE VIEW orderbook AS
SELECT event_id, ticker, ts, seq, bids, asks, book_time, window_time AS book_second
FROM (
  SELECT *,
    ROW_NUMBER() OVER (
      PARTITION BY window_start, window_end, event_id ORDER BY book_time ASC) AS copy_number
  FROM TABLE(TUMBLE(TABLE valid_orderbook, DESCRIPTOR(book_time), INTERVAL '1' SECOND))
)
WHERE copy_number = 1;
