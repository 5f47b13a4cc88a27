-- trades: every MOEX trade the producer validated, de-duplicated by event_id, in event time.
-- grain: event_id
-- topic: moex.trades (input)
-- guarantee: read_committed; retries and replays of a range are dropped by event_id

CREATE TABLE trades_raw (
  event_id STRING,          -- ticker:T:exchange trade number, the same on every retry/replay
  ticker   STRING,
  board    STRING,
  trade_id BIGINT,          -- exchange trade number: increases with time, orders trades of one ms
  ts       BIGINT,          -- event time, epoch milliseconds UTC
  price    DECIMAL(18, 6),  -- roubles, on the instrument's tick grid
  qty      BIGINT,          -- lots
  side     STRING,          -- B = buyer-initiated, S = seller-initiated
  -- A null rowtime would stop the watermark for good: records without ts are dropped below.
  ${POSITION:trades},  -- kafka_partition, kafka_offset: where a reject lies
  trade_time AS TO_TIMESTAMP_LTZ(COALESCE(ts, 0), 3),
  WATERMARK FOR trade_time AS trade_time - INTERVAL '${WATERMARK_DELAY}' SECOND
) WITH (${SOURCE:trades});

-- Why a record cannot be used, or NULL when it can: the one definition of a usable trade.
-- valid_trades keeps the NULLs; sql/80_rejects/input_rejects.sql reports the others.
CREATE VIEW trades_checked AS
SELECT *,
  CASE
    WHEN event_id IS NULL THEN 'missing event_id'
    WHEN ticker IS NULL THEN 'missing ticker'
    WHEN ts IS NULL THEN 'missing ts'
    WHEN trade_id IS NULL THEN 'missing trade_id'
    WHEN price IS NULL THEN 'missing price'
    WHEN price <= 0 THEN 'price is not positive'
    WHEN qty IS NULL THEN 'missing qty'
    WHEN qty <= 0 THEN 'qty is not positive'
    -- Too late to count: the watermark has passed the end of the trade's 100-ms slot, so the
    -- de-duplication window below would drop it without a trace (the one place late trades
    -- are lost: every later window reads that window's on-time output).
    WHEN TO_TIMESTAMP_LTZ(ts - MOD(ts, 100) + 99, 3) <= CURRENT_WATERMARK(trade_time) THEN 'late'
  END AS reject_reason
FROM trades_raw;

CREATE VIEW valid_trades AS
SELECT * FROM trades_checked WHERE reject_reason IS NULL;

-- Keep the first copy of each event_id. A retry or replay of a trade carries the same ts, so
-- its copies fall in the same 100-ms slot: a window deduplication per slot is exact, emits each
-- trade once the watermark passes its slot (insert-only), and frees its state then. (A
-- ROW_NUMBER over all time would keep one entry per trade forever.) A copy arriving after the
-- watermark has passed its slot is rejected as `late` above, like any late trade. The slot is short because
-- every result waits for it: with 1-s slots an alert waited up to a second more (issue #7).
-- Downstream windows use `trade_slot` (the rowtime: last millisecond of the trade's 100-ms
-- slot), so they must be multiples of 100 ms; `trade_time` keeps the exact time.
CREATE VIEW trades AS
SELECT event_id, ticker, board, trade_id, ts, price, qty, side, trade_time,
  window_time AS trade_slot
FROM (
  SELECT *,
    ROW_NUMBER() OVER (
      PARTITION BY window_start, window_end, event_id ORDER BY trade_time ASC) AS copy_number
  FROM TABLE(TUMBLE(TABLE valid_trades, DESCRIPTOR(trade_time), INTERVAL '0.1' SECOND))
)
WHERE copy_number = 1;
