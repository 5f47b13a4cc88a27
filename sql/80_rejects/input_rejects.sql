-- input_rejects: input records the job skips, each with the reason and where it lies in Kafka.
-- grain: input, kafka_partition, first_offset, event_id
-- topic: moex.input_rejects
-- guarantee: exactly-once
--
-- The producer validates what it writes (its rejects go to moex.dlq); this output accounts for
-- records that reached the input topics some other way, so that nothing is dropped unseen:
--  * a record the JSON format cannot read (not JSON, not an object, a field of the wrong type,
--    an empty value) is skipped by the source and leaves a gap in its partition's offsets:
--    one row per gap, offsets first_offset..last_offset (`make consume` shows them).
--  * a record that parses but that its source's *_checked view gives a reject_reason (a
--    missing field, a price or qty not positive): one row each, with its fields in `payload`.
--  * a trade or book snapshot that arrives after the watermark has passed its slot (reason
--    `late`): its windows are closed, so it cannot count; one row each, as above. How late a
--    record may be is the runner's watermark delay (MOEX_WATERMARK_DELAY_MS).
-- Gaps are exact for topics written without transactions (the producer, kafka-python's
-- idempotent producer); a transactional writer's commit markers also take offsets and would
-- show as one-offset gaps. In replay the inputs are files: no offsets, no gap rows.

CREATE TABLE input_rejects (
  input           STRING,  -- trades | orderbook | market_status (topic: prefix + input)
  kafka_partition INT,
  first_offset    BIGINT,  -- the rejected record, or the first of a gap
  last_offset     BIGINT,
  records         BIGINT,  -- last_offset - first_offset + 1
  reason          STRING,
  event_id        STRING,  -- of a record that parsed; NULL for a gap
  ticker          STRING,
  ts              BIGINT,
  payload         STRING   -- the other fields it had, as a JSON object; NULL for a gap
) WITH (${SINK});

-- Offsets of every record each source could read, in arrival order per partition.
CREATE VIEW input_positions AS
SELECT 'trades' AS input, kafka_partition, kafka_offset, PROCTIME() AS arrival FROM trades_raw
UNION ALL
SELECT 'orderbook', kafka_partition, kafka_offset, PROCTIME() FROM orderbook_raw
UNION ALL
SELECT 'market_status', kafka_partition, kafka_offset, PROCTIME() FROM market_status_raw;

CREATE VIEW input_gaps AS
SELECT input, kafka_partition, previous_offset + 1 AS first_offset, kafka_offset - 1 AS last_offset
FROM (
  SELECT input, kafka_partition, kafka_offset,
    LAG(kafka_offset) OVER (PARTITION BY input, kafka_partition ORDER BY arrival) AS previous_offset
  FROM input_positions
  WHERE kafka_offset IS NOT NULL
)
WHERE kafka_offset - previous_offset > 1;

INSERT INTO input_rejects
SELECT input, kafka_partition, first_offset, last_offset,
  last_offset - first_offset + 1,
  'unreadable: not a JSON object, a field of the wrong type, or an empty value',
  CAST(NULL AS STRING), CAST(NULL AS STRING), CAST(NULL AS BIGINT), CAST(NULL AS STRING)
FROM input_gaps
UNION ALL
SELECT 'trades', kafka_partition, kafka_offset, kafka_offset, 1, reject_reason,
  event_id, ticker, ts,
  JSON_OBJECT('board' VALUE board, 'trade_id' VALUE trade_id, 'price' VALUE price,
              'qty' VALUE qty, 'side' VALUE side)
FROM trades_checked
WHERE reject_reason IS NOT NULL
UNION ALL
SELECT 'orderbook', kafka_partition, kafka_offset, kafka_offset, 1, reject_reason,
  event_id, ticker, ts,
  JSON_OBJECT('seq' VALUE seq, 'bid_levels' VALUE CARDINALITY(bids),
              'ask_levels' VALUE CARDINALITY(asks))
FROM orderbook_checked
WHERE reject_reason IS NOT NULL
UNION ALL
SELECT 'market_status', kafka_partition, kafka_offset, kafka_offset, 1, reject_reason,
  event_id, ticker, ts, JSON_OBJECT('phase' VALUE phase)
FROM market_status_checked
WHERE reject_reason IS NOT NULL;
